//! What a new user meets first: output piped into `head`, usage mistakes, and `workflow list`
//! on tasks written over several lines.

use std::process::Stdio;

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, implementer_only, run};

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
    let (server, _h) = FakeLlm::start(vec![Rule::new(
        "implementer",
        None,
        Reply::text("/complete"),
    )])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    p.write("t.yaml", &implementer_only(&server.url(), ""));
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
