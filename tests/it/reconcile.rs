//! `autowrkers reconcile`: one pass brings every execution of a project to what its files ask
//! for — a hand-written `execution.yaml` starts, a decision written by hand applies, an edited
//! artifact or a changed template re-runs what is stale — with invalid files reported and
//! skipped, and `--dry-run` changing nothing.

use crate::fake_llm::FakeLlm;
use crate::pipeline::{project, two_iteration_rules};
use crate::support::{Project, gated_template, pipeline_template, run};

/// Writes an `execution.yaml` by hand, as a person (or a tool) would: no state yet.
pub fn hand_written(p: &Project, id: &str, template_yaml: &str, task: &str) -> std::path::PathBuf {
    let template: serde_yaml::Value = serde_yaml::from_str(template_yaml).unwrap();
    let mut template = serde_yaml::to_string(&template).unwrap();
    template = template
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect::<String>();
    let text = format!(
        "id: {id}\ntrigger_mode: manual_task\nproject_path: {}\ntask_description: {task}\niteration_behavior: auto_iterate\ncreated_at: '2026-12-01T00:00:00Z'\ntemplate:\n{template}",
        p.path().display()
    );
    let dir = p.path().join(".autowrkers/executions").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("execution.yaml"), text).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hand_written_execution_starts_and_a_broken_one_is_reported() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(std::time::Duration::ZERO)).await;
    let p = project(&server.url());
    let id = "0d1e2f3a-0000-4000-8000-000000000001";
    let dir = hand_written(
        &p,
        id,
        &pipeline_template(&server.url(), ""),
        "Add a --verbose flag",
    );
    let broken = p
        .path()
        .join(".autowrkers/executions/0d1e2f3a-0000-4000-8000-000000000002");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("execution.yaml"), "id: x\ntemplate: [\n").unwrap();

    // A dry run says what it would do, and why, and changes nothing.
    let out = p.cli(&["reconcile", "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("0d1e2f3a  would"), "{}", out.stdout);
    assert!(
        out.stdout.contains("new execution.yaml: start"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("execution.yaml:3:"),
        "file:line:col of the broken one: {}",
        out.stderr
    );
    assert!(!dir.join("state.json").exists());
    assert!(server.log().is_empty(), "a dry run calls nothing");

    // The pass: the good one runs to completion, the broken one is skipped, exit 1 for it.
    let out = p.cli(&["reconcile"]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("0d1e2f3a  start"), "{}", out.stdout);
    assert!(
        out.stdout.contains("0d1e2f3a  ended    completed"),
        "{}",
        out.stdout
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["status"], "completed");

    // Nothing left to do: a second pass starts nothing.
    std::fs::remove_dir_all(&broken).unwrap();
    let calls = server.log().len();
    let out = p.cli(&["reconcile"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("nothing to do"), "{}", out.stderr);
    assert_eq!(server.log().len(), calls);
}

/// Reads `execution.yaml` of `dir`, lets `edit` change it, writes it back (as a person would).
fn edit_request(dir: &std::path::Path, edit: impl FnOnce(&mut serde_yaml::Value)) {
    let file = dir.join("execution.yaml");
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(&file, serde_yaml::to_string(&doc).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn decisions_edits_and_template_changes_written_by_hand_are_applied() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(std::time::Duration::ZERO)).await;
    let p = project(&server.url());
    p.write("gated.yaml", &gated_template(&server.url()));
    assert_eq!(
        p.cli(&[
            "run",
            "--task",
            "t",
            "--template",
            "gated.yaml",
            "--no-realtime",
        ])
        .await
        .code,
        4
    );
    let dir = p.execution();

    // The approval, written into execution.yaml by hand.
    edit_request(&dir, |doc| {
        doc["control"]["approvals"] = serde_yaml::from_str("{1: approve}").unwrap();
    });
    let out = p.cli(&["reconcile"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("approval decided"), "{}", out.stdout);
    assert_eq!(p.state()["status"], "completed");

    // An artifact edited by hand: what reads it (in the current iteration) runs again.
    let calls = server.calls("implementer").len();
    let tasks = dir.join("artifacts/1/phase-analysis.json");
    std::fs::write(&tasks, "{\"summary\": \"by hand\", \"tasks\": []}").unwrap();
    let out = p.cli(&["reconcile", "--json"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("\"type\":\"reconcile:start\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("artifacts edited (1/phase-analysis)"),
        "{}",
        out.stdout
    );
    assert!(
        server.calls("implementer").len() > calls,
        "the implementer read it and ran again"
    );
    assert_eq!(p.state()["status"], "completed");

    // The template snapshot changed by hand: the phases it touches are stale and re-run.
    let calls = server.calls("reviewer-b").len();
    edit_request(&dir, |doc| {
        let phases = doc["template"]["phases"].as_sequence_mut().unwrap();
        let style = phases
            .iter_mut()
            .find(|ph| ph["id"] == "phase-review-style")
            .unwrap();
        style["provider_config"]["temperature"] = serde_yaml::Value::from(0.7);
    });
    let out = p.cli(&["reconcile", "--dry-run"]).await;
    assert!(
        out.stdout.contains("inputs changed (phase-review-style)"),
        "{}",
        out.stdout
    );
    let out = p.cli(&["reconcile"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        server.calls("reviewer-b").len(),
        calls + 1,
        "only the stale phase's model"
    );
    assert_eq!(p.state()["status"], "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_run_resumes_a_cancel_applies_and_detach_returns_at_once() {
    let (server, mut held) = FakeLlm::start(crate::serve_support::held_analyzer_rules()).await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &pipeline_template(&server.url(), ""));
    // A run killed (-9) in the middle of a phase: `running`, and no runner holds it.
    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--task",
        "t",
        "--template",
        "pipeline.yaml",
        "--no-realtime",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    held.recv().await.expect("the analyzer is called");
    child.kill().unwrap();
    child.wait().unwrap();
    server.release_holds();
    assert_eq!(p.state()["status"], "running");
    let out = p.cli(&["reconcile", "--dry-run"]).await;
    assert!(
        out.stdout.contains("running without a runner: resume"),
        "{}",
        out.stdout
    );

    // --detach returns once the runner holds the execution: following it right away waits
    // for the end.
    let out = p.cli(&["reconcile", "--detach"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("start"), "{}", out.stdout);
    let id = p.state()["id"].as_str().unwrap().to_owned();
    let mut cmd = p.cmd();
    cmd.args(["workflow", "logs", "--follow", &id[..8]]);
    let followed = run(cmd).await;
    // When this fails, the detached runner's own log says why it stopped.
    let runner_log =
        std::fs::read_to_string(p.execution().join("logs/runner.log")).unwrap_or_default();
    assert_eq!(
        p.state()["status"],
        "completed",
        "follow said: {}\nrunner.log:\n{runner_log}",
        followed.stderr
    );

    // A cancel written by hand into a waiting execution applies.
    p.write("gated.yaml", &gated_template(&server.url()));
    let (code, id) = p.run_json("g", "gated.yaml", &[]).await;
    assert_eq!(code, 4);
    let gated = p.path().join(".autowrkers/executions").join(id);
    edit_request(&gated, |doc| doc["control"]["cancel"] = true.into());
    let out = p.cli(&["reconcile"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("cancel requested") && out.stdout.contains("ended    cancelled"),
        "{}",
        out.stdout
    );
}
