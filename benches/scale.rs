//! `cargo bench --bench scale`: every row of the scale issue's table, measured on whole
//! processes of the release binary (what a user waits on), with the original's figures beside.
//! The 10 000-execution fixture is made here, from one real execution copied.
//!
//! Rows: orchestration overhead per phase and a whole 6-phase run against a zero-latency fake
//! OpenAI server; `workflow list`, `workflow status`, `resume` and `budget status` with 10 000
//! executions; the per-phase cost of iteration 40–50 against 1–10; peak RSS of one phase
//! streaming a 20 MB reply (and a 5 MB one, to show it is flat). Beside the table: a run in a
//! 5 000-file project, where making and removing the worktree is most of the time.

// A test or benchmark that cannot go on fails on the spot: unwrap, expect and panic are its
// way of saying so (the library and binary deny them, see Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/fake_openai.rs"]
mod fake_openai;
#[path = "support/project.rs"]
mod project;

use project::{copy_executions, file_cost, median, project, scratch, scratch_base};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_autowrkers");

/// The release binary as `cargo install` places it: a copy, which every row runs. A binary
/// fresh from the linker sits in the page cache in small pieces, and each of its processes
/// takes about a hundred more page faults (1.1× the wall time of a 1-phase run) until its
/// pages are read back from disk; a copy — an installed or a downloaded binary — is read in
/// large ones, as the linker's own file is too once the cache has let it go.
fn bin() -> &'static Path {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let to = scratch_base().join("autowrkers");
        let part = scratch_base().join(".autowrkers.part");
        std::fs::copy(BIN, &part).expect("copy the binary");
        std::fs::rename(&part, &to).expect("place the binary");
        to
    })
}
const EXECUTIONS: usize = 10_000;

/// A row of the table: what, the original's figure, ours, the goal.
#[derive(Debug)]
struct Row {
    what: String,
    original: &'static str,
    ours: String,
    goal: &'static str,
}

/// `run` of the task "bench" with `template`, without the live view.
fn run_args(template: &str) -> [&str; 6] {
    [
        "run",
        "--task",
        "bench",
        "--template",
        template,
        "--no-realtime",
    ]
}

/// Runs the binary in `dir` with `home`; panics on failure.
fn aw(home: &Path, dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .env("AUTOWRKERS_HOME", home)
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Median wall time of `runs` whole processes.
fn timed(home: &Path, dir: &Path, args: &[&str], runs: usize) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                aw(home, dir, args);
                started.elapsed()
            })
            .collect(),
    )
}

fn phase(id: &str, role: &str, model: &str, kind: &str, order: u32, url: &str) -> String {
    format!(
        "  - id: {id}\n    name: {id}\n    role: {role}\n    provider_config: {{provider_type: openai_compatible, model_name: {model}, api_url: \"{url}\"}}\n    prompt_template: {role}_prompt\n    output_artifact_type: {kind}\n    success_pattern: /done\n    order: {order}\n"
    )
}

/// The default pipeline's shape on the fake server: analysis, plan, implement, two parallel
/// reviews, verify.
fn six_phases(url: &str) -> String {
    let mut t = "name: bench\niteration_behavior: auto_iterate\nphases:\n".to_owned();
    t += &phase("a", "analyzer", "analysis", "task_list", 1, url);
    t += &phase("b", "planner", "plan", "implementation_plan", 2, url);
    t += &phase("c", "implementer", "done", "code_diff", 3, url);
    t += &phase(
        "d",
        "reviewer_functional",
        "approve",
        "review_report",
        4,
        url,
    );
    t += &phase("e", "reviewer_style", "approve", "review_report", 5, url);
    t += "    parallel_with: d\n";
    t += "  - id: f\n    name: f\n    role: verifier\n    provider_config: {provider_type: none}\n    output_artifact_type: verification_report\n    success_pattern: null\n    order: 6\n";
    t
}

/// A run of the analysis phase alone, for the fixed costs of a run.
fn one_phase(url: &str) -> String {
    "name: one\nphases:\n".to_owned() + &phase("a", "analyzer", "analysis", "task_list", 1, url)
}

/// A 6-phase run, whole process, and the overhead per phase it leaves after the server's time.
/// Returns the home and the first run's project.
fn six_phase_run(rt: &tokio::runtime::Runtime, rows: &mut Vec<Row>) -> (PathBuf, PathBuf) {
    let server = rt.block_on(fake_openai::start());
    let keep = scratch().keep();
    let mut walls = Vec::new();
    let mut overheads = Vec::new();
    let mut singles = Vec::new();
    for n in 0..16 {
        let root = keep.join(format!("run{n}"));
        std::fs::create_dir_all(&root).expect("mkdir");
        project(
            &root,
            &[
                ("t.yaml", six_phases(&server.url())),
                ("one.yaml", one_phase(&server.url())),
            ],
        );
        let home = keep.join("home");
        let timed_run = |template: &str| {
            server.reset();
            let started = Instant::now();
            aw(&home, &root, &run_args(template));
            let wall = started.elapsed();
            (wall, wall.saturating_sub(server.busy()))
        };
        let (wall, own) = timed_run("t.yaml");
        walls.push(wall);
        overheads.push(own / 6);
        singles.push(timed_run("one.yaml").1);
    }
    rows.push(Row {
        what: "orchestration overhead per phase (run wall − server time) / phases".into(),
        original: "30 ms",
        ours: format!("{:.2?}", median(overheads.clone())),
        goal: "≤ 3 ms",
    });
    // What one more phase adds, the run's fixed costs (start-up, worktree, clean-up) taken out.
    let six = median(overheads) * 6;
    let one = median(singles);
    rows.push(Row {
        what: format!(
            "  phases after the first: (6-phase − 1-phase run, own time) / 5 (1-phase run: {one:.2?})"
        ),
        original: "—",
        ours: format!("{:.2?}", six.saturating_sub(one) / 5),
        goal: "≤ 3 ms",
    });
    rows.push(Row {
        what: "6-phase run, whole process".into(),
        original: "1 460 ms",
        ours: format!("{:.2?}", median(walls)),
        goal: "≤ 30 ms",
    });
    (keep.join("home"), keep.join("run0"))
}

/// A 1-phase run in a project of 5 000 files (100 folders of 50, 4 KB each): the cost of making the
/// run's worktree and removing it, which grows with the project, not with the phases. Twelve
/// runs in a row, so that each makes its files where the last one's were just freed.
fn big_project_run(rt: &tokio::runtime::Runtime, rows: &mut Vec<Row>) {
    let server = rt.block_on(fake_openai::start());
    let tmp = scratch();
    let root = tmp.path().join("big");
    let text = "// a line of the project's code\n".repeat(128);
    for d in 0..100 {
        let folder = root.join(format!("src/m{d}"));
        std::fs::create_dir_all(&folder).expect("mkdir");
        for f in 0..50 {
            std::fs::write(folder.join(format!("f{f}.rs")), &text).expect("write");
        }
    }
    project(&root, &[("one.yaml", one_phase(&server.url()))]);
    let home = tmp.path().join("home");
    let walls: Vec<Duration> = (0..12)
        .map(|_| {
            let started = Instant::now();
            aw(&home, &root, &run_args("one.yaml"));
            started.elapsed()
        })
        .collect();
    let slowest = walls.iter().max().copied().unwrap_or_default();
    rows.push(Row {
        what: format!(
            "1-phase run in a 5 000-file, 20 MB project: its worktree made and removed (slowest of 12: {slowest:.1?})"
        ),
        original: "—",
        ours: format!("{:.1?}", median(walls)),
        goal: "—",
    });
}

/// The lookups with 10 000 executions in one known project; `source` (a project with one real
/// execution, known to `home`) is the other.
fn ten_thousand(home: &Path, source: &Path, rows: &mut Vec<Row>) {
    let tmp = scratch();
    // AUTOWRKERS_BENCH_KEEP=1 keeps the fixture for profiling (its paths are printed).
    let tmp_path = if std::env::var_os("AUTOWRKERS_BENCH_KEEP").is_some() {
        let kept = tmp.keep();
        println!(
            "fixture kept: home {}, project {}",
            home.display(),
            kept.join("big").display()
        );
        kept
    } else {
        tmp.path().to_path_buf()
    };
    let big = tmp_path.join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    project(&big, &[]);
    let ids = copy_executions(source, &big, EXECUTIONS);
    let known = std::fs::read_to_string(home.join("projects.yaml")).expect("projects");
    std::fs::write(
        home.join("projects.yaml"),
        format!("{known}- {}\n", big.display()),
    )
    .expect("projects");
    let one = std::fs::read_dir(source.join(".autowrkers/executions"))
        .expect("executions")
        .flatten()
        .next()
        .expect("one")
        .file_name()
        .to_string_lossy()
        .into_owned();
    let started = Instant::now();
    aw(home, &big, &["workflow", "list"]);
    println!(
        "(index built from the files of {EXECUTIONS} executions by the first command: {:.2?})",
        started.elapsed()
    );
    // A user's executions were written over weeks: the fixture's 10 000 are put on disk before
    // the lookups are timed, not written back by the kernel while they run.
    let _ = Command::new("sync").status();
    let middle = &ids[EXECUTIONS / 2][..8];
    let table: [(&str, &[&str], &Path, &'static str); 5] = [
        (
            "`workflow list`, newest 50",
            &["workflow", "list"],
            &big,
            "≤ 15 ms",
        ),
        (
            "`workflow list --all`",
            &["workflow", "list", "--all"],
            &big,
            "≤ 80 ms",
        ),
        (
            "`workflow status <id>`",
            &["workflow", "status", middle],
            &big,
            "≤ 10 ms",
        ),
        (
            "`resume` of an ended execution, whole process, 1-execution project (the other has 10 000)",
            &["resume", &one[..8]],
            source,
            "—",
        ),
        ("`budget status`", &["budget", "status"], &big, "≤ 20 ms"),
    ];
    for (what, args, dir, goal) in table {
        rows.push(Row {
            what: format!("{what}, {EXECUTIONS} executions"),
            original: "—",
            ours: format!("{:.2?}", timed(home, dir, args, 15)),
            goal,
        });
    }
    rows.push(Row {
        what: format!(
            "`resume` of a paused execution to its start (`workflow:started` printed), 1-execution project (the other has {EXECUTIONS})"
        ),
        original: "—",
        ours: format!("{:.2?}", resume_to_start(home, source, &one)),
        goal: "≤ 15 ms to start",
    });
}

/// Median time from launching `resume --json` on the paused execution `id` of `project` to
/// its first event (`workflow:started`: found, locked, its worktree back, running). The
/// execution is set back to paused before each run.
fn resume_to_start(home: &Path, project: &Path, id: &str) -> Duration {
    use std::io::BufRead;
    let state = project
        .join(".autowrkers/executions")
        .join(id)
        .join("state.json");
    let ended = std::fs::read_to_string(&state).expect("state");
    let paused = ended.replace("\"status\":\"completed\"", "\"status\":\"paused\"");
    assert_ne!(paused, ended, "the fixture's execution is completed");
    let samples = (0..15)
        .map(|_| {
            std::fs::write(&state, &paused).expect("pause");
            let started = Instant::now();
            let mut child = Command::new(bin())
                .args(["resume", "--json", "--no-realtime", &id[..8]])
                .env("AUTOWRKERS_HOME", home)
                .env("NO_COLOR", "1")
                .current_dir(project)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("resume");
            let mut first = String::new();
            std::io::BufReader::new(child.stdout.take().expect("stdout"))
                .read_line(&mut first)
                .expect("first event");
            let to_start = started.elapsed();
            assert!(first.contains("workflow:started"), "{first}");
            assert!(child.wait().expect("wait").success());
            to_start
        })
        .collect();
    median(samples)
}

/// Per-phase cost of iterations 41–50 against 1–10, from the events' own clock.
fn fifty_iterations_once(base: &Path) -> f64 {
    let tmp = tempfile::tempdir_in(base).expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    let script = "replies:\n  - phase: c\n    text: /done\n  - phase: d\n    text: \"```json\\n{\\\"approved\\\": false, \\\"summary\\\": \\\"again\\\", \\\"issues\\\": [{\\\"severity\\\": \\\"major\\\", \\\"description\\\": \\\"x\\\"}]}\\n```\\n/done\"\n";
    let scripted = |id: &str, role: &str, kind: &str, order: u32, extra: &str| {
        format!(
            "  - id: {id}\n    name: {id}\n    role: {role}\n    provider_config: {{provider_type: scripted, extra_params: {{script: replies.yaml}}}}\n    prompt_template: {role}_prompt\n    output_artifact_type: {kind}\n    success_pattern: /done\n    order: {order}\n{extra}"
        )
    };
    let mut t =
        "name: fifty\nmax_iterations: 50\niteration_behavior: auto_iterate\nphases:\n".to_owned();
    t += &scripted(
        "c",
        "implementer",
        "code_diff",
        1,
        "    can_iterate: true\n",
    );
    t += &scripted("d", "reviewer_functional", "review_report", 2, "");
    project(&root, &[("replies.yaml", script.to_owned()), ("t.yaml", t)]);
    let home = root.join(".home");
    // Start with the disk's write-back queue empty: what earlier steps left to flush would
    // otherwise slow whichever iterations its flush falls on.
    let _ = Command::new("sync").status();
    let out = Command::new(bin())
        .args(run_args("t.yaml"))
        .env("AUTOWRKERS_HOME", &home)
        .current_dir(&root)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let folder = root.join(".autowrkers/executions");
    let exec = std::fs::read_dir(folder)
        .expect("dir")
        .flatten()
        .next()
        .expect("one")
        .path();
    let events = std::fs::read_to_string(exec.join("events.ndjson")).expect("events");
    // Each iteration's first phase start and last phase end.
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    for line in events.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("event");
        let ts =
            || chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().expect("ts")).expect("ts");
        match (v["type"].as_str(), v["phase_id"].as_str()) {
            (Some("workflow:phase_started"), Some("c")) => starts.push(ts()),
            (Some("workflow:phase_completed"), Some("d")) => ends.push(ts()),
            _ => {}
        }
    }
    assert_eq!((starts.len(), ends.len()), (50, 50), "fifty iterations");
    // Iterations 41–50 against 1–10, ten whole iterations each (the events' clock counts
    // microseconds; an iteration here takes one or two milliseconds).
    (ends[49] - starts[40]).num_microseconds().expect("us") as f64
        / (ends[9] - starts[0]).num_microseconds().expect("us") as f64
}

/// The median ratio of nine 50-iteration runs (this machine's noise moves one run's ratio by a
/// third), on the disk (in the bench's folders) and, where there is one, on a RAM disk: on an
/// ext4 without a journal each file a run replaces (an atomic write retires an inode) makes
/// the next new files of its block group dearer for a minute or more, which the RAM disk
/// separates from our own code's growth.
fn fifty_iterations(rows: &mut Vec<Row>) {
    let shm = Path::new("/dev/shm");
    let mut places = vec![("disk", scratch_base().to_path_buf())];
    if shm.is_dir() {
        places.push(("RAM disk", shm.to_path_buf()));
    }
    for (place, base) in places {
        let mut ratios: Vec<f64> = (0..9).map(|_| fifty_iterations_once(&base)).collect();
        ratios.sort_by(f64::total_cmp);
        let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        rows.push(Row {
            what: format!(
                "50 iterations: per-phase cost, last fifth ÷ first fifth, {place} (9 runs: {})",
                shown.join(", ")
            ),
            original: "—",
            ours: format!("{:.2}×", ratios[4]),
            goal: "≤ 1.2×",
        });
    }
}

/// Peak RSS of a one-phase run whose reply streams `mb` megabytes.
fn streaming_rss(rt: &tokio::runtime::Runtime, mb: usize) -> f64 {
    let server = rt.block_on(fake_openai::start());
    let tmp = scratch();
    let root = tmp.path().canonicalize().expect("canonical");
    let t = format!(
        "name: big\nphases:\n{}",
        phase(
            "a",
            "analyzer",
            &format!("big-{mb}"),
            "task_list",
            1,
            &server.url()
        )
    );
    project(&root, &[("t.yaml", t)]);
    // Past the default 8 MB artifact cap, so the whole reply is taken.
    std::fs::write(
        root.join(".autowrkers/config.yaml"),
        "verify:\n  test: \"true\"\noutput_limits:\n  artifact_bytes: 67108864\n",
    )
    .expect("config");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "RSS_KB=%M"])
        .arg(bin())
        .args(run_args("t.yaml"))
        .env("AUTOWRKERS_HOME", root.join(".home"))
        .current_dir(&root)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let kb: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("RSS_KB="))
        .expect("time's output")
        .trim()
        .parse()
        .expect("number");
    kb / 1024.0
}

/// The median wall time of 30 `--version` processes: the machine's speed at the moment, for
/// the reader to weigh the rows with (a virtual machine's drifts by half within minutes).
fn process_cost() -> Duration {
    median(
        (0..30)
            .map(|_| {
                let started = Instant::now();
                let out = Command::new(bin()).arg("--version").output().expect("run");
                assert!(out.status.success());
                started.elapsed()
            })
            .collect(),
    )
}

fn main() {
    // `cargo test --benches` runs this binary with --bench absent; measure only under cargo bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // `cargo bench --bench scale -- run|lookups|big|iterations|memory` measures one group.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |group: &str| only.as_deref().is_none_or(|o| o == group);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows = Vec::new();
    if wanted("run") || wanted("lookups") {
        let (home, one_run) = six_phase_run(&rt, &mut rows);
        if wanted("lookups") {
            ten_thousand(&home, &one_run, &mut rows);
        }
        if let Some(runs) = home.parent()
            && std::env::var_os("AUTOWRKERS_BENCH_KEEP").is_none()
        {
            let _ = std::fs::remove_dir_all(runs);
        }
    }
    if wanted("big") {
        big_project_run(&rt, &mut rows);
    }
    if wanted("iterations") {
        fifty_iterations(&mut rows);
    }
    if wanted("memory") {
        let five = streaming_rss(&rt, 5);
        let twenty = streaming_rss(&rt, 20);
        rows.push(Row {
            what: "peak RSS, one phase streaming a 20 MB reply (5 MB reply beside it)".into(),
            original: "—",
            ours: format!("{twenty:.1} MB ({five:.1} MB)"),
            goal: "≤ 40 MB, flat in reply size",
        });
    }
    println!(
        "\n(this machine now: `autowrkers --version` {:.2?} a process — a copy of the binary, as installed, runs every row; making a 200-byte file {:.0} µs in the bench's folders, {:.0} µs in a new folder of the temp folder itself)",
        process_cost(),
        file_cost(scratch_base()),
        file_cost(&std::env::temp_dir())
    );
    println!("\n| measure | original | ours | goal |\n|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.what, r.original, r.ours, r.goal);
    }
}
