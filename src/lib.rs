//! autowrkers: several LLMs and coding agents working on one code change together.
//!
//! The library behind the `autowrkers` binary. Files are the truth (DESIGN §2): templates,
//! executions and artifacts are YAML/JSON files; a stateless runner reconciles them.

pub mod agent;
pub mod budget;
pub mod engine;
pub mod git;
pub mod keys;
pub mod process;
pub mod prompts;
pub mod providers;
pub mod sandbox;
pub mod secret;
pub mod server;
pub mod spec;
pub mod store;
pub mod templates;
pub mod triggers;
pub mod verify;
