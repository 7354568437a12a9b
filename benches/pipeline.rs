//! `cargo bench`: the targets of the `run` issue, measured (not asserted).
//! - orchestration overhead per phase (state write + event + git commit), 6-phase scripted run;
//! - peak RSS of a whole `autowrkers run` process;
//! - latency of `autowrkers --help`;
//! - start of one sandboxed command (`sh -c true`), with and without network.

// A test or benchmark that cannot go on fails on the spot: unwrap, expect and panic are its
// way of saying so (the library and binary deny them, see Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[path = "support/fake_openai.rs"]
mod fake_openai;
#[path = "support/project.rs"]
mod project;

use autowrkers::engine::{Engine, EventBus, StartOptions};
use autowrkers::spec::load::parse_template;
use autowrkers::store::Home;
use project::{median, project};

const REPLIES: &str = r#"replies:
  - phase: a
    text: "```json\n{\"summary\": \"s\", \"tasks\": []}\n```\n/done"
  - phase: b
    text: "plan /done"
  - phase: c
    text: "/done"
  - phase: d
    text: "```json\n{\"approved\": true, \"summary\": \"ok\"}\n```\n/done"
  - phase: e
    text: "```json\n{\"approved\": true, \"summary\": \"ok\"}\n```\n/done"
"#;

fn template() -> String {
    let p = |id: &str, role: &str, prompt: &str, kind: &str, order: u32, extra: &str| {
        format!(
            "  - id: {id}\n    name: {id}\n    role: {role}\n    provider_config: {{provider_type: scripted, extra_params: {{script: replies.yaml}}}}\n    prompt_template: {prompt}\n    output_artifact_type: {kind}\n    success_pattern: /done\n    order: {order}\n{extra}"
        )
    };
    let mut t = "name: bench\niteration_behavior: auto_iterate\nphases:\n".to_owned();
    t += &p("a", "analyzer", "analyzer_prompt", "task_list", 1, "");
    t += &p(
        "b",
        "planner",
        "planner_prompt",
        "implementation_plan",
        2,
        "",
    );
    t += &p(
        "c",
        "implementer",
        "implementer_prompt",
        "code_diff",
        3,
        "    can_iterate: true\n",
    );
    t += &p(
        "d",
        "reviewer_functional",
        "reviewer_functional_prompt",
        "review_report",
        4,
        "",
    );
    t += &p(
        "e",
        "reviewer_style",
        "reviewer_style_prompt",
        "review_report",
        5,
        "    parallel_with: d\n",
    );
    t += "  - id: f\n    name: f\n    role: verifier\n    provider_config: {provider_type: none}\n    output_artifact_type: verification_report\n    success_pattern: null\n    order: 6\n";
    t
}

/// A project holding the scripted template and its replies.
fn scripted_project(root: &Path) {
    project(
        root,
        &[
            ("replies.yaml", REPLIES.to_owned()),
            ("template.yaml", template()),
        ],
    );
}

fn orchestration() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut per_phase = Vec::new();
    for _ in 0..15 {
        let dir = project::scratch();
        let root = dir.path().canonicalize().expect("canonical");
        scripted_project(&root);
        let home = Home::at(root.join(".home"));
        let engine = Engine::new(home).expect("engine");
        let template = parse_template(&template(), &root.join("template.yaml")).expect("template");
        let exec = engine
            .create(StartOptions {
                trigger: autowrkers::spec::TriggerMode::ManualTask,
                project: root.clone(),
                task: "bench".into(),
                template,
                template_source: "bench".into(),
                budget: None,
                in_place: false,
                sandbox: None,
                include_uncommitted: false,
                no_verify: false,
                interactive: false,
                github: None,
            })
            .expect("create");
        let bus = EventBus::new(&exec);
        let started = Instant::now();
        let status = runtime
            .block_on(engine.reconcile(&exec, &bus))
            .expect("reconcile");
        let elapsed = started.elapsed();
        assert_eq!(status.as_str(), "completed");
        per_phase.push(elapsed / 6);
    }
    println!(
        "orchestration per phase (whole 6-phase run / 6, worktree setup included): median {:.2?}",
        median(per_phase)
    );
}

fn peak_rss() {
    let dir = project::scratch();
    let root = dir.path().canonicalize().expect("canonical");
    scripted_project(&root);
    let status = Command::new(env!("CARGO_BIN_EXE_autowrkers"))
        .args([
            "run",
            "--path",
            ".",
            "--task",
            "bench",
            "--template",
            "template.yaml",
            "--no-realtime",
        ])
        .env("AUTOWRKERS_HOME", root.join(".home"))
        .current_dir(&root)
        .output()
        .expect("run");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // SAFETY: getrusage fills the struct we pass; RUSAGE_CHILDREN covers the waited-for child.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    println!(
        "peak RSS of `autowrkers run` (6 phases): {:.1} MB",
        usage.ru_maxrss as f64 / 1024.0
    );
}

fn help_latency() {
    let mut times = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_autowrkers"))
            .arg("--help")
            .output()
            .expect("help");
        times.push(started.elapsed());
        assert!(out.status.success());
    }
    println!("`autowrkers --help`: median {:.2?}", median(times));
}

/// One sandboxed `sh -c true` from the runner's side (sandbox walls raised between `fork` and
/// `exec`, the shell run, its exit seen), `workspace-write`, without network (the seccomp
/// filter, or the network namespace on kernels before Landlock ABI 6) and with it, taken in
/// turn so that the ratio holds through the machine's swings.
fn sandboxed_command() {
    use autowrkers::sandbox::{Sandbox, SandboxMode, SandboxSpec};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let work = tempfile::tempdir().expect("work");
    let sandbox = |network| {
        Sandbox::new(&SandboxSpec {
            mode: SandboxMode::WorkspaceWrite,
            workdir: work.path().to_path_buf(),
            network,
            pass_env: vec![],
            read_paths: vec![],
            protected: vec![],
        })
        .expect("sandbox")
    };
    let (off, on) = (sandbox(false), sandbox(true));
    let time = |sandbox: &Sandbox| {
        let started = Instant::now();
        let out = rt
            .block_on(autowrkers::process::run_shell(
                "true",
                sandbox,
                std::time::Duration::from_secs(10),
                100,
            ))
            .expect("spawn");
        assert_eq!(out.exit_code, Some(0));
        started.elapsed()
    };
    let pairs: Vec<_> = (0..80).map(|_| (time(&off), time(&on))).collect();
    let mut ratios: Vec<f64> = pairs
        .iter()
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "sandboxed `sh -c true`: network off median {:.2?}, on {:.2?}; off ÷ on, pair by pair: {:.2}×",
        median(pairs.iter().map(|p| p.0).collect()),
        median(pairs.iter().map(|p| p.1).collect()),
        ratios[ratios.len() / 2]
    );
}

fn streaming_overhead() {
    use autowrkers::engine::EventKind;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime.block_on(fake_openai::start());
    let mut gaps = Vec::new();
    for _ in 0..30 {
        let dir = project::scratch();
        let root = dir.path().canonicalize().expect("canonical");
        let yaml = format!(
            "name: s\nphases:\n  - id: a\n    name: a\n    role: analyzer\n    provider_config: {{provider_type: openai_compatible, model_name: analysis, api_url: \"{}\"}}\n    prompt_template: analyzer_prompt\n    output_artifact_type: task_list\n    success_pattern: /done\n",
            server.url()
        );
        let template = parse_template(&yaml, &root.join("t.yaml")).expect("template");
        let engine = Engine::new(Home::at(root.join(".home"))).expect("engine");
        let exec = engine
            .create(StartOptions {
                trigger: autowrkers::spec::TriggerMode::ManualTask,
                project: root.clone(),
                task: "bench".into(),
                template,
                template_source: "bench".into(),
                budget: None,
                in_place: true,
                sandbox: None,
                include_uncommitted: false,
                no_verify: false,
                interactive: false,
                github: None,
            })
            .expect("create");
        let bus = EventBus::new(&exec);
        let mut rx = bus.subscribe();
        // Stamp the first progress event as it arrives, on the monotonic clock the server uses.
        let seen = runtime.spawn(async move {
            while let Some(event) = rx.recv().await {
                if matches!(event.kind, EventKind::PhaseProgress { .. }) {
                    return Some(Instant::now());
                }
            }
            None
        });
        let status = runtime
            .block_on(engine.reconcile(&exec, &bus))
            .expect("reconcile");
        assert_eq!(status.as_str(), "completed");
        bus.close();
        let at = runtime
            .block_on(seen)
            .expect("join")
            .expect("a progress event");
        let sent = server.last_first_byte().expect("server wrote");
        gaps.push(at.duration_since(sent));
    }
    println!(
        "first SSE byte -> first workflow:phase_progress: median {:.2?}",
        median(gaps)
    );
}

/// `budget status` and `budget history` over a 100 000-line ledger, index warm.
fn budget_commands() {
    let dir = project::scratch();
    let home = dir.path().join("home");
    let ledger = home.join("ledger");
    std::fs::create_dir_all(&ledger).expect("mkdir");
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let mut text = String::with_capacity(100_000 * 330);
    for i in 0..100_000u32 {
        let day = 1 + i % 25;
        let provider = ["openai", "anthropic", "gemini_sdk"][(i % 3) as usize];
        let model = ["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-pro"][(i % 3) as usize];
        let line = serde_json::json!({
            "ts": format!("{month}-{day:02}T10:00:00.000Z"), "execution": format!("exec-{}", i % 500),
            "project": format!("/projects/p{}", i % 7), "phase": "phase-implement", "iteration": 1,
            "provider": provider,
            "model": model,
            "tokens": {"input": 1200, "output": 300, "cached_input": 800, "cache_write": 0},
            "usd": 0.0123, "price_source": "table"
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(ledger.join(format!("{month}.ndjson")), text).expect("ledger");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_autowrkers"))
            .args(args)
            .env("AUTOWRKERS_HOME", &home)
            .current_dir(dir.path())
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let started = Instant::now();
    run(&["budget", "status"]);
    println!(
        "budget status, index cold (folds 100 000 lines): {:.2?}",
        started.elapsed()
    );
    for args in [
        &["budget", "status"][..],
        &["budget", "history", "--days", "30"],
    ] {
        let mut times = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            run(args);
            times.push(started.elapsed());
        }
        println!(
            "`autowrkers {}` over 100 000 ledger lines, index warm: median {:.2?}",
            args.join(" "),
            median(times)
        );
    }
}

fn main() {
    // `cargo test --benches` runs this binary with --bench absent; measure only under cargo bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // The in-process runs start their sandboxed commands through the real binary's helper.
    // SAFETY: set before any thread of this process starts.
    unsafe {
        std::env::set_var(
            "AUTOWRKERS_SANDBOX_HELPER",
            env!("CARGO_BIN_EXE_autowrkers"),
        )
    };
    peak_rss();
    help_latency();
    sandboxed_command();
    orchestration();
    streaming_overhead();
    budget_commands();
}
