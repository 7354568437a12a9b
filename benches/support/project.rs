//! What both benchmarks build on: medians, and a git project with one commit.

// Shared by both benchmark binaries; each uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The median of some timings.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs git in `root` (with an identity for commits); panics on failure.
pub fn git(root: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.name=b", "-c", "user.email=b@b"])
        .args(args)
        .current_dir(root)
        .status()
        .expect("git")
        .success();
    assert!(ok, "git {args:?}");
}

/// A git repository holding `files`, committed, with a verify command that passes.
pub fn project(root: &Path, files: &[(&str, String)]) {
    std::fs::create_dir_all(root.join(".autowrkers")).expect("mkdir");
    std::fs::write(root.join("main.txt"), "hello\n").expect("write");
    std::fs::write(
        root.join(".autowrkers/config.yaml"),
        "verify:\n  test: \"true\"\n",
    )
    .expect("write");
    for (name, text) in files {
        std::fs::write(root.join(name), text).expect("write");
    }
    git(root, &["init", "-q"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "init"]);
}
