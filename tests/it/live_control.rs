//! Control from another process while a run is live: pause, cancel (no child left), skip-phase.
//! The tests wait on events (the runner's --json lines, the fake server's arrivals, a file
//! appearing), never on a clock.

use std::io::BufRead;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::pipeline::{held_first_call, project};
use crate::support::{Project, phase, run};

/// Starts `run --json` and streams its events.
fn start(p: &Project, template: &str) -> (std::process::Child, mpsc::UnboundedReceiver<Value>) {
    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--task",
        "Add a --verbose flag",
        "--template",
        template,
        "--json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    (child, rx)
}

async fn wait_for(
    rx: &mut mpsc::UnboundedReceiver<Value>,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let found = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(event) = rx.recv().await {
            if pred(&event) {
                return Some(event);
            }
        }
        None
    })
    .await;
    found
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no event: {what}"))
}

async fn wait_exit(mut child: std::process::Child) -> i32 {
    tokio::task::spawn_blocking(move || child.wait().expect("wait").code().unwrap_or(-1))
        .await
        .expect("join")
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_from_another_process_stops_at_the_next_safe_point() {
    let (server, mut held) = FakeLlm::start(held_first_call("analyzer")).await;
    let p = project(&server.url());
    let (child, mut events) = start(&p, "pipeline.yaml");
    tokio::time::timeout(Duration::from_secs(120), held.recv())
        .await
        .expect("analyzer called")
        .expect("model");
    let id = p.state()["id"].as_str().expect("id").to_owned();

    let mut cmd = p.cmd();
    cmd.args(["workflow", "pause", &id[..8]]);
    assert_eq!(run(cmd).await.code, 0);
    let notice = wait_for(&mut events, "pause noticed", |e| {
        e["type"] == "workflow:control"
    })
    .await;
    assert_eq!(notice["request"], "pause");
    server.release_holds();
    wait_for(&mut events, "paused", |e| e["type"] == "workflow:paused").await;
    assert_eq!(wait_exit(child).await, 4);
    let state = p.state();
    assert_eq!(state["status"], "paused");
    assert_eq!(
        state["phase_executions"].as_array().expect("runs").len(),
        1,
        "stopped after the running step"
    );

    let mut cmd = p.cmd();
    cmd.args(["resume", &id[..8]]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(p.state()["status"], "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_kills_the_running_phase_and_leaves_no_child() {
    let marks = tempfile::tempdir().expect("marks");
    let pid_file = marks.path().join("child.pid");
    let command = format!("echo $$ > {}; exec sleep 300", pid_file.display());
    let (server, _h) = FakeLlm::start(vec![
        Rule::new(
            "implementer",
            Some(0),
            Reply::tool("run_command", json!({"command": command})),
        ),
        Rule::new("implementer", None, Reply::text("/complete")),
    ])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    p.write(
        "t.yaml",
        &("name: x\nphases:\n".to_owned()
            + &phase(
                "impl",
                "implementer",
                "implementer",
                &server.url(),
                ("implementer_prompt", "code_diff", "/complete"),
                1,
                // The command writes its pid outside the worktree, where a sandbox forbids it.
                "    sandbox: full-access\n",
            )),
    );

    // Wait for the command's pid file through a file watcher.
    let (tx, mut appeared) = mpsc::unbounded_channel();
    let watched = pid_file.clone();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if e.is_ok_and(|e| e.paths.iter().any(|p| p == &watched)) {
            let _ = tx.send(());
        }
    })
    .expect("watcher");
    notify::Watcher::watch(
        &mut watcher,
        marks.path(),
        notify::RecursiveMode::NonRecursive,
    )
    .expect("watch");

    let (child, mut events) = start(&p, "t.yaml");
    tokio::time::timeout(Duration::from_secs(120), appeared.recv())
        .await
        .expect("command started")
        .expect("event");
    let pid: i32 = loop {
        // The file is written by `echo`; its content may lag the create event by a write.
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse()
        {
            break pid;
        }
        appeared.recv().await.expect("write event");
    };
    let id = p.state()["id"].as_str().expect("id").to_owned();
    let mut cmd = p.cmd();
    cmd.args(["workflow", "cancel", &id[..8]]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Said before it acts: the notice comes first, then the cancellation.
    wait_for(&mut events, "cancel noticed", |e| {
        e["type"] == "workflow:control" && e["request"] == "cancel"
    })
    .await;
    wait_for(&mut events, "cancelled", |e| {
        e["type"] == "workflow:cancelled"
    })
    .await;
    assert_eq!(wait_exit(child).await, 1);
    assert_eq!(p.state()["status"], "cancelled");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let alive = status
        .lines()
        .find(|l| l.starts_with("State:"))
        .is_some_and(|l| !l.contains('Z'));
    assert!(
        !alive,
        "the phase's `sleep` ({pid}) is still running:\n{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_phase_stops_the_running_phase_and_goes_on() {
    let (server, mut held) = FakeLlm::start(held_first_call("analyzer")).await;
    let p = project(&server.url());
    let (child, mut events) = start(&p, "pipeline.yaml");
    tokio::time::timeout(Duration::from_secs(120), held.recv())
        .await
        .expect("analyzer called")
        .expect("model");
    // `skip-phase` without a phase names the phases the state records running; that record
    // is written beside the call (the runner waits only for records of work done): wait for it.
    crate::live_view::until_recorded(&p, "phase-analysis").await;
    let id = p.state()["id"].as_str().expect("id").to_owned();
    let mut cmd = p.cmd();
    cmd.args(["workflow", "skip-phase", &id[..8]]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_for(&mut events, "skip noticed", |e| {
        e["type"] == "workflow:control" && e["request"] == "skip-phase"
    })
    .await;
    let skipped = wait_for(&mut events, "skip", |e| {
        e["type"] == "workflow:phase_completed" && e["status"] == "skipped"
    })
    .await;
    assert_eq!(skipped["phase_id"], "phase-analysis");
    assert_eq!(wait_exit(child).await, 0);
    let state = p.state();
    assert_eq!(state["status"], "completed");
    assert_eq!(state["phase_executions"][0]["status"], "skipped");
    assert_eq!(
        server.calls("analyzer").len(),
        1,
        "the skipped phase was not called again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_hand_edit_is_reported_and_the_run_goes_on() {
    let (server, mut held) = FakeLlm::start(held_first_call("analyzer")).await;
    let p = project(&server.url());
    let (child, mut events) = start(&p, "pipeline.yaml");
    tokio::time::timeout(Duration::from_secs(120), held.recv())
        .await
        .expect("analyzer called")
        .expect("model");
    let id = p.state()["id"].as_str().expect("id").to_owned();
    let request = p.execution().join("execution.yaml");
    let mut text = std::fs::read_to_string(&request).expect("execution.yaml");
    text.push_str("control: [unclosed\n");
    std::fs::write(&request, text).expect("break it");
    server.release_holds();
    let notice = wait_for(&mut events, "bad edit reported", |e| {
        e["type"] == "workflow:control" && e["request"] == "invalid-edit"
    })
    .await;
    let detail = notice["detail"].as_str().expect("detail");
    assert!(detail.contains("execution.yaml:"), "{detail}");
    assert!(detail.contains("keeping the last valid"), "{detail}");
    assert_eq!(wait_exit(child).await, 0, "the run went on to completion");
    assert_eq!(p.state()["status"], "completed");
    let mut cmd = p.cmd();
    cmd.args(["workflow", "status", &id[..8]]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("problem    "), "{}", out.stdout);
    assert!(out.stdout.contains("execution.yaml:"), "{}", out.stdout);
}
