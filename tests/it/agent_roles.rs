//! Agent CLIs in their roles, through the real CLIs against the fake server: an implementer of
//! each CLI runs the project's commands in its worktree (inside our sandbox), and a reviewer of
//! each CLI whose write is refused still gives its review.

use serde_json::{Value, json};

use crate::agent_clis::{implementer_template, provider};
use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::Project;

const MAKEFILE: &str = "test:\n\techo ran > ran-by-make.txt\n";

/// (provider type, binary, model, shell tool call, base URL without a path).
fn shell_call(kind: &str) -> (&'static str, &'static str, Reply, bool) {
    match kind {
        "claude_code" => (
            "claude",
            "claude-fake",
            Reply::tool(
                "Bash",
                json!({"command": "make test", "description": "run the tests"}),
            ),
            true,
        ),
        "gemini_cli" => (
            "gemini",
            "gemini-fake",
            Reply::tool("run_shell_command", json!({"command": "make test"})),
            true,
        ),
        _ => (
            "qwen",
            "qwen-fake",
            Reply::tool("run_shell_command", json!({"command": "make test"})),
            false,
        ),
    }
}

async fn implementer_runs_make_test(kind: &str) {
    let (binary, model, call, bare_url) = shell_call(kind);
    let (server, _h) = FakeLlm::start(vec![
        Rule::after_tool_results(model, 0, call),
        Rule::after_tool_results(model, 1, Reply::text("Tests ran. /complete")),
        // Qwen Code's memory-extraction subagent.
        Rule {
            contains: Some("memory extraction".into()),
            ..Rule::new(model, None, Reply::text("Nothing to remember."))
        },
    ])
    .await;
    let p = Project::git(&[("a.txt", "a\n"), ("Makefile", MAKEFILE)]);
    let url = if bare_url {
        format!("http://{}", server.addr)
    } else {
        server.url()
    };
    let template = implementer_template(&provider(kind, model, &url, binary), "")
        .replace("fallback_provider", "pause_notify");
    let out = p.run_template(&template, &[]).await;
    let log = std::fs::read_to_string(p.execution().join("logs/impl.1.log")).unwrap_or_default();
    assert_eq!(out.code, 0, "{kind}: {}\n{log}", out.stderr);
    assert_eq!(p.on_branch("ran-by-make.txt"), "ran\n", "{kind}: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claude_implementer_runs_make_test() {
    implementer_runs_make_test("claude_code").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gemini_implementer_runs_make_test() {
    implementer_runs_make_test("gemini_cli").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_qwen_implementer_runs_make_test() {
    implementer_runs_make_test("qwen_code").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reviewer_of_each_cli_whose_write_is_refused_still_reviews() {
    let approve = "```json\n{\"approved\": true, \"summary\": \"looks right\", \"issues\": []}\n```\n/review-complete";
    for kind in ["claude_code", "codex", "gemini_cli", "qwen_code"] {
        let p = Project::git(&[("a.txt", "a\n")]);
        let (binary, model, write, bare_url) = match kind {
            "claude_code" => (
                "claude",
                "claude-fake",
                Reply::tool("Write", json!({"file_path": "pwned.txt", "content": "x\n"})),
                true,
            ),
            "codex" => (
                "codex",
                "codex-fake",
                Reply::tool("exec_command", json!({"cmd": "echo x > pwned.txt"})),
                false,
            ),
            "gemini_cli" => (
                "gemini",
                "gemini-fake",
                Reply::tool(
                    "write_file",
                    json!({"file_path": "pwned.txt", "content": "x\n"}),
                ),
                true,
            ),
            _ => (
                "qwen",
                "qwen-fake",
                Reply::tool(
                    "write_file",
                    json!({"file_path": "pwned.txt", "content": "x\n"}),
                ),
                false,
            ),
        };
        let (server, _h) = FakeLlm::start(vec![
            Rule::new("implementer", None, Reply::text("/complete")),
            Rule::after_tool_results(model, 0, write),
            Rule::after_tool_results(model, 1, Reply::text(approve)),
            Rule {
                contains: Some("memory extraction".into()),
                ..Rule::new(model, None, Reply::text("Nothing to remember."))
            },
        ])
        .await;
        let url = if bare_url {
            format!("http://{}", server.addr)
        } else {
            server.url()
        };
        let mut t = crate::support::implementer_only(&server.url(), "");
        t += "  - id: review\n    name: Review\n    role: reviewer_functional\n";
        t += &provider(kind, model, &url, binary);
        t += "    prompt_template: reviewer_functional_prompt\n    output_artifact_type: review_report\n    success_pattern: /review-complete\n    max_retries: 0\n    order: 2\n";
        let out = p.run_template(&t, &[]).await;
        let log =
            std::fs::read_to_string(p.execution().join("logs/review.1.log")).unwrap_or_default();
        assert_eq!(out.code, 0, "{kind}: {}\n{log}", out.stderr);
        let review: Value = serde_json::from_str(
            &std::fs::read_to_string(p.execution().join("artifacts/1/review.json"))
                .expect("review"),
        )
        .expect("json");
        assert_eq!(review["approved"], true, "{kind}");
        let workspace = p.state()["workspace"]["dir"]
            .as_str()
            .expect("dir")
            .to_owned();
        assert!(
            !std::path::Path::new(&workspace).join("pwned.txt").exists(),
            "{kind}: the reviewer wrote"
        );
        if kind != "codex" {
            // Codex shows its refused command with its exit code instead.
            assert!(
                out.stdout.contains("refused by the CLI"),
                "{kind}: {}",
                out.stdout
            );
        }
    }
}
