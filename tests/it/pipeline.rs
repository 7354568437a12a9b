//! The default-shaped pipeline end to end against the fake OpenAI server.

use std::time::Duration;

use serde_json::json;

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, SECRET, all_files, git, pipeline_template, run};

pub const GREET: &str = "#!/bin/sh\nname=\"${1:-world}\"\necho \"Hello, $name!\"\n";
pub const TEST: &str = "#!/bin/sh\nout=$(sh greet.sh --verbose Ada)\necho \"$out\" | grep -q VERBOSE-ON || { echo \"FAIL: no verbose output\"; exit 1; }\necho ok\n";
pub const CONFIG: &str = "verify:\n  test: sh test.sh\n  timeout_seconds: 60\n";

fn rule(model: &str, turn: Option<usize>, contains: Option<&str>, reply: Reply) -> Rule {
    Rule {
        times: None,
        tool_results: None,
        model: model.to_owned(),
        turn,
        contains: contains.map(str::to_owned),
        reply,
    }
}

/// Replies for a run where iteration 1 is rejected and iteration 2 is approved.
pub fn two_iteration_rules(review_delay: Duration) -> Vec<Rule> {
    let task_list = "```json\n{\"summary\": \"add --verbose\", \"tasks\": [{\"id\": 1, \"title\": \"flag\", \"files\": [\"greet.sh\"]}]}\n```\n/analysis-complete";
    let approve = "```json\n{\"approved\": true, \"summary\": \"good\", \"issues\": []}\n```\n/review-complete";
    let reject = "```json\n{\"approved\": false, \"summary\": \"verbose prints nothing\", \"issues\": [{\"severity\": \"major\", \"description\": \"no output\"}]}\n```\n/review-complete";
    vec![
        rule(
            "analyzer",
            Some(0),
            None,
            Reply::tool("list_files", json!({})),
        ),
        rule("analyzer", None, None, Reply::text(task_list)),
        rule(
            "planner",
            None,
            None,
            Reply::text("## Architecture\ngreet.sh prints.\n/docs-complete"),
        ),
        rule(
            "implementer",
            Some(0),
            Some("This is iteration 2"),
            Reply::tool(
                "edit_file",
                json!({
                    "path": "greet.sh", "search": "echo \"Hello, $name!\"", "replace": "[ \"$v\" = 1 ] && echo \"VERBOSE-ON $name\"\necho \"Hello, $name!\""
                }),
            ),
        ),
        rule(
            "implementer",
            Some(0),
            None,
            Reply::tool(
                "edit_file",
                json!({
                    "path": "greet.sh", "search": "name=", "replace": "v=0\nif [ \"$1\" = --verbose ]; then v=1; shift; fi\nname="
                }),
            ),
        ),
        rule("implementer", None, None, Reply::text("Done. /complete")),
        rule(
            "reviewer-a",
            None,
            Some("VERBOSE-ON"),
            Reply::text(approve).delayed(review_delay),
        ),
        rule(
            "reviewer-a",
            None,
            None,
            Reply::text(reject).delayed(review_delay),
        ),
        rule(
            "reviewer-b",
            None,
            None,
            Reply::text(approve).delayed(review_delay),
        ),
    ]
}

/// [`two_iteration_rules`] with the first call of `model` held until the test releases it.
pub fn held_first_call(model: &str) -> Vec<Rule> {
    let mut rules = two_iteration_rules(Duration::ZERO);
    for r in rules
        .iter_mut()
        .filter(|r| r.model == model && r.turn == Some(0) && r.contains.is_none())
    {
        r.reply = r.reply.clone().held();
    }
    rules
}

pub fn project(url: &str) -> Project {
    let p = Project::git(&[
        ("greet.sh", GREET),
        ("test.sh", TEST),
        ("README.md", "demo\n"),
        (".autowrkers/config.yaml", CONFIG),
    ]);
    p.write("pipeline.yaml", &pipeline_template(url, ""));
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn default_shaped_pipeline_iterates_and_completes() {
    let (server, _held) = FakeLlm::start(two_iteration_rules(Duration::from_millis(400))).await;
    let p = project(&server.url());
    // A dirty working tree: an unstaged change and a staged new file.
    p.write("README.md", "demo\nuncommitted line\n");
    p.write("staged.txt", "staged\n");
    git(&p.path(), &["add", "staged.txt"]);
    let head_before = git(&p.path(), &["rev-parse", "HEAD"]);
    let status_before = git(
        &p.path(),
        &["status", "--porcelain", "--untracked-files=no"],
    );

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
    let out = run(cmd).await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    // The two reviewers run together: each output line says whose it is.
    for reviewer in ["phase-review-func", "phase-review-style"] {
        assert!(
            out.stdout.contains(&format!("│ {reviewer}: ")),
            "{}",
            out.stdout
        );
    }

    let state = p.state();
    assert_eq!(state["status"], "completed");
    assert_eq!(state["iteration"], 2);
    let runs = state["phase_executions"].as_array().expect("runs");
    assert_eq!(
        runs.len(),
        10,
        "6 phase runs in iteration 1, 4 in iteration 2"
    );
    // state.json itself holds iteration 2; iteration 1 is in its history file.
    let raw: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.execution().join("state.json")).expect("state.json"),
    )
    .expect("json");
    assert_eq!(raw["history_through"], 1);
    assert_eq!(raw["phase_executions"].as_array().expect("runs").len(), 4);
    let history: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.execution().join("history/1.json")).expect("history"),
    )
    .expect("json");
    assert_eq!(
        history["phase_executions"].as_array().expect("runs").len(),
        6
    );
    // `workflow status` puts them back together.
    let mut cmd = p.cmd();
    cmd.args(["workflow", "status", "--json"]);
    let shown = run(cmd).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).expect("status json");
    assert_eq!(
        shown["state"]["phase_executions"]
            .as_array()
            .expect("runs")
            .len(),
        10
    );

    // Artifacts on disk.
    let exec = p.execution();
    for rel in [
        "1/phase-analysis.json",
        "1/phase-docs.md",
        "1/phase-implement.diff",
        "1/phase-review-func.json",
        "1/phase-verify.json",
        "2/phase-implement.diff",
        "2/phase-verify.json",
    ] {
        assert!(
            exec.join("artifacts").join(rel).is_file(),
            "missing artifact {rel}"
        );
    }
    let diff =
        std::fs::read_to_string(exec.join("artifacts/2/phase-implement.diff")).expect("diff");
    assert!(
        diff.contains("+[ \"$v\" = 1 ] && echo \"VERBOSE-ON $name\""),
        "{diff}"
    );
    let verify: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(exec.join("artifacts/2/phase-verify.json")).expect("report"),
    )
    .expect("json");
    assert_eq!(verify["passed"], true);
    assert_eq!(verify["checks"][0]["exit_code"], 0);
    let verify1: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(exec.join("artifacts/1/phase-verify.json")).expect("report"),
    )
    .expect("json");
    assert_eq!(
        verify1["passed"], false,
        "iteration 1's code has no verbose output"
    );

    // Artifacts in git, one commit per phase run, on the execution's ref.
    let id = state["id"].as_str().expect("id");
    let reference = format!("refs/autowrkers/executions/{id}");
    let count = git(&p.path(), &["rev-list", "--count", &reference]);
    // One commit per phase run, and the last one records the final status.
    assert_eq!(count.trim(), "11");
    let committed = git(
        &p.path(),
        &[
            "show",
            &format!("{reference}:artifacts/2/phase-review-func.json"),
        ],
    );
    assert!(committed.contains("\"approved\": true"));
    // Each commit is its phase's snapshot, though made while the next phase ran: its tree holds
    // exactly the artifacts its state.json records (a parallel review's artifact written
    // before the other's commit was made is not in it).
    for commit in git(&p.path(), &["rev-list", "--reverse", &reference]).lines() {
        let at = |what: &str| format!("{commit}:{what}");
        let json = |what: &str| -> serde_json::Value {
            serde_json::from_str(&git(&p.path(), &["show", &at(what)])).expect("json")
        };
        let state = json("state.json");
        // Earlier iterations' artifacts are listed in their history files, committed too.
        let through = state["history_through"].as_u64().unwrap_or(0);
        let lists: Vec<serde_json::Value> = (1..=through)
            .map(|n| json(&format!("history/{n}.json")))
            .chain([state])
            .collect();
        let mut recorded: Vec<String> = lists
            .iter()
            .flat_map(|l| l["artifacts"].as_array().expect("artifacts").iter())
            .map(|a| a["file_path"].as_str().expect("path").to_owned())
            .collect();
        recorded.sort();
        let listed = git(
            &p.path(),
            &["ls-tree", "-r", "--name-only", commit, "artifacts"],
        );
        let mut files: Vec<String> = listed.lines().map(str::to_owned).collect();
        files.sort();
        assert_eq!(files, recorded, "commit {commit}");
    }

    // The implementer's branch holds the change; the user's checkout does not.
    let branch = state["workspace"]["branch"].as_str().expect("branch");
    let greet = git(&p.path(), &["show", &format!("{branch}:greet.sh")]);
    assert!(greet.contains("VERBOSE-ON"));
    assert_eq!(
        std::fs::read_to_string(p.path().join("greet.sh")).expect("greet"),
        GREET
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("README.md")).expect("readme"),
        "demo\nuncommitted line\n"
    );
    assert_eq!(git(&p.path(), &["rev-parse", "HEAD"]), head_before);
    assert_eq!(
        git(
            &p.path(),
            &["status", "--porcelain", "--untracked-files=no"]
        ),
        status_before
    );

    // Parallel reviews overlapped in time at the server.
    let a = &server.calls("reviewer-a")[0];
    let b = &server.calls("reviewer-b")[0];
    let (a_end, b_end) = (
        a.finished.expect("a finished"),
        b.finished.expect("b finished"),
    );
    assert!(
        a.started < b_end && b.started < a_end,
        "reviews did not overlap: {:?}..{:?} vs {:?}..{:?}",
        a.started,
        a_end,
        b.started,
        b_end
    );

    // The implementer of iteration 2 saw the reviews and verification of iteration 1.
    let second = server
        .calls("implementer")
        .into_iter()
        .find(|r| r.body.to_string().contains("This is iteration 2"))
        .expect("iteration 2 call");
    let body = second.body.to_string();
    assert!(
        body.contains("verbose prints nothing") && body.contains("FAIL: no verbose output"),
        "{body}"
    );

    // Tokens in state.json equal what the server reported.
    let log = server.log();
    let input: u64 = log.iter().map(|r| r.usage.0 + r.usage.2).sum();
    let output: u64 = log.iter().map(|r| r.usage.1).sum();
    assert_eq!(
        state["total_tokens"]["input"].as_u64().expect("input")
            + state["total_tokens"]["cached_input"]
                .as_u64()
                .expect("cached"),
        input
    );
    assert_eq!(state["total_tokens"]["output"].as_u64(), Some(output));

    // The key went to the server and nowhere else.
    assert!(
        log.iter()
            .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {SECRET}")))
    );
    for (path, bytes) in all_files(&p.path().join(".autowrkers")) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(SECRET),
            "key leaked into {}",
            path.display()
        );
    }
    assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET));

    // `workflow status` by id prefix shows what ran.
    let mut cmd = p.cmd();
    cmd.args(["workflow", "status", &id[..6]]);
    let status = run(cmd).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("status     completed") && status.stdout.contains("iteration  2/3"),
        "{}",
        status.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_events_are_one_per_line_with_seed_names() {
    let (server, _held) = FakeLlm::start(two_iteration_rules(Duration::ZERO)).await;
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
        "--json",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("event line is JSON"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds.first(), Some(&"workflow:started"));
    // The stream's last event, then the one result object.
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["workflow:completed", "workflow:result"]
    );
    for k in [
        "workflow:phase_started",
        "workflow:phase_progress",
        "workflow:phase_completed",
        "workflow:artifact_created",
        "workflow:iteration",
    ] {
        assert!(kinds.contains(&k), "no {k} in {kinds:?}");
    }
    let on_disk = std::fs::read_to_string(p.execution().join("events.ndjson")).expect("events");
    assert_eq!(
        on_disk.lines().count(),
        events.len() - 1,
        "events.ndjson and --json carry the same events (the result line is --json's own)"
    );
}
