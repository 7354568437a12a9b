//! An exhausted quota is not a rate limit: OpenAI's `insufficient_quota` is not retried, the
//! phase moves to its fallback at once with a `workflow:provider_exhausted` event, and the key
//! is marked so the next execution skips it without calling.

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, run};

const TASKS: &str = "```json\n{\"summary\": \"s\", \"tasks\": []}\n```\n/analysis-complete";

#[tokio::test(flavor = "multi_thread")]
async fn insufficient_quota_goes_to_the_fallback_at_once_and_marks_the_key() {
    let (server, _h) = FakeLlm::start(vec![
        Rule::new("primary", None, Reply::quota()),
        Rule::new("backup", None, Reply::text(TASKS)),
    ])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let url = server.url();
    p.write(
        "t.yaml",
        &format!(
            "name: q\nfailure_behavior: fallback_provider\nphases:\n  - id: analyze\n    name: Analysis\n    role: analyzer\n    provider_config:\n      provider_type: openai_compatible\n      model_name: primary\n      api_url: {url}\n      extra_params: {{api_key_env: FAKE_LLM_KEY}}\n      fallback_provider: {{provider_type: openai_compatible, model_name: backup, api_url: \"{url}\", extra_params: {{api_key_env: BACKUP_KEY}}}}\n    prompt_template: analyzer_prompt\n    output_artifact_type: task_list\n    success_pattern: /analysis-complete\n    order: 1\n"
        ),
    );
    // The fallback is another account (another key), as in real use.
    let mut cmd = p.cmd();
    cmd.env("BACKUP_KEY", "sk-backup-account").args([
        "run",
        "--task",
        "t",
        "--template",
        "t.yaml",
        "--json",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(server.calls("primary").len(), 1, "not retried");
    assert_eq!(server.calls("backup").len(), 1);
    let exhausted: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("\"workflow:provider_exhausted\""))
        .collect();
    assert_eq!(exhausted.len(), 1, "{}", out.stdout);
    assert!(
        exhausted[0].contains("insufficient_quota")
            || exhausted[0].contains("exceeded your current quota"),
        "{}",
        exhausted[0]
    );

    // The key is marked (by a hash, not by value); the next execution does not call it.
    let marks: Vec<_> = std::fs::read_dir(p.home.path().join("exhausted"))
        .unwrap()
        .collect();
    assert_eq!(marks.len(), 1);
    let mark = std::fs::read_to_string(marks[0].as_ref().unwrap().path()).unwrap();
    assert!(!mark.contains(crate::support::SECRET), "{mark}");
    let mut cmd = p.cmd();
    cmd.env("BACKUP_KEY", "sk-backup-account").args([
        "run",
        "--task",
        "again",
        "--template",
        "t.yaml",
        "--no-realtime",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        server.calls("primary").len(),
        1,
        "the marked key is skipped"
    );
    assert_eq!(server.calls("backup").len(), 2);
    assert!(
        out.stdout.contains("quota or credit used up"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_cli_out_of_quota_falls_back_at_once_and_is_skipped_next_time() {
    use crate::agent_clis::{implementer_template, provider};
    let p = Project::git(&[("a.txt", "a\n")]);
    let (server, _h) = FakeLlm::start(vec![
        Rule::new("claude-fake", None, Reply::quota()),
        Rule::after_tool_results(
            "backup",
            0,
            Reply::tool(
                "write_file",
                serde_json::json!({"path": "made.txt", "content": "backup\n"}),
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
    let template = implementer_template(&block, "");
    let out = p.run_template(&template, &["--in-place", "--json"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let cli_calls = server.calls("claude-fake").len();
    assert!(cli_calls >= 1);
    assert!(
        out.stdout.contains("\"workflow:provider_exhausted\""),
        "{}",
        out.stdout
    );
    // The next run does not start the CLI again: its usage limit is remembered.
    let out = p.run_template(&template, &["--in-place", "--json"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        server.calls("claude-fake").len(),
        cli_calls,
        "the CLI was not started again"
    );
    assert!(
        out.stdout.contains("reached its usage limit earlier"),
        "{}",
        out.stdout
    );
}
