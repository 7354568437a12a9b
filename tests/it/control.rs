//! Iteration behaviour, approvals, cancel, timeouts, the lock, non-git projects and the
//! read-only commands, through the real binary.

use std::time::Duration;

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::pipeline::{project, two_iteration_rules};
use crate::support::{Project, hint, phase, pipeline_template, run};

#[tokio::test(flavor = "multi_thread")]
async fn pause_for_approval_waits_then_approve_continues() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(Duration::ZERO)).await;
    let p = project(&server.url());
    p.write(
        "pipeline.yaml",
        &pipeline_template(&server.url(), "").replace("auto_iterate", "pause_for_approval"),
    );
    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--task",
        "Add a --verbose flag",
        "--template",
        "pipeline.yaml",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("workflow approve"), "{}", out.stderr);
    let state = p.state();
    assert_eq!(state["status"], "awaiting_approval");
    assert_eq!(state["iteration"], 1);
    let implementer_calls = server.calls("implementer").len();

    // The approval hint the run printed, run as printed.
    let mut cmd = p.cmd();
    cmd.args(hint(&out.stderr, "workflow approve", &[]));
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(p.state()["status"], "completed");
    assert_eq!(p.state()["iteration"], 2);
    assert!(server.calls("implementer").len() > implementer_calls);
    let request =
        std::fs::read_to_string(p.execution().join("execution.yaml")).expect("execution.yaml");
    assert!(request.contains("1: approve"), "{request}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reject_fails_and_cancel_stops_a_paused_run() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(Duration::ZERO)).await;
    let p = project(&server.url());
    p.write(
        "pipeline.yaml",
        &pipeline_template(&server.url(), "").replace("auto_iterate", "pause_for_approval"),
    );
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "t", "--template", "pipeline.yaml"]);
    assert_eq!(run(cmd).await.code, 4);
    let id = p.state()["id"].as_str().expect("id").to_owned();
    let mut cmd = p.cmd();
    cmd.args(["wf", "reject", &id[..8]]);
    let out = run(cmd).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(p.state()["status"], "failed");

    // A second execution: pause it while it waits, then cancel.
    std::fs::remove_dir_all(p.path().join(".autowrkers/executions")).expect("clean");
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "t", "--template", "pipeline.yaml"]);
    assert_eq!(run(cmd).await.code, 4);
    let id = p.state()["id"].as_str().expect("id").to_owned();
    let mut cmd = p.cmd();
    cmd.args(["workflow", "cancel", &id]);
    let out = run(cmd).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(p.state()["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phase_past_its_timeout_fails() {
    // The first call completes (its tokens must be kept); the second never answers.
    let (server, _h) = FakeLlm::start(vec![
        Rule::new(
            "analyzer",
            Some(0),
            Reply::tool("list_files", serde_json::json!({})),
        ),
        Rule::new("analyzer", None, Reply::text("x").held()),
    ])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let t = "name: x\nfailure_behavior: fallback_provider\nphases:\n".to_owned()
        + &phase(
            "p1",
            "analyzer",
            "analyzer",
            &server.url(),
            ("analyzer_prompt", "task_list", "/done"),
            1,
            "    timeout_seconds: 1\n",
        );
    let out = p.run_template(&t, &[]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        p.state()["message"]
            .as_str()
            .expect("message")
            .contains("timed out after 1s")
    );
    let run0 = &p.state()["phase_executions"][0];
    assert_eq!(
        run0["tokens"]["input"], 100,
        "tokens of the call before the timeout are recorded: {run0}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_runner_is_refused_while_the_first_holds_the_lock() {
    let mut rules = two_iteration_rules(Duration::ZERO);
    rules.insert(
        0,
        Rule {
            times: None,
            tool_results: None,
            model: "analyzer".into(),
            turn: Some(0),
            contains: None,
            reply: Reply::text("x").held(),
        },
    );
    let (server, mut held) = FakeLlm::start(rules).await;
    let p = project(&server.url());
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "t", "--template", "pipeline.yaml"]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut first = cmd.spawn().expect("spawn");
    tokio::time::timeout(Duration::from_secs(120), held.recv())
        .await
        .expect("first runner called")
        .expect("model");
    let id = p.state()["id"].as_str().expect("id").to_owned();
    let mut cmd = p.cmd();
    cmd.args(["resume", &id[..8]]);
    let out = run(cmd).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("being run by another runner (pid"),
        "{}",
        out.stderr
    );
    first.kill().expect("kill");
    first.wait().expect("wait");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_that_is_not_git_works_in_place() {
    let rules = vec![
        Rule {
            times: None,
            tool_results: None,
            model: "implementer".into(),
            turn: Some(0),
            contains: None,
            reply: Reply::tool(
                "write_file",
                serde_json::json!({"path": "new.txt", "content": "made\n"}),
            ),
        },
        Rule {
            times: None,
            tool_results: None,
            model: "implementer".into(),
            turn: None,
            contains: None,
            reply: Reply::text("/complete"),
        },
    ];
    let (server, _h) = FakeLlm::start(rules).await;
    let p = Project::plain(&[("a.txt", "a\n")]);
    let t = "name: x\nphases:\n".to_owned()
        + &phase(
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
    assert_eq!(
        std::fs::read_to_string(p.path().join("new.txt")).expect("written in place"),
        "made\n"
    );
    let diff = std::fs::read_to_string(p.execution().join("artifacts/1/impl.diff")).expect("diff");
    assert!(
        diff.contains("Not a git repository") && diff.contains("new.txt"),
        "{diff}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_logs_artifacts_and_templates() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(Duration::ZERO)).await;
    let p = project(&server.url());
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "List me", "--template", "pipeline.yaml"]);
    assert_eq!(run(cmd).await.code, 0);
    let id = p.state()["id"].as_str().expect("id").to_owned();

    let mut cmd = p.cmd();
    cmd.args(["workflow", "list", "--json"]);
    let out = run(cmd).await;
    let rows: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["status"], "completed");

    let mut cmd = p.cmd();
    cmd.args(["workflow", "logs", &id[..8], "--phase", "phase-implement"]);
    let out = run(cmd).await;
    assert!(
        out.stdout.contains("> edit_file greet.sh"),
        "{}",
        out.stdout
    );

    let mut cmd = p.cmd();
    cmd.args(["workflow", "artifacts", &id[..8]]);
    let out = run(cmd).await;
    assert_eq!(out.stdout.lines().count(), 10, "{}", out.stdout);

    let mut cmd = p.cmd();
    cmd.args(["template", "list"]);
    let out = run(cmd).await;
    assert!(
        out.stdout.contains("default_pipeline") && out.stdout.contains("built-in"),
        "{}",
        out.stdout
    );
    let mut cmd = p.cmd();
    cmd.args(["template", "show", "default"]);
    let out = run(cmd).await;
    assert!(
        out.stdout.contains("Gemini-Claude-Codex Pipeline"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_place_edits_the_checkout_and_diffs_from_head() {
    let rules = vec![
        Rule {
            times: None,
            tool_results: None,
            model: "implementer".into(),
            turn: Some(0),
            contains: None,
            reply: Reply::tool(
                "write_file",
                serde_json::json!({"path": "a.txt", "content": "changed\n"}),
            ),
        },
        Rule {
            times: None,
            tool_results: None,
            model: "implementer".into(),
            turn: None,
            contains: None,
            reply: Reply::text("/complete"),
        },
    ];
    let (server, _h) = FakeLlm::start(rules).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let head = crate::support::git(&p.path(), &["rev-parse", "HEAD"]);
    let t = "name: x\nphases:\n".to_owned()
        + &phase(
            "impl",
            "implementer",
            "implementer",
            &server.url(),
            ("implementer_prompt", "code_diff", "/complete"),
            1,
            "",
        );
    let out = p.run_template(&t, &["--in-place"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        std::fs::read_to_string(p.path().join("a.txt")).expect("a"),
        "changed\n"
    );
    assert_eq!(
        crate::support::git(&p.path(), &["rev-parse", "HEAD"]),
        head,
        "no commit on the user's branch"
    );
    let diff = std::fs::read_to_string(p.execution().join("artifacts/1/impl.diff")).expect("diff");
    assert!(diff.contains("-a\n+changed"), "{diff}");
    assert!(
        !diff.contains(".autowrkers"),
        "run-time files stay out of the diff: {diff}"
    );
    assert!(p.state()["workspace"]["branch"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_provider_falls_back_to_the_next() {
    let mut failing = Reply::text("unused");
    failing.status = Some(500);
    let rules = vec![
        Rule {
            times: None,
            tool_results: None,
            model: "primary".into(),
            turn: None,
            contains: None,
            reply: failing,
        },
        Rule {
            times: None,
            tool_results: None,
            model: "backup".into(),
            turn: None,
            contains: None,
            reply: Reply::text("```json\n{\"summary\": \"s\", \"tasks\": []}\n```\n/done"),
        },
    ];
    let (server, _h) = FakeLlm::start(rules).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let fallback = format!(
        "      fallback_provider:\n        provider_type: openai_compatible\n        model_name: backup\n        api_url: {}\n",
        server.url()
    );
    let t = ("name: x\nphases:\n".to_owned()
        + &phase(
            "p1",
            "analyzer",
            "primary",
            &server.url(),
            ("analyzer_prompt", "task_list", "/done"),
            1,
            "",
        ))
        .replace(
            "      extra_params: {api_key_env: FAKE_LLM_KEY}\n",
            &format!(
                "      extra_params: {{api_key_env: FAKE_LLM_KEY, retry_base_ms: 10}}\n{fallback}"
            ),
        );
    let out = p.run_template(&t, &[]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        server.calls("primary").len(),
        4,
        "one call and 3 retries of the 500"
    );
    assert_eq!(server.calls("backup").len(), 1);
    let run0 = &p.state()["phase_executions"][0];
    assert_eq!(
        run0["model_used"], "backup",
        "the phase records the provider that answered"
    );
    assert!(out.stdout.contains("falling back"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_behavior_skip_phase_skips_only_skippable_phases() {
    let bad = Reply::text("no pattern here");
    let rules = vec![
        Rule::new("analyzer", None, bad),
        Rule::new("planner", None, Reply::text("## plan\n/docs-complete")),
    ];
    let (server, _h) = FakeLlm::start(rules).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let mut t = "name: x\nfailure_behavior: skip_phase\nphases:\n".to_owned();
    t += &phase(
        "p1",
        "analyzer",
        "analyzer",
        &server.url(),
        ("analyzer_prompt", "task_list", "/analysis-complete"),
        1,
        "    max_retries: 0\n",
    );
    t += &phase(
        "p2",
        "planner",
        "planner",
        &server.url(),
        ("planner_prompt", "codebase_docs", "/docs-complete"),
        2,
        "",
    );
    let out = p.run_template(&t, &[]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let state = p.state();
    assert_eq!(state["phase_executions"][0]["status"], "skipped");
    assert_eq!(state["phase_executions"][1]["status"], "completed");

    // The same failure in a phase that may not be skipped fails the execution.
    p.write(
        "t.yaml",
        &t.replace(
            "    max_retries: 0\n",
            "    max_retries: 0\n    can_skip: false\n",
        ),
    );
    std::fs::remove_dir_all(p.path().join(".autowrkers/executions")).expect("clean");
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template", "t.yaml"]);
    assert_eq!(run(cmd).await.code, 1);
    assert_eq!(p.state()["status"], "failed");
}
