//! Crash safety: kill the runner with SIGKILL while the implementer is mid-call; `resume`
//! finishes, and no phase that had completed is called again.

use std::time::Duration;

use crate::fake_llm::FakeLlm;
use crate::pipeline::{held_first_call, project};
use crate::support::run;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_implementer_then_resume_repeats_no_completed_phase() {
    let rules = held_first_call("implementer");
    let (server, mut held) = FakeLlm::start(rules).await;
    let p = project(&server.url());

    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--path",
        ".",
        "--task",
        "Add a --verbose flag",
        "--template",
        "pipeline.yaml",
    ]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    // Wait for the event "the implementer's call reached the server" (bounded, not a sleep).
    let model = tokio::time::timeout(Duration::from_secs(120), held.recv())
        .await
        .expect("implementer call arrived")
        .expect("model");
    assert_eq!(model, "implementer");
    // The state that records the implementer running is written beside its call (the runner
    // waits only for the records of work done before calling): wait for it, so the kill finds
    // a phase recorded running — the interrupted one DESIGN §4.4 restarts. (A kill in between
    // finds the planner's end as the last record, and resume starts the implementer anew.)
    crate::live_view::until_recorded(&p, "phase-implement").await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let state = p.state();
    assert_eq!(state["status"], "running", "killed mid-run");
    let implement = state["phase_executions"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["phase_id"] == "phase-implement")
        .cloned()
        .expect("implement run");
    assert_eq!(implement["status"], "running");
    let analyzer_before = server.calls("analyzer").len();
    let planner_before = server.calls("planner").len();

    // `workflow status` tells that nobody runs it any more.
    let mut cmd = p.cmd();
    cmd.args(["workflow", "status"]);
    let status = run(cmd).await;
    assert!(status.stdout.contains("interrupted"), "{}", status.stdout);

    server.release_holds();
    let id = state["id"].as_str().expect("id").to_owned();
    let mut cmd = p.cmd();
    cmd.args(["resume", &id[..8]]);
    let out = run(cmd).await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(p.state()["status"], "completed");
    assert_eq!(
        server.calls("analyzer").len(),
        analyzer_before,
        "the analyzer had completed: not called again"
    );
    assert_eq!(
        server.calls("planner").len(),
        planner_before,
        "the planner had completed: not called again"
    );
    assert!(
        out.stdout.contains("up to date, not called"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_exits_130_and_resume_continues() {
    let rules = held_first_call("analyzer");
    let (server, mut held) = FakeLlm::start(rules).await;
    let p = project(&server.url());
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "t", "--template", "pipeline.yaml"]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    tokio::time::timeout(Duration::from_secs(120), held.recv())
        .await
        .expect("analyzer called")
        .expect("model");
    // SAFETY: signals the child we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(130));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted; `autowrkers resume"));
    assert_eq!(p.state()["status"], "running", "left resumable");
    server.release_holds();
    // The hint the interrupted run printed, run as printed.
    let mut cmd = p.cmd();
    cmd.args(crate::support::hint(
        &String::from_utf8_lossy(&out.stderr),
        "resume",
        &[],
    ));
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(p.state()["status"], "completed");
}
