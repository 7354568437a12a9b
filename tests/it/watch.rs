//! `autowrkers watch` with a real filesystem watcher, the real binary and the fake LLM server:
//! hand-written executions and task files start (a task once, across a restart), a trigger
//! fires once for a burst of saves (renames, editor swap files, ignored files) and never for
//! a runner's own writes, `on_busy` does what it says, and broken YAML is reported while
//! watching goes on. Every wait is on the watcher's own `--json` events.

use std::io::BufRead;
use std::process::{Child, Stdio};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::fake_llm::FakeLlm;
use crate::pipeline::{project, two_iteration_rules};
use crate::reconcile::hand_written;
use crate::support::{Project, pipeline_template};

/// A running `watch --json`, its events read line by line.
struct Watcher {
    child: Child,
    events: mpsc::UnboundedReceiver<Value>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watcher {
    async fn start(p: &Project) -> Self {
        let mut cmd = p.cmd();
        cmd.args(["watch", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("watch");
        let out = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let mut w = Self { child, events };
        w.until("watch:started").await;
        w
    }

    /// Events up to and including the first of type `kind`.
    async fn until(&mut self, kind: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let e = self
                .events
                .recv()
                .await
                .unwrap_or_else(|| panic!("watcher ended before {kind}: {seen:?}"));
            // An error while waiting for something else fails the test now, not by a hang.
            assert!(
                e["type"] != "watch:error" || kind == "watch:error",
                "waiting for {kind}: {e}"
            );
            let done = e["type"] == kind;
            seen.push(e);
            if done {
                return seen;
            }
        }
    }

    /// Stops it as Ctrl-C would and returns its last events.
    async fn stop(mut self) -> Vec<Value> {
        // SAFETY: signals our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.until("watch:stopped").await
    }
}

fn executions(p: &Project) -> usize {
    std::fs::read_dir(p.path().join(".autowrkers/executions"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_written_executions_and_task_files_start_and_a_task_starts_once() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(std::time::Duration::ZERO)).await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &pipeline_template(&server.url(), ""));
    let mut w = Watcher::start(&p).await;

    let id = "0d1e2f3a-0000-4000-8000-0000000000aa";
    hand_written(
        &p,
        id,
        &pipeline_template(&server.url(), ""),
        "Add a --verbose flag",
    );
    let seen = w.until("watch:reconcile").await;
    assert_eq!(seen.last().unwrap()["execution_id"], id, "{seen:?}");
    let seen = w.until("watch:ended").await;
    assert_eq!(seen.last().unwrap()["status"], "completed", "{seen:?}");

    p.write(
        ".autowrkers/tasks/verbose.md",
        "---\ntemplate: pipeline.yaml\nbudget_limit: 4\n---\nAdd a --verbose flag\n",
    );
    let seen = w.until("watch:task").await;
    let task_exec = seen.last().unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = std::fs::read_to_string(p.path().join(".autowrkers/tasks/verbose.md")).unwrap();
    assert!(file.contains(&format!("execution: {task_exec}")), "{file}");
    assert!(
        file.contains("template: pipeline.yaml") && file.ends_with("Add a --verbose flag\n"),
        "{file}"
    );
    w.until("watch:ended").await;
    let request = std::fs::read_to_string(
        p.path()
            .join(".autowrkers/executions")
            .join(&task_exec)
            .join("execution.yaml"),
    )
    .unwrap();
    assert!(request.contains("budget_limit: 4"), "{request}");
    let stopped = w.stop().await;
    assert_eq!(stopped.last().unwrap()["running"], 0);
    assert_eq!(executions(&p), 2);

    // Restarted: the recorded task is not started again; a new task file is.
    let mut w = Watcher::start(&p).await;
    p.write(
        ".autowrkers/tasks/second.md",
        "---\ntemplate: pipeline.yaml\n---\nAdd a --quiet flag\n",
    );
    let seen = w.until("watch:task").await;
    assert!(
        seen.iter().filter(|e| e["type"] == "watch:task").count() == 1
            && seen.last().unwrap()["file"]
                .as_str()
                .unwrap()
                .ends_with("second.md"),
        "{seen:?}"
    );
    w.until("watch:ended").await;
    assert_eq!(executions(&p), 3);

    // A second watcher on the same project is refused, naming the holder.
    let out = p.cli(&["watch"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("already watched (pid"),
        "{}",
        out.stderr
    );
}

/// A config with one trigger on `paths`, its task naming the changed files.
fn trigger_config(on_busy: &str, extra: &str) -> String {
    format!(
        "verify:\n  test: sh test.sh\nmax_parallel_executions: 4\nwatch:\n  debounce_ms: 200\n  triggers:\n    - name: review\n      paths: [\"src/**\"]\n      template: pipeline.yaml\n      task: \"Review {{{{ changed_files | join(', ') }}}}\"\n      on_busy: {on_busy}\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_saves_fires_a_trigger_once_and_runner_writes_never_do() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(std::time::Duration::ZERO)).await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &pipeline_template(&server.url(), ""));
    p.write(".autowrkers/config.yaml", &trigger_config("skip", ""));
    p.write(".gitignore", "src/generated.rs\n");
    p.write("src/c.rs", "c\n");
    let mut w = Watcher::start(&p).await;
    assert_eq!(executions(&p), 0);

    let src = p.path().join("src");
    for n in 0..100 {
        std::fs::write(src.join("a.rs"), format!("fn a() {{ {n} }}\n")).unwrap();
    }
    // Save by rename: a temp file, then moved over the target.
    std::fs::write(src.join(".b.rs.tmp"), "b\n").unwrap();
    std::fs::rename(src.join(".b.rs.tmp"), src.join("b.rs")).unwrap();
    // Vim: probe file, backup by rename, write, remove the backup; a swap file stays.
    std::fs::write(src.join("4913"), "").unwrap();
    std::fs::remove_file(src.join("4913")).unwrap();
    std::fs::write(src.join(".c.rs.swp"), "swap").unwrap();
    std::fs::rename(src.join("c.rs"), src.join("c.rs~")).unwrap();
    std::fs::write(src.join("c.rs"), "c2\n").unwrap();
    std::fs::remove_file(src.join("c.rs~")).unwrap();
    std::fs::write(src.join("generated.rs"), "ignored by git\n").unwrap();

    let seen = w.until("watch:trigger").await;
    let fired = seen.last().unwrap();
    assert_eq!(
        fired["changed_files"],
        serde_json::json!(["src/a.rs", "src/b.rs", "src/c.rs"]),
        "{seen:?}"
    );
    let id = fired["execution_id"].as_str().unwrap().to_owned();
    let request = std::fs::read_to_string(
        p.path()
            .join(".autowrkers/executions")
            .join(&id)
            .join("execution.yaml"),
    )
    .unwrap();
    assert!(
        request.contains("Review src/a.rs, src/b.rs, src/c.rs"),
        "{request}"
    );
    let seen = w.until("watch:ended").await;
    assert_eq!(seen.last().unwrap()["status"], "completed");
    // The run wrote its worktree, artifacts, state and logs: none of it triggered. The next
    // trigger is the next save's.
    std::fs::write(src.join("z.rs"), "z\n").unwrap();
    let seen = w.until("watch:trigger").await;
    assert!(
        seen.iter()
            .all(|e| !["watch:skipped", "watch:queued"].contains(&e["type"].as_str().unwrap())),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().unwrap()["changed_files"],
        serde_json::json!(["src/z.rs"])
    );
    assert_eq!(executions(&p), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_busy_queue_restart_and_skip_do_what_they_say() {
    let (server, mut held) = FakeLlm::start(crate::serve_support::held_analyzer_rules()).await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &pipeline_template(&server.url(), ""));
    let more = "    - name: again\n      paths: [\"lib/**\"]\n      template: pipeline.yaml\n      task: restart\n      on_busy: restart\n    - name: once\n      paths: [\"doc/**\"]\n      template: pipeline.yaml\n      task: skip\n      on_busy: skip\n";
    p.write(".autowrkers/config.yaml", &trigger_config("queue", more));
    let mut w = Watcher::start(&p).await;

    // queue: the second save waits for the first run, then starts one run with what changed.
    p.write("src/one.rs", "1\n");
    let first = w.until("watch:trigger").await.last().unwrap()["execution_id"].clone();
    held.recv().await.expect("its analyzer call is held");
    p.write("src/two.rs", "2\n");
    let queued = w.until("watch:queued").await;
    assert_eq!(queued.last().unwrap()["waiting_for"], first);
    // Released: the first run ends, and the queued saves start one run with what changed.
    server.release_holds();
    let seen = w.until("watch:trigger").await;
    let second = seen.last().unwrap();
    assert!(
        seen.iter()
            .any(|e| e["type"] == "watch:ended" && e["execution_id"] == first),
        "the queued run starts after the first ends: {seen:?}"
    );
    assert_eq!(second["changed_files"], serde_json::json!(["src/two.rs"]));
    w.until("watch:ended").await;

    // restart: a save while its run is busy cancels that run and starts another.
    let (server2, mut held2) = FakeLlm::start(crate::serve_support::held_analyzer_rules()).await;
    p.write("pipeline.yaml", &pipeline_template(&server2.url(), ""));
    p.write("lib/x.rs", "1\n");
    let busy = w.until("watch:trigger").await.last().unwrap()["execution_id"].clone();
    held2.recv().await.expect("held");
    p.write("lib/y.rs", "2\n");
    let seen = w.until("watch:trigger").await;
    assert!(
        seen.iter()
            .any(|e| e["type"] == "watch:restarted" && e["cancelled"] == busy),
        "{seen:?}"
    );
    let request = std::fs::read_to_string(
        p.path()
            .join(".autowrkers/executions")
            .join(busy.as_str().unwrap())
            .join("execution.yaml"),
    )
    .unwrap();
    assert!(request.contains("cancel: true"), "{request}");
    // Its runner applies the cancel: it ends cancelled.
    loop {
        let seen = w.until("watch:ended").await;
        let last = seen.last().unwrap();
        if last["execution_id"] == busy {
            assert_eq!(last["status"], "cancelled", "{seen:?}");
            break;
        }
    }
    // skip: while the new run is held, a matching save is skipped.
    let (server3, mut held3) = FakeLlm::start(crate::serve_support::held_analyzer_rules()).await;
    p.write("pipeline.yaml", &pipeline_template(&server3.url(), ""));
    p.write("doc/a.md", "1\n");
    let running = w.until("watch:trigger").await.last().unwrap()["execution_id"].clone();
    held3.recv().await.expect("held");
    p.write("doc/b.md", "2\n");
    let seen = w.until("watch:skipped").await;
    assert_eq!(seen.last().unwrap()["busy_with"], running);
    server2.release_holds();
    server3.release_holds();
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_yaml_is_reported_with_its_position_and_watching_goes_on() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(std::time::Duration::ZERO)).await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &pipeline_template(&server.url(), ""));
    let mut w = Watcher::start(&p).await;
    p.write(".autowrkers/templates/mine.yaml", "name: x\nphases: [\n");
    let seen = w.until("watch:error").await;
    let msg = seen.last().unwrap()["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("mine.yaml:3:1"), "{msg}");
    let config = std::fs::read_to_string(p.path().join(".autowrkers/config.yaml")).unwrap();
    p.write(".autowrkers/config.yaml", "watch:\n  debounce_ms: [\n");
    let seen = w.until("watch:error").await;
    let msg = seen.last().unwrap()["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("config.yaml:3:1"), "{msg}");
    p.write(".autowrkers/config.yaml", &config);
    p.write(".autowrkers/tasks/bad.md", "---\ntemplate: [\n---\nx\n");
    let seen = w.until("watch:error").await;
    assert!(
        seen.last().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("bad.md:3:1"),
        "{seen:?}"
    );
    // Still watching: a good task file starts.
    p.write(
        ".autowrkers/tasks/good.md",
        "---\ntemplate: pipeline.yaml\n---\nAdd a --verbose flag\n",
    );
    let seen = w.until("watch:task").await;
    assert!(
        seen.last().unwrap()["file"]
            .as_str()
            .unwrap()
            .ends_with("good.md")
    );
    let seen = w.until("watch:ended").await;
    assert_eq!(seen.last().unwrap()["status"], "completed");
}
