//! Bad input gets a clear error and loses nothing: malformed YAML, unknown provider types,
//! unknown artifacts, missing keys, invalid model answers, tool calls that try to escape.

use serde_json::json;

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, git, implementer_only, phase, run};

fn rule(model: &str, turn: Option<usize>, reply: Reply) -> Rule {
    Rule {
        times: None,
        tool_results: None,
        model: model.to_owned(),
        turn,
        contains: None,
        reply,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_yaml_names_file_line_and_column() {
    let p = Project::plain(&[]);
    p.write("bad.yaml", "name: x\nphases:\n  - id: a\n   name: b\n");
    let mut cmd = p.cmd();
    cmd.args(["template", "validate", "bad.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("bad.yaml:4:"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_provider_type_is_located() {
    let p = Project::plain(&[]);
    let yaml = "name: x\nphases:\n  - id: a\n    name: A\n    role: analyzer\n    provider_config:\n      provider_type: bogus\n    prompt_template: analyzer_prompt\n    output_artifact_type: task_list\n";
    p.write("t.yaml", yaml);
    let mut cmd = p.cmd();
    cmd.args(["template", "validate", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("t.yaml:7:7: `provider_type`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("\"bogus\""), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_artifact_in_a_prompt_fails_before_any_call() {
    let (server, _h) = FakeLlm::start(vec![]).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let mut t = "name: x\nphases:\n".to_owned();
    t += &phase(
        "p1",
        "analyzer",
        "analyzer",
        &server.url(),
        (
            "\"Read {{ artifact:tasklist }} please\"",
            "task_list",
            "/done",
        ),
        1,
        "",
    );
    let out = p.run_template(&t, &[]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("`artifact:tasklist`"), "{}", out.stderr);
    assert!(server.log().is_empty(), "no call may be made");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_key_says_what_to_set_and_exits_2() {
    let p = Project::git(&[("a.txt", "a\n")]);
    let template = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/templates/openai-only.yaml");
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template"]).arg(template);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("OPENAI_API_KEY") && out.stderr.contains("11434"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked") && !out.stderr.contains("backtrace"));

    // The built-in default (the seed's template) names what each phase lacks.
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("Analysis (phase-analysis)"),
        "{}",
        out.stderr
    );
}

fn analyzer_only(url: &str, header: &str) -> String {
    format!("name: x\n{header}phases:\n")
        + &phase(
            "p1",
            "analyzer",
            "analyzer",
            url,
            ("analyzer_prompt", "task_list", "/analysis-complete"),
            1,
            "    max_retries: 1\n",
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_json_is_retried_with_the_reason() {
    let good = "```json\n{\"summary\": \"s\", \"tasks\": []}\n```\n/analysis-complete";
    let (server, _h) = FakeLlm::start(vec![
        rule(
            "analyzer",
            Some(0),
            Reply::text("{\"summary\": \"s\", \"tasks\": \"not a list\"} /analysis-complete"),
        ),
        rule("analyzer", Some(1), Reply::text(good)),
    ])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let out = p.run_template(&analyzer_only(&server.url(), ""), &[]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let calls = server.calls("analyzer");
    assert_eq!(calls.len(), 2);
    let retry = calls[1].body["messages"]
        .as_array()
        .expect("messages")
        .last()
        .expect("last")["content"]
        .as_str()
        .expect("text")
        .to_owned();
    assert!(
        retry.contains("not accepted") && retry.contains("/tasks"),
        "{retry}"
    );
    // The rejected answer is the assistant turn just before it: the model sees what it said.
    let messages = calls[1].body["messages"].as_array().expect("messages");
    let answer = &messages[messages.len() - 2];
    assert_eq!(answer["role"], "assistant", "{messages:?}");
    assert!(
        answer["content"]
            .as_str()
            .expect("text")
            .contains("not a list"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_json_fails_cleanly_after_max_retries() {
    let (server, _h) = FakeLlm::start(vec![rule(
        "analyzer",
        None,
        Reply::text("no json here /analysis-complete"),
    )])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    p.write(
        "t.yaml",
        &analyzer_only(&server.url(), "failure_behavior: fallback_provider\n"),
    );
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        server.calls("analyzer").len(),
        2,
        "one call and max_retries = 1 retry"
    );
    let state = p.state();
    assert_eq!(state["status"], "failed");
    assert!(
        state["message"]
            .as_str()
            .expect("message")
            .contains("not accepted after 1 retries"),
        "{state}"
    );

    // With pause_notify the same failure pauses instead, and stays resumable.
    p.write(
        "t.yaml",
        &analyzer_only(&server.url(), "failure_behavior: pause_notify\n"),
    );
    std::fs::remove_dir_all(p.path().join(".autowrkers/executions")).expect("clean");
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(p.state()["status"], "paused");
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_calls_cannot_leave_the_worktree() {
    let (server, _h) = FakeLlm::start(vec![
        rule(
            "implementer",
            Some(0),
            Reply::tools(vec![
                ("read_file", json!({"path": "../../etc/passwd"})),
                ("read_file", json!({"path": "/etc/passwd"})),
                ("read_file", json!({"path": "escape/passwd"})),
                (
                    "write_file",
                    json!({"path": "../outside.txt", "content": "x"}),
                ),
                ("read_file", json!({"path": "a.txt"})),
            ]),
        ),
        rule("implementer", Some(1), Reply::text("/complete")),
    ])
    .await;
    let p = Project::git(&[("a.txt", "inside\n")]);
    std::os::unix::fs::symlink("/etc", p.path().join("escape")).expect("symlink");
    git(&p.path(), &["add", "escape"]);
    git(
        &p.path(),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "link",
        ],
    );
    let mut t = "name: x\nphases:\n".to_owned();
    t += &phase(
        "impl",
        "implementer",
        "implementer",
        &server.url(),
        ("implementer_prompt", "code_diff", "/complete"),
        1,
        "",
    );
    let out = p.run_template(&t, &[]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let second = &server.calls("implementer")[1];
    let tool_results: Vec<String> = second.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().expect("content").to_owned())
        .collect();
    assert_eq!(tool_results.len(), 5);
    for refused in &tool_results[..4] {
        assert!(refused.starts_with("error:"), "{refused}");
        assert!(!refused.contains("root:"), "leaked /etc/passwd: {refused}");
    }
    assert_eq!(tool_results[4], "inside\n");
    let outside = p.path().parent().expect("parent").join("outside.txt");
    assert!(!outside.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_without_commits_or_a_bare_one_is_refused_before_any_call() {
    let (server, _h) = FakeLlm::start(vec![rule(
        "implementer",
        None,
        Reply::tool("write_file", json!({"path": "a.txt", "content": "model\n"})),
    )])
    .await;
    let t = implementer_only(&server.url(), "");
    // No commits: the user's file would have been edited in place.
    let p = Project::plain(&[("a.txt", "mine\n")]);
    git(&p.path(), &["init", "-q"]);
    let out = p.run_template(&t, &[]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no commits"), "{}", out.stderr);
    assert!(out.stderr.contains("--in-place"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(p.path().join("a.txt")).expect("a"),
        "mine\n"
    );

    // Bare: no working files at all.
    let bare = Project::plain(&[]);
    git(&bare.path(), &["init", "-q", "--bare"]);
    bare.write("t.yaml", &t);
    let mut cmd = bare.cmd();
    cmd.args(["run", "--path", ".", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("bare git repository"), "{}", out.stderr);
    assert!(server.log().is_empty(), "no model was called");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_projects_yaml_is_reported_and_never_replaced() {
    let p = Project::git(&[("a.txt", "a\n")]);
    let registry = p.home.path().join("projects.yaml");
    std::fs::write(&registry, "- /somewhere\n- [unclosed\n").expect("damage");
    let mut cmd = p.cmd();
    cmd.args(["workflow", "list"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("projects.yaml:"), "{}", out.stderr);
    let (server, _h) =
        FakeLlm::start(vec![rule("implementer", None, Reply::text("/complete"))]).await;
    let out = p
        .run_template(&implementer_only(&server.url(), ""), &[])
        .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("projects.yaml"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(&registry).expect("registry"),
        "- /somewhere\n- [unclosed\n",
        "the user's file is kept as it was"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn extra_params_are_typed_per_provider_kind() {
    let p = Project::plain(&[]);
    let t = |params: &str, kind: &str| {
        format!(
            "name: x\nphases:\n  - id: a\n    name: a\n    role: analyzer\n    provider_config:\n      provider_type: {kind}\n      extra_params: {{{params}}}\n    prompt_template: analyzer_prompt\n    output_artifact_type: task_list\n"
        )
    };
    // A typo is an error at its place, not a setting silently ignored.
    p.write("typo.yaml", &t("max_turn: 5", "openai"));
    let mut cmd = p.cmd();
    cmd.args(["template", "validate", "typo.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("typo.yaml:8:"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    // A real key where it means nothing.
    p.write("misplaced.yaml", &t("binary: /usr/bin/claude", "openai"));
    let mut cmd = p.cmd();
    cmd.args(["template", "validate", "misplaced.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("extra_params.binary"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}
