//! What both benchmarks build on: medians, and a git project with one commit.

// Shared by both benchmark binaries; each uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The median of some timings.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A new temp folder for a benchmark's files, in a folder of the temp folder that ext4 is
/// told to spread its subfolders from (its Orlov allocator's "top directory" hint, the mark
/// `chattr +T` sets, set with the function autowrkers uses on its worktrees folder): each lands
/// in a block group of its own rather than beside the temp folder's other contents. On an ext4
/// without a journal (this machine's) a new file is given no inode freed in the last 60 to 360
/// seconds, and finding one costs a look at each such inode of its group: beside a test suite's
/// or a build's churn, making a file costs 100–900 µs instead of 20, and a run that makes 90
/// files measures its neighbours. Elsewhere the hint is ignored, or refused and skipped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("autowrkers-bench-")
        .tempdir_in(scratch_base())
        .expect("tmp")
}

/// The folder [`scratch`] makes its folders in (made, and hinted, at the first call).
pub fn scratch_base() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join("autowrkers-bench");
        std::fs::create_dir_all(&root).expect("mkdir");
        autowrkers::git::spread_subfolders(&root);
        root
    })
}

/// Microseconds to make a small file in a new folder of `base` (the median of 400): what the
/// file system's state costs each file a run makes, printed beside the table.
pub fn file_cost(base: &Path) -> f64 {
    let dir = tempfile::tempdir_in(base).expect("tmp");
    let mut each: Vec<Duration> = (0..400)
        .map(|n| {
            let started = Instant::now();
            std::fs::write(dir.path().join(n.to_string()), [b'x'; 200]).expect("write");
            started.elapsed()
        })
        .collect();
    each.sort();
    each[each.len() / 2].as_secs_f64() * 1e6
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

/// `count` copies of the one execution of `source`, as if run one second apart, in `target`.
pub fn copy_executions(source: &Path, target: &Path, count: usize) -> Vec<String> {
    let folder = source.join(".autowrkers/executions");
    let original = std::fs::read_dir(&folder)
        .expect("executions")
        .flatten()
        .next()
        .expect("one execution")
        .path();
    let id = original
        .file_name()
        .expect("id")
        .to_string_lossy()
        .into_owned();
    let request = std::fs::read_to_string(original.join("execution.yaml")).expect("yaml");
    let state = std::fs::read_to_string(original.join("state.json")).expect("state");
    let events = std::fs::read_to_string(original.join("events.ndjson")).expect("events");
    let created = request
        .lines()
        .find_map(|l| l.strip_prefix("created_at: "))
        .expect("created_at")
        .trim_matches('\'')
        .to_owned();
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("date");
    let source_path = source.to_string_lossy().into_owned();
    let target_path = target.to_string_lossy().into_owned();
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let new_id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            i as u64 * 2_654_435_761 % (1 << 32),
            i
        );
        let when = (base + chrono::Duration::seconds(i as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let dir = target.join(".autowrkers/executions").join(&new_id);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let fix = |text: &str| {
            text.replace(&id, &new_id)
                .replace(&created, &when)
                .replace(&source_path, &target_path)
        };
        std::fs::write(dir.join("execution.yaml"), fix(&request)).expect("write");
        std::fs::write(dir.join("state.json"), fix(&state)).expect("write");
        std::fs::write(dir.join("events.ndjson"), fix(&events)).expect("write");
        ids.push(new_id);
    }
    ids
}

/// The CPU time (user + system, in milliseconds) process `pid` has used so far.
pub fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on Linux.
    ticks * 10
}

/// A one-phase template (an analyzer) on the fake OpenAI server at `url`.
pub fn one_phase(url: &str) -> String {
    format!(
        "name: one\nphases:\n  - id: a\n    name: a\n    role: analyzer\n    provider_config: {{provider_type: openai_compatible, model_name: analysis, api_url: \"{url}\"}}\n    prompt_template: analyzer_prompt\n    output_artifact_type: task_list\n    success_pattern: /done\n    order: 1\n"
    )
}
