//! The real agent CLIs (installed from npm on first use, cached) driven against the fake server
//! in temp git repositories: each edits a file as the implementer and its tokens (Claude: its
//! reported cost) are what the server reported; a Claude-implements, Codex-reviews pipeline;
//! failure paths. No network but the npm registry on first use; if npm cannot install the CLIs
//! these tests fail loudly.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Protocol, Reply, Rule};
use crate::support::{Project, run};

/// The CLIs the tests drive, pinned: their streams, flags and default models are what the
/// tests (and the book) describe. Raise a version here, then run the suite.
const PACKAGES: [(&str, &str); 4] = [
    ("@anthropic-ai/claude-code", "2.1.197"),
    ("@openai/codex", "0.171.0"),
    ("@google/gemini-cli", "0.61.0"),
    ("@qwen-code/qwen-code", "0.15.10"),
];

/// True when every pinned CLI is installed under `root` at its pinned version.
fn pinned_versions_installed(root: &std::path::Path) -> bool {
    PACKAGES.iter().all(|(name, version)| {
        std::fs::read_to_string(root.join("node_modules").join(name).join("package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["version"] == *version)
    })
}

/// The folder holding `claude`, `codex`, `gemini` and `qwen`, installing them once.
pub fn cli_bin() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::var_os("AUTOWRKERS_AGENT_CLIS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                    .join(".cache/autowrkers/agent-clis")
            });
        let bin = root.join("node_modules/.bin");
        if !pinned_versions_installed(&root) {
            std::fs::create_dir_all(&root).expect("cache dir");
            let out = Command::new("npm")
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                ])
                .arg(&root)
                .args(
                    PACKAGES
                        .iter()
                        .map(|(name, version)| format!("{name}@{version}")),
                )
                .output()
                .unwrap_or_else(|e| {
                    panic!("npm is needed to install the agent CLIs for these tests: {e}")
                });
            assert!(
                out.status.success(),
                "npm could not install the agent CLIs:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        bin
    })
    .clone()
}

pub fn provider(kind: &str, model: &str, url: &str, binary: &str) -> String {
    format!(
        "    provider_config:\n      provider_type: {kind}\n      model_name: {model}\n      api_url: \"{url}\"\n      extra_params: {{binary: \"{}\", api_key_env: FAKE_LLM_KEY}}\n",
        cli_bin().join(binary).display()
    )
}

pub fn implementer_template(provider_block: &str, extra: &str) -> String {
    format!(
        "name: cli\nfailure_behavior: fallback_provider\nphases:\n  - id: impl\n    name: Implementation\n    role: implementer\n{provider_block}{extra}    prompt_template: implementer_prompt\n    output_artifact_type: code_diff\n    success_pattern: /complete\n    max_retries: 0\n    order: 1\n"
    )
}

/// A git project whose implementer writes `made.txt` through `tool` (a per-CLI tool call).
async fn implement_with(
    kind: &str,
    binary: &str,
    model: &str,
    base: impl Fn(&FakeLlm) -> String,
    tool: impl Fn(&std::path::Path) -> (String, Value),
) -> (FakeLlm, Project, crate::support::Ran) {
    let p = Project::git(&[("a.txt", "a\n")]);
    let (name, args) = tool(&p.path());
    let mut first = Reply::tools(vec![(name.as_str(), args)]);
    (
        first.prompt_tokens,
        first.completion_tokens,
        first.cached_tokens,
    ) = (1000, 50, 200);
    let mut done = Reply::text("All done. /complete");
    (
        done.prompt_tokens,
        done.completion_tokens,
        done.cached_tokens,
    ) = (1500, 30, 600);
    // Qwen Code runs a memory-extraction subagent on the same model after the task.
    let memory = Rule {
        contains: Some("memory extraction".into()),
        ..Rule::new(model, None, Reply::text("Nothing to remember."))
    };
    let (server, _h) = FakeLlm::start(vec![
        memory,
        Rule::after_tool_results(model, 0, first),
        Rule::after_tool_results(model, 1, done),
    ])
    .await;
    p.write(
        "t.yaml",
        &implementer_template(&provider(kind, model, &base(&server), binary), ""),
    );
    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--task",
        "Create made.txt",
        "--template",
        "t.yaml",
        "--in-place",
    ]);
    let out = run(cmd).await;
    (server, p, out)
}

/// Tokens the server sent for `model`, in our terms (input excludes cached).
pub fn server_usage(server: &FakeLlm, model: &str) -> Value {
    let calls = server.calls(model);
    let (i, o, c) = calls.iter().fold((0, 0, 0), |(i, o, c), r| {
        (i + r.usage.0, o + r.usage.1, c + r.usage.2)
    });
    json!({"input": i, "output": o, "cached_input": c})
}

fn assert_tokens(p: &Project, server: &FakeLlm, model: &str) {
    let run0 = &p.state()["phase_executions"][0];
    let want = server_usage(server, model);
    for k in ["input", "output", "cached_input"] {
        assert_eq!(run0["tokens"][k], want[k], "{k}: {run0}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_edits_a_file_and_bills_its_reported_cost() {
    let (server, p, out) = implement_with(
        "claude_code",
        "claude",
        "claude-fake",
        |s| format!("http://{}", s.addr),
        |dir| {
            (
                "Write".into(),
                json!({"file_path": dir.join("made.txt"), "content": "by claude\n"}),
            )
        },
    )
    .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        std::fs::read_to_string(p.path().join("made.txt")).expect("made"),
        "by claude\n"
    );
    assert!(
        server
            .log()
            .iter()
            .all(|r| r.protocol == Protocol::Anthropic)
    );
    assert_tokens(&p, &server, "claude-fake");
    let ledger = std::fs::read_dir(p.home.path().join("ledger"))
        .expect("ledger")
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "ndjson"))
        .expect("file");
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(ledger.path())
            .expect("read")
            .lines()
            .next()
            .expect("line"),
    )
    .expect("json");
    assert_eq!(
        line["price_source"], "provider",
        "Claude Code's total_cost_usd is billed"
    );
    let log = std::fs::read_to_string(p.execution().join("logs/impl.1.log")).expect("log");
    assert!(log.contains("> Write"), "{log}");
    let state_cost = p.state()["phase_executions"][0]["cost_usd"]
        .as_f64()
        .expect("cost");
    assert_eq!(Some(state_cost), line["usd"].as_f64());
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_edits_a_file_and_its_tokens_are_priced() {
    let (server, p, out) = implement_with(
        "codex",
        "codex",
        "codex-fake",
        |s| s.url(),
        |_| {
            (
                "exec_command".into(),
                json!({"cmd": "echo 'by codex' > made.txt"}),
            )
        },
    )
    .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let logs: Vec<String> = crate::support::all_files(&p.execution().join("logs"))
        .into_iter()
        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
        .collect();
    assert_eq!(
        std::fs::read_to_string(p.path().join("made.txt"))
            .ok()
            .as_deref(),
        Some("by codex\n"),
        "{logs:?}"
    );
    assert!(
        server
            .log()
            .iter()
            .all(|r| r.protocol == Protocol::Responses)
    );
    assert_tokens(&p, &server, "codex-fake");
    assert!(
        p.state()["phase_executions"][0]["cost_usd"].is_null(),
        "a made-up model has an unknown price, not $0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_cli_edits_a_file() {
    let (server, p, out) = implement_with(
        "gemini_cli",
        "gemini",
        "gemini-fake",
        |s| format!("http://{}", s.addr),
        |dir| {
            (
                "write_file".into(),
                json!({"file_path": dir.join("made.txt"), "content": "by gemini\n"}),
            )
        },
    )
    .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        std::fs::read_to_string(p.path().join("made.txt")).expect("made"),
        "by gemini\n"
    );
    assert!(server.log().iter().all(|r| r.protocol == Protocol::Gemini));
    assert_tokens(&p, &server, "gemini-fake");
    // Gemini streams its answer in chunks: they make one line, not a line each.
    let events = std::fs::read_to_string(p.execution().join("events.ndjson")).expect("events");
    let progress: Vec<String> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "workflow:phase_progress")
        .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        progress.iter().any(|t| t == "All done. /complete"),
        "{progress:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn qwen_code_edits_a_file() {
    let (server, p, out) = implement_with(
        "qwen_code",
        "qwen",
        "qwen-fake",
        |s| s.url(),
        |dir| {
            (
                "write_file".into(),
                json!({"file_path": dir.join("made.txt"), "content": "by qwen\n"}),
            )
        },
    )
    .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let log = std::fs::read_to_string(p.execution().join("logs/impl.1.log")).unwrap_or_default();
    let seen: Vec<String> = server
        .log()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.model,
                r.body.to_string().chars().take(300).collect::<String>()
            )
        })
        .collect();
    assert_eq!(
        std::fs::read_to_string(p.path().join("made.txt")).unwrap_or_default(),
        "by qwen\n",
        "{log}\n{seen:#?}"
    );
    assert!(server.log().iter().all(|r| r.protocol == Protocol::OpenAi));
    assert_tokens(&p, &server, "qwen-fake");
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_implements_and_codex_reviews() {
    let p = Project::git(&[("a.txt", "a\n")]);
    let approve = "```json\n{\"approved\": true, \"summary\": \"looks right\", \"issues\": []}\n```\n/review-complete";
    let (server, _h) = FakeLlm::start(vec![
        Rule::after_tool_results(
            "claude-fake",
            0,
            Reply::tool(
                "Write",
                json!({"file_path": p.path().join("made.txt"), "content": "x\n"}),
            ),
        ),
        Rule::after_tool_results("claude-fake", 1, Reply::text("/complete")),
        Rule::new("codex-fake", None, Reply::text(approve)),
    ])
    .await;
    let mut t = implementer_template(
        &provider(
            "claude_code",
            "claude-fake",
            &format!("http://{}", server.addr),
            "claude",
        ),
        "",
    );
    t += "  - id: review\n    name: Review\n    role: reviewer_functional\n";
    t += &provider("codex", "codex-fake", &server.url(), "codex");
    t += "    prompt_template: reviewer_functional_prompt\n    output_artifact_type: review_report\n    success_pattern: /review-complete\n    order: 2\n";
    p.write("t.yaml", &t);
    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--task",
        "Create made.txt",
        "--template",
        "t.yaml",
        "--in-place",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let state = p.state();
    assert_eq!(state["status"], "completed");
    assert_eq!(state["phase_executions"][1]["passed"], true);
    let review_prompt = server.calls("codex-fake")[0].body.to_string();
    assert!(
        review_prompt.contains("made.txt"),
        "the reviewer saw the diff"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_cli_falls_back_a_denial_is_said_and_a_timeout_fails_the_phase() {
    // 500s from the server: Claude's own message fails the phase; the fallback answers.
    let p = Project::git(&[("a.txt", "a\n")]);
    let (server, _h) = FakeLlm::start(vec![
        Rule::new("claude-fake", None, Reply::status(500)),
        Rule::after_tool_results(
            "backup",
            0,
            Reply::tool(
                "write_file",
                json!({"path": "made.txt", "content": "backup\n"}),
            ),
        ),
        Rule::new("backup", None, Reply::text("/complete")),
    ])
    .await;
    let fallback = format!(
        "      fallback_provider: {{provider_type: openai_compatible, model_name: backup, api_url: \"{}\"}}\n",
        server.url()
    );
    let block = provider(
        "claude_code",
        "claude-fake",
        &format!("http://{}", server.addr),
        "claude",
    ) + &fallback;
    let out = p
        .run_template(&implementer_template(&block, ""), &["--in-place", "--json"])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let run0 = &p.state()["phase_executions"][0];
    assert_eq!(run0["model_used"], "backup");
    assert!(
        run0["error_message"]
            .as_str()
            .expect("error")
            .contains("claude_code"),
        "{run0}"
    );
    assert!(out.stdout.contains("workflow:provider_fallback"));

    // A reviewer runs in plan mode: its write is refused and said, and the review goes on.
    let p = Project::git(&[("a.txt", "a\n")]);
    let (server, _h) = FakeLlm::start(vec![
        Rule::after_tool_results(
            "claude-fake",
            0,
            Reply::tool(
                "Write",
                json!({"file_path": p.path().join("evil.txt"), "content": "x"}),
            ),
        ),
        Rule::new(
            "claude-fake",
            None,
            Reply::text("```json\n{\"approved\": true, \"summary\": \"s\"}\n```\n/review-complete"),
        ),
    ])
    .await;
    let t = format!(
        "name: r\nfailure_behavior: fallback_provider\nphases:\n  - id: review\n    name: Review\n    role: reviewer_functional\n{}    prompt_template: reviewer_functional_prompt\n    output_artifact_type: review_report\n    success_pattern: /review-complete\n    max_retries: 0\n    order: 1\n",
        provider(
            "claude_code",
            "claude-fake",
            &format!("http://{}", server.addr),
            "claude"
        )
    );
    let out = p.run_template(&t, &["--in-place"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        !p.path().join("evil.txt").exists(),
        "a reviewer cannot write"
    );
    assert!(
        out.stdout.contains("refused by the CLI: Write"),
        "{}",
        out.stdout
    );

    // A timeout kills the CLI's whole process group.
    let p = Project::git(&[("a.txt", "a\n")]);
    let (server, _h) = FakeLlm::start(vec![Rule::new(
        "claude-fake",
        None,
        Reply::text("x").held(),
    )])
    .await;
    p.write(
        "t.yaml",
        &implementer_template(
            &provider(
                "claude_code",
                "claude-fake",
                &format!("http://{}", server.addr),
                "claude",
            ),
            "    timeout_seconds: 3\n",
        ),
    );
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template", "t.yaml", "--in-place"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        p.state()["message"]
            .as_str()
            .expect("message")
            .contains("timed out")
    );
    let log = std::fs::read_to_string(p.execution().join("logs/impl.1.log")).expect("log");
    let pid: i32 = log
        .split("pid ")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .and_then(|s| s.trim().parse().ok())
        .expect("pid in the log");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        status.is_empty() || status.contains("State:\tZ"),
        "the CLI ({pid}) outlived its phase:\n{status}"
    );
    // It was stopped before it reported: billed as unknown, never as $0.
    let run0 = &p.state()["phase_executions"][0];
    assert!(run0["cost_usd"].is_null(), "{run0}");
    assert_eq!(run0["unknown_cost_calls"], 1, "{run0}");
    assert_eq!(p.state()["cost_incomplete"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_test_reports_each_clis_version() {
    let p = Project::plain(&[]);
    for (kind, bin) in [
        ("claude_code", "claude"),
        ("codex", "codex"),
        ("gemini_cli", "gemini"),
        ("qwen_code", "qwen"),
    ] {
        let mut cmd = p.cmd();
        cmd.args(["provider", "test", kind, "--url"])
            .arg(cli_bin().join(bin));
        let out = run(cmd).await;
        assert_eq!(out.code, 0, "{kind}: {}", out.stderr);
        assert!(
            out.stdout.starts_with(&format!("ok: {kind} "))
                && out.stdout.chars().any(|c| c.is_ascii_digit()),
            "{}",
            out.stdout
        );
    }
    let mut cmd = p.cmd();
    cmd.args([
        "provider",
        "test",
        "claude_code",
        "--url",
        "/nonexistent/claude",
    ]);
    let out = run(cmd).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("npm install -g @anthropic-ai/claude-code"),
        "{}",
        out.stderr
    );
}
