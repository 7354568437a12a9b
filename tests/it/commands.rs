//! The rest of the CLI through the real binary: artifacts (view, export, edit with $EDITOR),
//! template management and `template test`, `logs --follow`, completions.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use crate::fake_llm::FakeLlm;
use crate::pipeline::{held_first_call, project, two_iteration_rules};
use crate::support::{Project, run};

/// Runs the binary with `args` and an "editor" that replaces the file it is given with
/// `content`.
pub async fn with_editor(p: &Project, args: &[&str], content: &str) -> crate::support::Ran {
    let scripts = tempfile::tempdir().expect("scripts");
    let editor = scripts.path().join("editor.sh");
    std::fs::write(
        &editor,
        format!("#!/bin/sh\ncat > \"$1\" <<'AUTOWRKERS_EOF'\n{content}\nAUTOWRKERS_EOF\n"),
    )
    .expect("editor");
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut cmd = p.cmd();
    cmd.env("EDITOR", &editor)
        .env_remove("VISUAL")
        .args(args)
        .stdin(Stdio::null());
    run(cmd).await
}

/// `workflow artifact edit ID ARTIFACT`, the editor writing `content`.
pub async fn edit_artifact(
    p: &Project,
    id: &str,
    artifact: &str,
    content: &str,
) -> crate::support::Ran {
    with_editor(p, &["workflow", "artifact", "edit", id, artifact], content).await
}

#[tokio::test(flavor = "multi_thread")]
async fn artifact_edit_refuses_invalid_json_and_reruns_exactly_the_readers() {
    let rules = held_first_call("implementer");
    let (server, mut held) = FakeLlm::start(rules).await;
    let p = project(&server.url());
    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--task",
        "Add a --verbose flag",
        "--template",
        "pipeline.yaml",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let child = cmd.spawn().expect("spawn");
    tokio::time::timeout(Duration::from_secs(120), held.recv())
        .await
        .expect("implementer called")
        .expect("model");
    let id = p.state()["id"].as_str().expect("id").to_owned();
    assert_eq!(p.cli(&["workflow", "pause", &id[..8]]).await.code, 0);
    server.release_holds();
    let code = tokio::task::spawn_blocking(move || {
        let mut c = child;
        c.wait().expect("wait").code()
    })
    .await
    .expect("join");
    assert_eq!(code, Some(4), "paused after the implementer");

    // View and export.
    let view = p
        .cli(&[
            "workflow",
            "artifact",
            "view",
            &id[..8],
            "phase-analysis",
            "--color",
            "never",
        ])
        .await;
    assert!(
        view.stdout.contains("\"summary\": \"add --verbose\""),
        "{}",
        view.stdout
    );
    let out_file = p.path().join("exported.json");
    let mut cmd = p.cmd();
    cmd.args([
        "workflow",
        "artifact",
        "export",
        &id[..8],
        "1/phase-analysis",
        "--output",
    ])
    .arg(&out_file);
    assert_eq!(run(cmd).await.code, 0);
    assert!(
        std::fs::read_to_string(&out_file)
            .expect("exported")
            .contains("add --verbose")
    );

    // An invalid edit is refused and changes nothing.
    let artifact = p.execution().join("artifacts/1/phase-analysis.json");
    let before = std::fs::read_to_string(&artifact).expect("artifact");
    let out = edit_artifact(&p, &id[..8], "phase-analysis", "{\"summary\": 42}").await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("refused") && out.stderr.contains("/summary"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&artifact).expect("artifact"),
        before
    );

    // A valid edit is saved and committed; resume re-runs the phases that read it.
    let edit = edit_artifact(
        &p,
        &id[..8],
        "phase-analysis",
        "{\"summary\": \"add --verbose, documented\", \"tasks\": [{\"id\": 1, \"title\": \"flag and docs\"}]}",
    )
    .await;
    assert_eq!(edit.code, 0, "{}", edit.stderr);
    let log = crate::support::git(
        &p.path(),
        &[
            "log",
            "--format=%s",
            &format!("refs/autowrkers/executions/{id}"),
        ],
    );
    assert!(
        log.lines()
            .next()
            .expect("commit")
            .starts_with("hand edit of 1/phase-analysis"),
        "{log}"
    );

    let (analyzer, planner, implementer) = (
        server.calls("analyzer").len(),
        server.calls("planner").len(),
        server.calls("implementer").len(),
    );
    // The hint the edit printed, run as printed.
    let mut cmd = p.cmd();
    cmd.args(crate::support::hint(&edit.stderr, "resume", &[]));
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        server.calls("analyzer").len(),
        analyzer,
        "the edited phase itself is not re-run"
    );
    assert_eq!(
        server.calls("planner").len(),
        planner + 1,
        "the planner read the task list: re-run"
    );
    assert!(
        server.calls("implementer").len() > implementer,
        "the implementer read it too: re-run"
    );
    let state = p.state();
    let edited = state["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .find(|a| a["id"] == "1/phase-analysis")
        .cloned()
        .expect("artifact");
    assert_eq!(edited["is_edited"], true);
    let planner_prompt = server
        .calls("planner")
        .last()
        .expect("planner")
        .body
        .to_string();
    assert!(
        planner_prompt.contains("add --verbose, documented"),
        "the new version was used"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn template_management_round_trip() {
    let p = Project::git(&[("a.txt", "a\n")]);
    let out = p
        .cli(&["template", "create", "--name", "My Pipeline"])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let file = p.path().join(".autowrkers/templates/my-pipeline.yaml");
    assert!(file.is_file());
    let out = p.cli(&["template", "list", "--project"]).await;
    assert!(
        out.stdout.contains("my-pipeline") && !out.stdout.contains("built-in"),
        "{}",
        out.stdout
    );

    assert_eq!(
        p.cli(&["template", "set-default", "my-pipeline"])
            .await
            .code,
        0
    );
    let out = p.cli(&["template", "list"]).await;
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("my-pipeline"))
        .expect("row")
        .to_owned();
    assert!(row.contains("(default)"), "{row}");

    let exported = p.path().join("out.yaml");
    let mut cmd = p.cmd();
    cmd.args(["template", "export", "my-pipeline", "--output"])
        .arg(&exported);
    assert_eq!(run(cmd).await.code, 0);
    let text = std::fs::read_to_string(&exported)
        .expect("export")
        .replace("id: my-pipeline", "id: imported")
        .replace("name: My Pipeline", "name: Imported");
    std::fs::write(&exported, text).expect("write");
    let mut cmd = p.cmd();
    cmd.args(["template", "import"])
        .arg(&exported)
        .arg("--global");
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        p.home
            .path()
            .join("workflow_templates/imported.yaml")
            .is_file()
    );

    let out = with_editor(
        &p,
        &["template", "edit", "my-pipeline"],
        "name: x\nphases: not-a-list",
    )
    .await;
    assert_eq!(
        out.code, 2,
        "an invalid template is not saved: {}",
        out.stderr
    );
    assert!(
        std::fs::read_to_string(&file)
            .expect("file")
            .contains("My Pipeline")
    );

    assert_eq!(p.cli(&["template", "delete", "my-pipeline"]).await.code, 0);
    assert!(!file.exists());
    let out = p.cli(&["template", "delete", "default_pipeline"]).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("built in"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn template_test_prints_the_path_taken_at_zero_cost() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = root.join("examples/demo");
    let files: Vec<(String, String)> = [
        "greet.sh",
        "test.sh",
        "README.md",
        ".autowrkers/config.yaml",
    ]
    .iter()
    .map(|f| {
        (
            f.to_string(),
            std::fs::read_to_string(demo.join(f)).expect("demo file"),
        )
    })
    .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let p = Project::git(&refs);
    let mut cmd = p.cmd();
    cmd.args(["template", "test"])
        .arg(root.join("examples/templates/demo-scripted.yaml"))
        .arg("--script")
        .arg(demo.join(".autowrkers/demo-replies.yaml"));
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("iteration 1: Functional Review — did not pass"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("→ iteration 2"),
        "the rejected review loops: {}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("outcome: completed after 2 iteration(s)"),
        "{}",
        out.stdout
    );
    assert!(
        !p.path().join(".autowrkers/executions").exists(),
        "the project itself is untouched"
    );
    assert!(!p.home.path().join("ledger").exists(), "nothing is billed");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_reattaches_until_the_run_ends() {
    let rules = held_first_call("analyzer");
    let (server, mut held) = FakeLlm::start(rules).await;
    let p = project(&server.url());
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "t", "--template", "pipeline.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let runner = cmd.spawn().expect("runner");
    tokio::time::timeout(Duration::from_secs(120), held.recv())
        .await
        .expect("analyzer called")
        .expect("model");
    let id = p.state()["id"].as_str().expect("id").to_owned();
    let mut cmd = p.cmd();
    cmd.args(["workflow", "logs", "--follow", &id[..8]])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let follower = cmd.spawn().expect("follower");
    server.release_holds();
    let out = tokio::task::spawn_blocking(move || follower.wait_with_output().expect("follow"))
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("completed"), "{stdout}");
    assert!(stdout.contains("iteration 2"), "{stdout}");
    let code = tokio::task::spawn_blocking(move || {
        let mut r = runner;
        r.wait().expect("wait").code()
    })
    .await
    .expect("join");
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_and_help_texts() {
    let p = Project::plain(&[]);
    for shell in ["bash", "zsh", "fish"] {
        let out = p.cli(&["completions", shell]).await;
        assert_eq!(out.code, 0);
        assert!(
            out.stdout.contains("autowrkers") && out.stdout.contains("skip-phase"),
            "{shell}"
        );
    }
    let mut cmd = p.cmd();
    cmd.arg("--help");
    let out = run(cmd).await;
    assert!(
        out.stdout.contains("Examples:") && out.stdout.contains("Exit codes"),
        "{}",
        out.stdout
    );
    let out = p.cli(&["wf", "--help"]).await;
    assert!(
        out.stdout.contains("skip-phase") && out.stdout.contains("artifact"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_from_a_github_issue_or_a_project_name() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(Duration::ZERO)).await;
    let p = project(&server.url());
    p.write(
        ".autowrkers/config.yaml",
        &format!("{}github_repo: acme/widgets\n", crate::pipeline::CONFIG),
    );
    let mut cmd = p.cmd();
    cmd.env("GITHUB_API_URL", format!("http://{}", server.addr))
        .env("GITHUB_TOKEN", "ghp-test-token")
        .args([
            "run",
            "--issue",
            "42",
            "--template",
            "pipeline.yaml",
            "--dry-run",
        ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("GitHub issue acme/widgets#42: Crash in acme/widgets on empty input"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("auth: Bearer ghp-test-token"),
        "the token is sent to GitHub"
    );

    // A run makes the project known by name.
    assert_eq!(
        p.cli(&[
            "run",
            "--task",
            "known",
            "--template",
            "pipeline.yaml",
            "--no-realtime",
        ])
        .await
        .code,
        0
    );
    let name = p
        .path()
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let elsewhere = tempfile::tempdir().expect("elsewhere");
    let mut cmd = p.cmd();
    cmd.current_dir(elsewhere.path())
        .args(["run", "--project", &name, "--task", "again", "--template"])
        .arg(p.path().join("pipeline.yaml"))
        .arg("--dry-run");
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("again"), "{}", out.stdout);
}
