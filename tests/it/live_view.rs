//! The binary under a real terminal (tmux): the live view shows the seed's rows, `p` pauses and
//! `q` detaches while the run completes in the background; `provider setup` reads keys without
//! echoing them. Waits are on file events (the
//! pane's output piped to a file, the execution folder), never on a clock.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::pipeline::{project, two_iteration_rules};
use crate::support::{Project, SECRET};

pub struct Tmux {
    socket: String,
    transcript: PathBuf,
}

impl Tmux {
    pub fn start(p: &Project, command: &str, transcript: &Path) -> Self {
        let socket = format!("aw-test-{}", uuid_like());
        let bin = env!("CARGO_BIN_EXE_autowrkers");
        let shell = format!(
            "cd {} && env AUTOWRKERS_HOME={} FAKE_LLM_KEY={SECRET} {bin} {command}; echo \"EXIT=$?\" >> {}; sleep 600",
            p.path().display(),
            p.home.path().display(),
            transcript.display()
        );
        let tmux = Self {
            socket,
            transcript: transcript.to_path_buf(),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "150",
            "-y",
            "50",
            &shell,
        ]);
        tmux.run(&[
            "pipe-pane",
            "-o",
            "-t",
            "t",
            &format!("cat >> {}", transcript.display()),
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    pub fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "t", keys]);
    }

    pub fn transcript(&self) -> String {
        std::fs::read_to_string(&self.transcript).unwrap_or_default()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// A tmux socket name used once: a new server never meets the one a previous test is closing.
fn uuid_like() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Wakes on every change under `dir`.
pub fn watch(dir: &Path) -> (notify::RecommendedWatcher, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut w = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if e.is_ok_and(|e| autowrkers::store::is_change(&e)) {
            let _ = tx.send(());
        }
    })
    .expect("watcher");
    w.watch(dir, notify::RecursiveMode::Recursive)
        .expect("watch");
    (w, rx)
}

pub async fn until(
    wake: &mut mpsc::UnboundedReceiver<()>,
    what: &str,
    check: impl FnMut() -> bool,
) {
    assert!(
        wait_for(wake, check).await,
        "never happened: {what}\n{}",
        threads_of_ours()
    );
}

/// Waits until the state of `p`'s only execution records a run of `phase_id`. A phase's
/// start is written beside its first call (the runner waits only for the records of work
/// done before it calls): what reads the state just as the call arrives may not see it yet.
pub async fn until_recorded(p: &crate::support::Project, phase_id: &str) {
    let (_watcher, mut wake) = watch(&p.path().join(".autowrkers/executions"));
    until(&mut wake, &format!("{phase_id} recorded running"), || {
        p.state()["phase_executions"]
            .as_array()
            .is_some_and(|runs| runs.iter().any(|r| r["phase_id"] == phase_id))
    })
    .await;
}

/// Like [`until`], on what `tmux` shows; returns the screen that showed it. A failure prints
/// the last screen seen.
pub async fn until_screen(
    tmux: &Tmux,
    wake: &mut mpsc::UnboundedReceiver<()>,
    what: &str,
    shows: impl Fn(&str) -> bool,
) -> String {
    let mut last = String::new();
    let seen = wait_for(wake, || {
        last = tmux.screen();
        shows(&last)
    })
    .await;
    assert!(
        seen,
        "never happened: {what}; the last screen:\n{last}\n{}",
        threads_of_ours()
    );
    last
}

/// Where each thread of each running process of this binary waits: for a view that hangs.
fn threads_of_ours() -> String {
    let bin = env!("CARGO_BIN_EXE_autowrkers");
    let mut out = String::new();
    for proc_dir in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = proc_dir.path();
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        if !cmdline.starts_with(bin.as_bytes()) {
            continue;
        }
        let args = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        out.push_str(&format!("process {}: {args}\n", path.display()));
        for task in std::fs::read_dir(path.join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
            out.push_str(&format!(
                "  {} {} wchan={} syscall={}\n{}",
                task.file_name().to_string_lossy(),
                read("comm").trim(),
                read("wchan"),
                read("syscall").trim(),
                read("stack")
            ));
        }
    }
    out
}

/// True once `check` holds, checked at each wake (false after 120 s, or when the wakes end
/// and it still does not hold). A check that held is not asked again: what the screen
/// showed a moment ago may be gone by then.
async fn wait_for(wake: &mut mpsc::UnboundedReceiver<()>, mut check: impl FnMut() -> bool) -> bool {
    let held = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if check() {
                return true;
            }
            if wake.recv().await.is_none() {
                return check();
            }
        }
    })
    .await;
    held == Ok(true)
}

#[tokio::test(flavor = "multi_thread")]
async fn live_view_shows_the_rows_pauses_on_p_and_detaches_on_q() {
    let mut rules = two_iteration_rules(Duration::ZERO);
    rules.insert(
        0,
        Rule::new(
            "analyzer",
            Some(0),
            Reply::tool("list_files", serde_json::json!({})).held(),
        )
        .times(1),
    );
    // Iteration 2's implementer call is held too, so the view can be left while it runs.
    for r in rules.iter_mut().filter(|r| {
        r.model == "implementer" && r.contains.as_deref() == Some("This is iteration 2")
    }) {
        r.reply = r.reply.clone().held();
    }
    let (server, mut held) = FakeLlm::start(rules).await;
    let p = project(&server.url());
    let scratch = tempfile::tempdir().expect("scratch");
    let (_w, mut wake) = watch(scratch.path());

    let tmux = Tmux::start(
        &p,
        "run --task 'Add a --verbose flag' --template pipeline.yaml",
        &scratch.path().join("pane.txt"),
    );
    tokio::time::timeout(Duration::from_secs(120), held.recv())
        .await
        .expect("analyzer called")
        .expect("model");
    // A whole frame: a screen taken mid-redraw shows its upper rows only.
    let expected = [
        "🔄 Phase 1/6: phase-analysis",
        "WORKFLOW: Add a --verbose flag",
        "Template: test pipeline",
        "Phase 6/6: phase-verify",
        "Iteration: 1/3",
        "[Press 'q' to detach",
    ];
    until_screen(
        &tmux,
        &mut wake,
        "the view shows the analysis running, with every row",
        |screen| expected.iter().all(|e| screen.contains(e)),
    )
    .await;

    tmux.keys("p");
    let exec_dir = p.path().join(".autowrkers/executions");
    let (_w2, mut exec_wake) = watch(&exec_dir);
    until(&mut exec_wake, "the pause request is written", || {
        std::fs::read_to_string(p.execution().join("execution.yaml"))
            .is_ok_and(|t| t.contains("pause: true"))
    })
    .await;
    server.release_held_now();
    until(&mut wake, "the view ends paused", || {
        tmux.transcript().contains("EXIT=4")
    })
    .await;
    assert_eq!(p.state()["status"], "paused");

    // Resume in the live view; detach while iteration 2's implementer is called.
    let id = p.state()["id"].as_str().expect("id").to_owned();
    drop(tmux);
    let tmux = Tmux::start(
        &p,
        &format!("resume {}", &id[..8]),
        &scratch.path().join("pane2.txt"),
    );
    let model = tokio::time::timeout(Duration::from_secs(120), held.recv())
        .await
        .expect("implementer called")
        .expect("model");
    assert_eq!(model, "implementer");
    until(&mut wake, "the view is drawn", || {
        tmux.screen().contains("Iteration: 2/3")
    })
    .await;
    tmux.keys("q");
    until(&mut wake, "the view detaches", || {
        tmux.transcript().contains("EXIT=0")
    })
    .await;
    // EXIT=0 is written to the transcript directly, the pane's text through tmux's pipe: wait
    // for the latter too.
    until(&mut wake, "the detach message", || {
        tmux.transcript().contains("detached: the run goes on")
    })
    .await;
    assert_ne!(
        p.state()["status"],
        "completed",
        "detaching does not wait for the run"
    );
    server.release_held_now();
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        while p.state()["status"] != "completed" {
            if exec_wake.recv().await.is_none() {
                break;
            }
        }
    })
    .await;
    let log = std::fs::read_to_string(p.execution().join("logs/runner.log")).unwrap_or_default();
    assert!(
        done.is_ok() && p.state()["status"] == "completed",
        "the detached run did not complete:\n{log}\n{}",
        p.state()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_setup_reads_keys_without_echo_on_a_terminal() {
    let p = Project::plain(&[]);
    let scratch = tempfile::tempdir().expect("scratch");
    let (_w, mut wake) = watch(scratch.path());
    let tmux = Tmux::start(
        &p,
        "provider setup anthropic",
        &scratch.path().join("pane.txt"),
    );
    until(&mut wake, "the prompt", || {
        tmux.screen()
            .contains("anthropic key (not set; Enter skips):")
    })
    .await;
    tmux.keys("sk-typed-secret-123");
    tmux.keys("Enter");
    until(&mut wake, "setup ends", || {
        tmux.transcript().contains("EXIT=0")
    })
    .await;
    assert!(
        !tmux.screen().contains("sk-typed-secret-123"),
        "the key was echoed:\n{}",
        tmux.screen()
    );
    assert!(
        tmux.screen().contains("saved anthropic"),
        "{}",
        tmux.screen()
    );
    let stored = std::fs::read(p.home.path().join("provider_keys.age")).expect("key file");
    assert!(!String::from_utf8_lossy(&stored).contains("sk-typed-secret-123"));
    let mut cmd = p.cmd();
    cmd.args(["provider", "list"]);
    let out = crate::support::run(cmd).await;
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("anthropic") && l.contains("set (key store)")),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s_with_two_reviewers_running_asks_which_and_skips_only_that_one() {
    let mut rules = two_iteration_rules(Duration::ZERO);
    // Both reviewers' first calls are held: they run together while the keys are pressed.
    for model in ["reviewer-a", "reviewer-b"] {
        rules.insert(
            0,
            Rule::new(model, Some(0), Reply::text("held").held()).times(1),
        );
    }
    let (server, mut held) = FakeLlm::start(rules).await;
    let p = project(&server.url());
    let scratch = tempfile::tempdir().expect("scratch");
    let (_w, mut wake) = watch(scratch.path());
    let (_we, mut state_changed) = watch(&p.path().join(".autowrkers"));
    let tmux = Tmux::start(
        &p,
        "run --task 'Add a --verbose flag' --template pipeline.yaml",
        &scratch.path().join("pane.txt"),
    );
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(120), held.recv())
            .await
            .expect("a reviewer called")
            .expect("model");
    }
    // Keys go to a view that is up and shows what it would ask about, as a user's would: the
    // runner can reach the reviews before the view's first frame.
    until_screen(
        &tmux,
        &mut wake,
        "the view shows both reviews running",
        |screen| {
            ["phase-review-func", "phase-review-style"]
                .iter()
                .all(|id| screen.lines().any(|l| l.contains("🔄") && l.contains(id)))
        },
    )
    .await;
    tmux.keys("s");
    let screen = until_screen(&tmux, &mut wake, "the view asks which phase", |screen| {
        screen.contains("Skip which phase?")
    })
    .await;
    let line = screen
        .lines()
        .find(|l| l.contains("Skip which phase?"))
        .expect("prompt")
        .to_owned();
    let digit = if line.contains("1 phase-review-style") {
        "1"
    } else {
        "2"
    };
    tmux.keys(digit);
    until_screen(
        &tmux,
        &mut wake,
        "the runner takes the skip of the style review",
        |screen| screen.contains("skipping 1/phase-review-style"),
    )
    .await;
    // The step settles when its last phase ends: let the functional review answer.
    server.release_holds();
    // The whole state (`state.json` holds the current iteration only): the run may be in its
    // second iteration by now.
    let run_status = |p: &Project, id: &str| {
        p.state()["phase_executions"]
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["id"] == id))
            .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    until(&mut state_changed, "the step settles", || {
        run_status(&p, "1/phase-review-style") == "skipped"
    })
    .await;
    // Only the chosen one: the functional review ran to its end.
    assert_eq!(run_status(&p, "1/phase-review-func"), "completed");
    let request = std::fs::read_to_string(p.execution().join("execution.yaml")).expect("yaml");
    assert!(!request.contains("1/phase-review-func"), "{request}");
    drop(tmux);
}
