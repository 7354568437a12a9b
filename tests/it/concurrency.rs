//! Runs started together: the registry of known projects, worktrees in one repository, and the
//! execution lock's refusal, each shared by several real processes.

use std::process::Stdio;
use std::time::Duration;

use crate::fake_llm::FakeLlm;
use crate::pipeline::{held_first_call, project};
use crate::support::{Project, git, implementer_only, run, run_all_at_once};

#[tokio::test(flavor = "multi_thread")]
async fn eight_first_runs_in_eight_projects_register_all_eight() {
    let (server, _h) = crate::support::completing_server().await;
    let shared_home = tempfile::tempdir().expect("home");
    let projects: Vec<Project> = (0..8).map(|_| Project::git(&[("a.txt", "a\n")])).collect();
    let cmds = projects
        .iter()
        .map(|p| {
            p.write("t.yaml", &implementer_only(&server.url(), ""));
            let mut cmd = p.cmd();
            cmd.env("AUTOWRKERS_HOME", shared_home.path()).args([
                "run",
                "--task",
                "x",
                "--template",
                "t.yaml",
            ]);
            cmd
        })
        .collect();
    for (code, stderr) in run_all_at_once(cmds).await {
        assert_eq!(code, 0, "{stderr}");
    }
    let registry =
        std::fs::read_to_string(shared_home.path().join("projects.yaml")).expect("projects.yaml");
    for p in &projects {
        assert!(
            registry.contains(&*p.path().to_string_lossy()),
            "{} missing from:\n{registry}",
            p.path().display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_started_together_in_one_project_each_get_their_worktree() {
    let (server, _h) = crate::support::completing_server().await;
    let p = Project::git(&[("a.txt", "a\n")]);
    p.write("t.yaml", &implementer_only(&server.url(), ""));
    let cmds = (0..4)
        .map(|i| {
            let mut cmd = p.cmd();
            cmd.args([
                "run",
                "--task",
                &format!("task {i}"),
                "--template",
                "t.yaml",
            ]);
            cmd
        })
        .collect();
    for (code, stderr) in run_all_at_once(cmds).await {
        assert_eq!(code, 0, "{stderr}");
    }
    let branches = git(&p.path(), &["branch", "--list", "autowrkers/*"]);
    assert_eq!(branches.lines().count(), 4, "{branches}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_refusal_names_the_holder_even_while_it_rewrites_the_file() {
    let (server, mut held) = FakeLlm::start(held_first_call("analyzer")).await;
    let p = project(&server.url());
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "t", "--template", "pipeline.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    tokio::time::timeout(Duration::from_secs(120), held.recv())
        .await
        .expect("analyzer called")
        .expect("model");
    let id = p.state()["id"].as_str().expect("id").to_owned();
    // The instant between the holder's truncate and its write of "pid N on HOST".
    std::fs::write(p.execution().join("lock"), "").expect("empty the lock file");
    let mut cmd = p.cmd();
    cmd.args(["resume", &id[..8]]);
    let out = run(cmd).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(&format!("pid {}", child.id())),
        "{}",
        out.stderr
    );
    server.release_holds();
    let code = tokio::task::spawn_blocking(move || child.wait().expect("wait").code())
        .await
        .expect("join");
    assert_eq!(code, Some(0));
}
