//! What a new user meets first: output piped into `head`, usage mistakes, and `workflow list`
//! on tasks written over several lines.

use std::process::Stdio;

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, implementer_only, run};

/// A git project whose `t.yaml` has one implementer that completes at once, and its server.
async fn completing_project() -> (
    FakeLlm,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    Project,
) {
    let (server, held) = crate::support::completing_server().await;
    let p = Project::git(&[("a.txt", "a\n")]);
    p.write("t.yaml", &implementer_only(&server.url(), ""));
    (server, held, p)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_pipe_ends_the_output_quietly_with_success() {
    let p = Project::plain(&[]);
    for args in [&["completions", "bash"][..], &["provider", "list"][..]] {
        let mut cmd = p.cmd();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        // The reader goes away before the first line, as `| head -0` would.
        drop(child.stdout.take());
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
            .await
            .expect("join");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_mistakes_exit_2_with_what_to_do() {
    let p = Project::plain(&[]);
    let mut cmd = p.cmd();
    cmd.args(["workflow", "list", "--status", "bogus"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("awaiting_approval"), "{}", out.stderr);
    let mut cmd = p.cmd();
    cmd.args(["run", "--path", "no/such/folder", "--task", "x"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--path"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_on_several_lines_is_one_row() {
    let (_server, _h, p) = completing_project().await;
    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--task",
        "Add a flag\nand document it\nin the README",
        "--template",
        "t.yaml",
    ]);
    assert_eq!(run(cmd).await.code, 0);
    let mut cmd = p.cmd();
    cmd.args(["workflow", "list"]);
    let out = run(cmd).await;
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stdout.contains("Add a flag …"), "{}", out.stdout);
    let mut cmd = p.cmd();
    cmd.args(["workflow", "list", "--json"]);
    let out = run(cmd).await;
    assert!(
        out.stdout.contains("in the README"),
        "JSON keeps the whole task"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_named_with_what_to_check() {
    // Nothing listens on a port we bound and let go of.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let p = Project::git(&[("a.txt", "a\n")]);
    let template = implementer_only(&format!("http://127.0.0.1:{port}/v1"), "").replace(
        "api_key_env: FAKE_LLM_KEY",
        "api_key_env: FAKE_LLM_KEY, retries: 0",
    );
    let out = p.run_template(&template, &[]).await;
    // The template's failure_behavior (pause_notify) pauses: exit 4, and the message says
    // what to fix before `resume`, which then works once the server is up.
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("check that the server runs there"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("autowrkers resume"), "{}", out.stderr);
    let message = p.state()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains(&format!("cannot connect to http://127.0.0.1:{port}")),
        "{message}"
    );
    assert!(message.contains("api_url"), "{message}");
    assert!(message.contains("openai_compatible"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_list_shows_each_execution_once_interrupted_and_damaged_ones_too() {
    let (_server, _h, p) = completing_project().await;
    let start = |task: &str, crash: Option<&str>| {
        let mut cmd = p.cmd();
        cmd.args(["run", "--task", task, "--template", "t.yaml"]);
        if let Some(point) = crash {
            cmd.env("AUTOWRKERS_CRASH_AT", point);
        }
        cmd
    };
    // One killed mid-run, one that completes, one whose state.json gets damaged.
    let _ = run(start("killed", Some("before-ref-commit#1"))).await;
    assert_eq!(run(start("done", None)).await.code, 0);
    assert_eq!(run(start("third", None)).await.code, 0);
    let list = |args: &[&str]| {
        let mut cmd = p.cmd();
        cmd.args(["workflow", "list"]).args(args);
        run(cmd)
    };
    let out = list(&[]).await;
    assert!(out.stdout.contains("interrupted"), "{}", out.stdout);
    let executions = p.path().join(".autowrkers/executions");
    let target = std::fs::read_dir(&executions)
        .expect("executions")
        .flatten()
        .map(|e| e.path())
        .find(|d| {
            std::fs::read_to_string(d.join("execution.yaml"))
                .is_ok_and(|t| t.contains("task_description: third"))
        })
        .expect("the damaged one");
    std::fs::write(target.join("state.json"), "{ not json").expect("damage");
    // Resuming the killed one from the project folder (relative `--path .`) adds no row.
    let killed = std::fs::read_dir(&executions)
        .expect("executions")
        .flatten()
        .map(|e| e.path())
        .find(|d| {
            std::fs::read_to_string(d.join("execution.yaml"))
                .is_ok_and(|t| t.contains("task_description: killed"))
        })
        .expect("the killed one");
    let id = killed
        .file_name()
        .expect("id")
        .to_string_lossy()
        .into_owned();
    let mut cmd = p.cmd();
    cmd.args(["resume", &id[..8]]);
    assert_eq!(run(cmd).await.code, 0);
    let out = list(&[]).await;
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
    assert!(out.stdout.contains("damaged"), "{}", out.stdout);
    assert!(out.stdout.contains("invalid JSON"), "{}", out.stdout);
    assert!(!out.stdout.contains("interrupted"), "{}", out.stdout);
    let out = list(&["--limit", "1"]).await;
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stderr.contains("--all"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_hints_only_name_commands_that_work() {
    let p = Project::plain(&[]);
    // Installed agent CLIs are listed with their versions.
    let bin = crate::agent_clis::cli_bin();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = p.cmd();
    cmd.env("PATH", &path).args(["provider", "list"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("not available"), "{}", out.stdout);
    assert!(out.stdout.contains("codex-cli 0.171.0"), "{}", out.stdout);
    // No hint sends the user to `detect` where detect cannot work.
    for args in [
        &["provider", "models", "openai"][..],
        &["provider", "test", "openai_compatible"][..],
    ] {
        let mut cmd = p.cmd();
        cmd.args(args);
        let out = run(cmd).await;
        assert_ne!(out.code, 0);
        assert!(
            !out.stderr.contains("detect openai"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("provider detect"),
            "{args:?}: {}",
            out.stderr
        );
    }
    // Where detect is the hint, detect is a real command for that provider.
    let mut cmd = p.cmd();
    cmd.args(["provider", "models", "ollama"]);
    let out = run(cmd).await;
    assert!(
        out.stderr.contains("provider detect ollama"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_of_a_completed_execution_is_rerun_by_resume_as_promised() {
    let (server, _h) = FakeLlm::start(crate::pipeline::two_iteration_rules(
        std::time::Duration::ZERO,
    ))
    .await;
    let p = crate::pipeline::project(&server.url());
    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--task",
        "Add a --verbose flag",
        "--template",
        "pipeline.yaml",
    ]);
    assert_eq!(run(cmd).await.code, 0);
    assert_eq!(p.state()["status"], "completed");
    let id = p.state()["id"].as_str().expect("id").to_owned();
    let implementer_calls = server.calls("implementer").len();

    let out = crate::commands::edit_artifact(
        &p,
        &id[..8],
        "phase-analysis",
        "{\"summary\": \"add --verbose, documented\", \"tasks\": [{\"id\": 1, \"title\": \"flag and docs\"}]}",
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("resume"), "{}", out.stderr);

    let mut cmd = p.cmd();
    cmd.args(["resume", &id[..8]]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        server.calls("implementer").len() > implementer_calls,
        "the implementer reads the task list: it ran again"
    );
    assert_eq!(p.state()["status"], "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn uncommitted_work_is_warned_about_or_included_without_touching_the_index() {
    let (server, _h) = crate::support::completing_server().await;
    let p = Project::git(&[("a.txt", "committed\n")]);
    p.write("t.yaml", &implementer_only(&server.url(), ""));
    // Uncommitted work: a staged change, an unstaged one and a new file.
    p.write("a.txt", "staged\n");
    crate::support::git(&p.path(), &["add", "a.txt"]);
    p.write("a.txt", "unstaged\n");
    p.write("new.txt", "untracked\n");
    let status_before = crate::support::git(&p.path(), &["status", "--porcelain"]);
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("--include-uncommitted"),
        "{}",
        out.stderr
    );
    assert_eq!(p.on_branch("a.txt"), "committed\n", "by default: HEAD");

    let (server, _h) = crate::support::completing_server().await;
    let p2 = Project::git(&[("a.txt", "committed\n")]);
    p2.write("t.yaml", &implementer_only(&server.url(), ""));
    p2.write("a.txt", "staged\n");
    crate::support::git(&p2.path(), &["add", "a.txt"]);
    p2.write("a.txt", "unstaged\n");
    p2.write("new.txt", "untracked\n");
    let mut cmd = p2.cmd();
    cmd.args([
        "run",
        "--task",
        "x",
        "--template",
        "t.yaml",
        "--include-uncommitted",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        p2.on_branch("a.txt"),
        "unstaged\n",
        "the working file as it is"
    );
    assert_eq!(p2.on_branch("new.txt"), "untracked\n");
    // The user's index and files are as they were.
    assert_eq!(
        crate::support::git(&p2.path(), &["status", "--porcelain"]),
        status_before
    );
    assert_eq!(
        crate::support::git(&p2.path(), &["show", ":a.txt"]),
        "staged\n",
        "the staged version is still what is staged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_result_branch_is_free_to_check_out_when_the_run_ends() {
    let (server, _h) = FakeLlm::start(vec![
        Rule::new(
            "implementer",
            Some(0),
            Reply::tool(
                "write_file",
                serde_json::json!({"path": "a.txt", "content": "changed\n"}),
            ),
        ),
        Rule::new("implementer", None, Reply::text("/complete")),
    ])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    p.write("t.yaml", &implementer_only(&server.url(), ""));
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let branch = p.branch();
    assert!(
        out.stderr.contains(&format!("git checkout {branch}")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("git diff --stat"), "{}", out.stderr);
    // The hint's commands work as printed.
    let stat = crate::support::git(
        &p.path(),
        &[
            "diff",
            "--stat",
            &format!(
                "{}..{branch}",
                p.state()["workspace"]["base_commit"]
                    .as_str()
                    .expect("base")
            ),
        ],
    );
    assert!(stat.contains("a.txt"), "{stat}");
    // The worktree was removed before the process ended, folder and records.
    let worktree = p.state()["workspace"]["dir"]
        .as_str()
        .expect("worktree")
        .to_owned();
    assert!(!std::path::Path::new(&worktree).exists(), "{worktree}");
    crate::support::git(&p.path(), &["checkout", "-q", &branch]);
    assert_eq!(
        std::fs::read_to_string(p.path().join("a.txt")).expect("a"),
        "changed\n"
    );
    crate::support::git(&p.path(), &["checkout", "-q", "main"]);
    crate::support::git(&p.path(), &["branch", "-D", &branch]);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_money_on_a_run_that_cannot_pass_verification() {
    let (server, _h) = crate::support::completing_server().await;
    // A plain Python file: no pyproject, no Makefile, no verify commands.
    let p = Project::git(&[("app.py", "print('hi')\n")]);
    let template = implementer_only(&server.url(), "")
        + "  - id: verify\n    name: verify\n    role: verifier\n    provider_config: {provider_type: none}\n    output_artifact_type: verification_report\n    success_pattern: null\n    order: 2\n";
    let out = p.run_template(&template, &[]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("verify:"), "{}", out.stderr);
    assert!(out.stderr.contains("--no-verify"), "{}", out.stderr);
    assert!(server.log().is_empty(), "no model was called");
    // On purpose, without verification: it runs, and the report says why it passed.
    let out = p.run_template(&template, &["--no-verify"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report =
        std::fs::read_to_string(p.execution().join("artifacts/1/verify.json")).expect("report");
    assert!(report.contains("--no-verify"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bundled_templates_travel_with_the_binary() {
    // A project far from this repository's examples/.
    let p = Project::git(&[("a.txt", "a\n")]);
    let mut cmd = p.cmd();
    cmd.args(["template", "list"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    for expected in [
        "openai-only",
        "ollama-local",
        "default_pipeline",
        "needs: OPENAI_API_KEY",
    ] {
        assert!(out.stdout.contains(expected), "{expected}: {}", out.stdout);
    }
    let mut cmd = p.cmd();
    cmd.env("OPENAI_API_KEY", "sk-dry-run").args([
        "run",
        "--task",
        "x",
        "--template",
        "openai-only",
        "--dry-run",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut cmd = p.cmd();
    cmd.args([
        "template",
        "create",
        "--name",
        "mine",
        "--from",
        "openai-only",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut cmd = p.cmd();
    cmd.args(["template", "show", "mine"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("gpt-4o"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_and_clean_remove_what_a_run_left() {
    let (_server, _h, p) = completing_project().await;
    for task in ["one", "two"] {
        let mut cmd = p.cmd();
        cmd.args(["run", "--task", task, "--template", "t.yaml"]);
        assert_eq!(run(cmd).await.code, 0);
    }
    let git = |args: &[&str]| crate::support::git(&p.path(), args);
    assert_eq!(
        git(&["branch", "--list", "autowrkers/*"]).lines().count(),
        2
    );
    let executions = p.path().join(".autowrkers/executions");
    let ids: Vec<String> = std::fs::read_dir(&executions)
        .expect("executions")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // delete --branch: folder, ref and branch gone.
    let mut cmd = p.cmd();
    cmd.args(["workflow", "delete", &ids[0][..8], "--branch"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!executions.join(&ids[0]).exists());
    assert!(
        git(&[
            "for-each-ref",
            &format!("refs/autowrkers/executions/{}", ids[0])
        ])
        .is_empty()
    );
    assert_eq!(
        git(&["branch", "--list", "autowrkers/*"]).lines().count(),
        1
    );
    // clean: every ended execution (branches kept without --branches).
    let mut cmd = p.cmd();
    cmd.args(["workflow", "clean", "--older-than", "0d"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("1 execution(s) removed"),
        "{}",
        out.stderr
    );
    assert!(!executions.join(&ids[1]).exists());
    assert_eq!(
        git(&["branch", "--list", "autowrkers/*"]).lines().count(),
        1
    );
    let mut cmd = p.cmd();
    cmd.args(["workflow", "list"]);
    assert!(run(cmd).await.stdout.trim().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_too_small_for_one_call_says_so_and_max_tokens_makes_it_fit() {
    use crate::money::{TASKS, billed, price_override};
    let (server, _h) = FakeLlm::start(vec![Rule::new("capped", None, billed(TASKS, 30))]).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    // `capped` answers up to 100 tokens at $0.001 a token: one call may cost $0.10.
    price_override(&p);
    let template = |extra: &str| {
        "name: x\nphases:\n".to_owned()
            + &crate::support::phase(
                "p1",
                "analyzer",
                "capped",
                &server.url(),
                ("analyzer_prompt", "task_list", "/done"),
                1,
                "",
            )
            .replace(
                "api_key_env: FAKE_LLM_KEY",
                &format!("api_key_env: FAKE_LLM_KEY{extra}"),
            )
    };
    let out = p.run_template(&template(""), &["--budget", "0.05"]).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    let message = p.state()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("one call of p1 can cost up to $0.1"),
        "{message}"
    );
    assert!(message.contains("extra_params.max_tokens"), "{message}");
    assert!(server.log().is_empty(), "refused before the call");
    // Capping the answers makes the worst case fit: the call is made.
    let p2 = Project::git(&[("a.txt", "a\n")]);
    price_override(&p2);
    let out = p2
        .run_template(&template(", max_tokens: 40"), &["--budget", "0.05"])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.log()[0].body["max_tokens"], 40, "the cap is sent");
}
