//! A kill at any instant is survivable: the runner is aborted at named instants (each temp
//! write of state.json, between saving a phase run and committing it), and left git locks and
//! temp files behind it; `resume` finishes every time, and the ref's tip tells the outcome.

use std::os::unix::process::ExitStatusExt;

use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, git, implementer_only, phase, run};

fn rules() -> Vec<Rule> {
    // Chosen by the tool results in the conversation, so a repeated call gets the same reply.
    vec![
        Rule::after_tool_results(
            "implementer",
            0,
            Reply::tool("write_file", json!({"path": "a.txt", "content": "b\n"})),
        ),
        Rule::after_tool_results("implementer", 1, Reply::text("/complete")),
    ]
}

fn crashable_project(url: &str) -> Project {
    let p = Project::git(&[
        ("a.txt", "a\n"),
        (
            ".autowrkers/config.yaml",
            "verify:\n  test: \"grep -q b a.txt\"\n",
        ),
    ]);
    let mut t = implementer_only(url, "");
    t += "  - id: verify\n    name: verify\n    role: verifier\n    provider_config: {provider_type: none}\n    output_artifact_type: verification_report\n    success_pattern: null\n    order: 2\n";
    p.write("t.yaml", &t);
    p
}

fn ref_tip_state(p: &Project, id: &str) -> Value {
    let text = git(
        &p.path(),
        &[
            "show",
            &format!("refs/autowrkers/executions/{id}:state.json"),
        ],
    );
    serde_json::from_str(&text).expect("state.json on the ref")
}

/// Temp files of writers and the runner's `state.json` swap: none may stay after a run.
fn temp_files(dir: &std::path::Path) -> Vec<String> {
    crate::support::all_files(dir)
        .into_iter()
        .map(|(p, _)| p.display().to_string())
        .filter(|p| p.ends_with(".tmp") || p.ends_with(".swap"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_at_every_instant_is_resumed_to_completion() {
    let (server, _h) = FakeLlm::start(rules()).await;
    let points: Vec<String> = (1..=8)
        .map(|n| format!("temp:state.json#{n}"))
        .chain((1..=2).map(|n| format!("before-ref-commit#{n}")))
        .collect();
    let mut crashed = 0;
    for point in &points {
        let p = crashable_project(&server.url());
        let mut cmd = p.cmd();
        cmd.env("AUTOWRKERS_CRASH_AT", point)
            .args(["run", "--task", "x", "--template", "t.yaml"]);
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("spawn"))
            .await
            .expect("join");
        if out.status.signal().is_some() {
            crashed += 1;
        } else {
            assert_eq!(
                out.status.code(),
                Some(0),
                "{point}: neither crashed nor completed"
            );
            continue;
        }
        // The folder is named by the id: state.json may not exist yet.
        let execution = p.execution();
        let id = execution
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let mut cmd = p.cmd();
        cmd.args(["resume", &id[..8]]);
        let out = run(cmd).await;
        assert_eq!(out.code, 0, "{point}: {}\n{}", out.stdout, out.stderr);
        let state = p.state();
        assert_eq!(state["status"], "completed", "{point}");
        assert_eq!(
            ref_tip_state(&p, &id),
            state,
            "{point}: the ref's tip is the state"
        );
        assert!(temp_files(&p.execution()).is_empty(), "{point}");
        let branch = state["workspace"]["branch"].as_str().expect("branch");
        assert_eq!(git(&p.path(), &["show", &format!("{branch}:a.txt")]), "b\n");
    }
    assert!(
        crashed >= 8,
        "only {crashed} of {} instants were reached",
        points.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_sigkill_resume_clears_git_locks_and_recommits_a_lost_phase_commit() {
    // A planner that completes, then an implementer that runs a command (its sandbox's scratch
    // folder is made for it) and whose next call is held: SIGKILL there.
    let mut rules = vec![
        Rule::after_tool_results(
            "implementer",
            0,
            Reply::tool("run_command", json!({"command": "true"})),
        ),
        Rule::after_tool_results(
            "implementer",
            1,
            Reply::tool("write_file", json!({"path": "a.txt", "content": "b\n"})).held(),
        ),
        Rule::after_tool_results("implementer", 2, Reply::text("/complete")),
    ];
    rules.push(Rule::new(
        "planner",
        None,
        Reply::text("the plan /complete"),
    ));
    let (server, mut held) = FakeLlm::start(rules).await;
    let p = crashable_project(&server.url());
    let template = std::fs::read_to_string(p.path().join("t.yaml")).expect("t");
    let planner = phase(
        "plan",
        "planner",
        "planner",
        &server.url(),
        ("planner_prompt", "implementation_plan", "/complete"),
        0,
        "",
    );
    p.write(
        "t.yaml",
        &template.replacen("phases:\n", &format!("phases:\n{planner}"), 1),
    );
    let mut cmd = p.cmd();
    // A temp folder of its own, to see what the killed runner's sandbox leaves there.
    let temp = tempfile::tempdir().expect("temp");
    cmd.args(["run", "--task", "x", "--template", "t.yaml"])
        .env("TMPDIR", temp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    tokio::time::timeout(std::time::Duration::from_secs(120), held.recv())
        .await
        .expect("implementer called")
        .expect("model");
    let killed_scratch = format!("autowrkers-sandbox-{}-", child.id());
    let scratch_of_killed = || {
        std::fs::read_dir(temp.path())
            .expect("temp")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&killed_scratch))
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert!(scratch_of_killed(), "the implementer's sandbox was made");
    server.release_holds();
    let state = p.state();
    let id = state["id"].as_str().expect("id").to_owned();
    assert_eq!(state["phase_executions"][0]["status"], "completed");

    // What kills during git and atomic writes leave behind: locks, a temp file, and a phase
    // run saved in state.json whose commit never landed.
    git(
        &p.path(),
        &[
            "update-ref",
            "-d",
            &format!("refs/autowrkers/executions/{id}"),
        ],
    );
    let git_dir = p.path().join(".git");
    let branch = state["workspace"]["branch"].as_str().expect("branch");
    let short = &id[..8];
    let locks = [
        git_dir.join(format!("refs/autowrkers/executions/{id}.lock")),
        git_dir.join(format!("refs/heads/{branch}.lock")),
        git_dir.join(format!("worktrees/autowrkers-{short}/index.lock")),
    ];
    for lock in &locks {
        std::fs::create_dir_all(lock.parent().expect("parent")).expect("mkdir");
        std::fs::write(lock, "").expect("plant lock");
    }
    let stale_tmp = p.execution().join(".state.json.999999999.tmp");
    std::fs::write(&stale_tmp, "{").expect("plant temp");

    let mut cmd = p.cmd();
    cmd.args(["resume", short]).env("TMPDIR", temp.path());
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for lock in &locks {
        assert!(!lock.exists(), "{} left", lock.display());
    }
    assert!(!stale_tmp.exists());
    assert!(
        !scratch_of_killed(),
        "the killed runner's sandbox folder is removed"
    );
    let log = git(
        &p.path(),
        &[
            "log",
            "--format=%s",
            &format!("refs/autowrkers/executions/{id}"),
        ],
    );
    assert!(
        log.contains("state recorded before an interruption"),
        "{log}"
    );
    assert!(log.starts_with("autowrkers: completed"), "{log}");
    assert_eq!(
        ref_tip_state(&p, &id),
        p.state(),
        "the ref's tip is the state"
    );
}

/// A verifier phase (`provider_type: none`) with id `id`.
fn verifier(id: &str, order: u32) -> String {
    format!(
        "  - id: {id}\n    name: {id}\n    role: verifier\n    provider_config: {{provider_type: none}}\n    output_artifact_type: verification_report\n    success_pattern: null\n    order: {order}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worktree_that_cannot_be_made_fails_its_phase_and_the_run_resumes_once_fixed() {
    let p = Project::git(&[
        ("a.txt", "a\n"),
        (
            ".autowrkers/config.yaml",
            "verify:\n  test: \"test -f a.txt\"\n",
        ),
    ]);
    p.write("t.yaml", &format!("name: v\nphases:\n{}", verifier("v", 1)));
    // A file where git keeps its worktrees' records: the worktree's thread cannot make one.
    let records = p.path().join(".git/worktrees");
    std::fs::write(&records, "").expect("block");
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 1, "a failure, not a usage error: {}", out.stderr);
    assert!(
        out.stderr.contains("the worktree could not be made"),
        "{}",
        out.stderr
    );
    let state = p.state();
    assert_eq!(state["status"], "paused");
    let error = state["phase_executions"][0]["error_message"].as_str();
    assert!(error.is_some_and(|e| e.contains("the worktree could not be made")));

    std::fs::remove_file(&records).expect("unblock");
    let id = state["id"].as_str().expect("id").to_owned();
    let mut cmd = p.cmd();
    cmd.args(["resume", &id[..8]]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(p.state()["status"], "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worktree_a_kill_left_half_checked_out_is_made_again() {
    // Two verifiers: the first waits for the worktree to be whole before the kill, the second
    // tests, after the resume, the worktree as the resume found it (no implementer resets it).
    let template = format!(
        "name: v\nphases:\n{}{}",
        verifier("v1", 1),
        verifier("v2", 2)
    );
    let mut tried = Vec::new();
    // The first instant at which the first verifier is saved completed and the second not.
    for point in (1..=8).map(|n| format!("temp:state.json#{n}")) {
        let p = Project::git(&[
            ("a.txt", "a\n"),
            ("keep.txt", "k\n"),
            (
                ".autowrkers/config.yaml",
                "verify:\n  test: \"test -f keep.txt\"\n",
            ),
        ]);
        p.write("t.yaml", &template);
        let mut cmd = p.cmd();
        cmd.env("AUTOWRKERS_CRASH_AT", &point)
            .args(["run", "--task", "x", "--template", "t.yaml"]);
        let out = run(cmd).await;
        let Ok(text) = std::fs::read_to_string(p.execution().join("state.json")) else {
            tried.push(format!("{point}: no state"));
            continue;
        };
        let state: Value = serde_json::from_str(&text).expect("state");
        let runs = state["phase_executions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let status = |i: usize| runs.get(i).map(|r| r["status"].clone());
        if out.code == 0
            || status(0) != Some(json!("completed"))
            || status(1).is_some_and(|s| s == "completed")
        {
            tried.push(format!("{point}: {:?} {:?}", status(0), status(1)));
            continue;
        }
        let id = state["id"].as_str().expect("id").to_owned();
        let short = &id[..8];
        let worktree = p.home.path().join("worktrees").join(short);
        let record = p.path().join(format!(".git/worktrees/autowrkers-{short}"));
        // What a kill during libgit2's checkout leaves: the worktree's `.git` file and some
        // of the files, and no index yet.
        std::fs::remove_file(worktree.join("keep.txt")).expect("unfinished file");
        std::fs::remove_file(record.join("index")).expect("unwritten index");

        let mut cmd = p.cmd();
        cmd.args(["resume", short]);
        let out = run(cmd).await;
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        assert_eq!(p.state()["status"], "completed", "keep.txt was checked out");
        return;
    }
    panic!("no kill fell between the two verifiers: {tried:?}");
}
