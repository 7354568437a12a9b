//! `cargo bench`: the targets of the `run` issue, measured (not asserted).
//! - orchestration overhead per phase (state write + event + git commit), 6-phase scripted run;
//! - peak RSS of a whole `autowrkers run` process;
//! - latency of `autowrkers --help`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use autowrkers::engine::{Engine, EventBus, StartOptions};
use autowrkers::spec::load::parse_template;
use autowrkers::store::Home;

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

fn project(root: &Path) {
    std::fs::create_dir_all(root.join(".autowrkers")).expect("mkdir");
    std::fs::write(root.join("main.txt"), "hello\n").expect("write");
    std::fs::write(root.join("replies.yaml"), REPLIES).expect("write");
    std::fs::write(root.join("template.yaml"), template()).expect("write");
    std::fs::write(
        root.join(".autowrkers/config.yaml"),
        "verify:\n  test: \"true\"\n",
    )
    .expect("write");
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "commit",
            "-qm",
            "init",
        ],
    ] {
        let ok = Command::new("git")
            .args(args)
            .current_dir(root)
            .status()
            .expect("git")
            .success();
        assert!(ok, "git {args:?}");
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn orchestration() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut per_phase = Vec::new();
    for _ in 0..15 {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        project(&root);
        let home = Home::at(root.join(".home"));
        let engine = Engine::new(home).expect("engine");
        let template = parse_template(&template(), &root.join("template.yaml")).expect("template");
        let exec = engine
            .create(StartOptions {
                project: root.clone(),
                task: "bench".into(),
                template,
                template_source: "bench".into(),
                budget: None,
                in_place: false,
                interactive: false,
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
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical");
    project(&root);
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

fn main() {
    // `cargo test --benches` runs this binary with --bench absent; measure only under cargo bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    peak_rss();
    help_latency();
    orchestration();
}
