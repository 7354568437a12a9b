//! Integration tests, one binary (linking is the slow part). They drive the real `autowrkers`
//! binary against a real fake LLM server on 127.0.0.1, in real temp git repositories.

// A test or benchmark that cannot go on fails on the spot: unwrap, expect and panic are its
// way of saying so (the library and binary deny them, see Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agent_clis;
mod agent_money;
mod agent_roles;
mod bad_input;
mod bounds;
mod browser;
mod commands;
mod concurrency;
mod control;
mod convergence;
mod crash;
mod fake_github;
mod fake_llm;
mod fake_wire;
mod first_hour;
mod github;
mod hints;
mod init;
mod keys;
mod live_control;
mod live_view;
mod money;
mod money_shared;
mod money_unknown;
mod pipeline;
mod provider_cli;
mod providers;
mod quota;
mod rate_limit;
mod reconcile;
mod resume;
mod scan;
mod schemas;
mod seed_default;
mod serve;
mod serve_control;
mod serve_support;
mod support;
mod trust;
mod watch;
mod webdriver;
