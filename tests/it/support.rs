//! Shared helpers: temp git repositories, the real binary with an isolated AUTOWRKERS_HOME,
//! and templates pointed at the fake server.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// The key the fake provider is given; no file or output may ever contain it.
pub const SECRET: &str = "sk-test-9f8e7d6c5b4a-secret";

/// A project in a temp git repository with one commit, plus a separate AUTOWRKERS_HOME.
pub struct Project {
    pub dir: TempDir,
    pub home: TempDir,
}

impl Project {
    /// A git repository holding `files`, committed.
    pub fn git(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = tempfile::tempdir().expect("home");
        for (path, content) in files {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(full, content).expect("write");
        }
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(dir.path(), &["add", "-A"]);
        git(
            dir.path(),
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "initial",
            ],
        );
        Self { dir, home }
    }

    /// A plain directory (not git) holding `files`.
    pub fn plain(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = tempfile::tempdir().expect("home");
        for (path, content) in files {
            std::fs::write(dir.path().join(path), content).expect("write");
        }
        Self { dir, home }
    }

    /// The project path, canonical.
    pub fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().expect("canonical")
    }

    /// Writes a file in the project (not committed).
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
        p
    }

    /// The binary, with this project's home and the fake key in the environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_autowrkers"));
        cmd.env("AUTOWRKERS_HOME", self.home.path())
            .env("FAKE_LLM_KEY", SECRET)
            .env("NO_COLOR", "1")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENROUTER_API_KEY")
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs the binary with `args` in the project and waits for it.
    pub async fn cli(&self, args: &[&str]) -> Ran {
        let mut cmd = self.cmd();
        cmd.args(args);
        run(cmd).await
    }

    /// Writes `template` as `t.yaml` and runs `run --task x --template t.yaml` with `args`.
    pub async fn run_template(&self, template: &str, args: &[&str]) -> Ran {
        self.write("t.yaml", template);
        let mut cmd = self.cmd();
        cmd.args(["run", "--task", "x", "--template", "t.yaml"])
            .args(args);
        run(cmd).await
    }

    /// The only execution folder of the project.
    pub fn execution(&self) -> PathBuf {
        let dir = self.path().join(".autowrkers/executions");
        let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("executions")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(all.len(), 1, "expected one execution in {}", dir.display());
        all.remove(0)
    }

    /// The only execution's state as the runner's own reader gives it (`read_state`:
    /// `state.json` with the phase runs and artifacts of `history/` put back in front).
    pub fn state(&self) -> serde_json::Value {
        let state = autowrkers::store::ExecutionDir::new(self.execution())
            .read_state()
            .expect("state");
        serde_json::to_value(state).expect("json")
    }
}

/// Runs git in `dir`, panicking on failure; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Output of a finished command, for assertions.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to the end (off the async runtime's threads).
pub async fn run(mut cmd: Command) -> Ran {
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("spawn"))
        .await
        .expect("join");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One phase of a test template, talking to the fake server as `model`.
pub fn phase(
    id: &str,
    role: &str,
    model: &str,
    url: &str,
    (prompt, artifact, pattern): (&str, &str, &str),
    order: u32,
    extra: &str,
) -> String {
    format!(
        "  - id: {id}\n    name: {id}\n    role: {role}\n    provider_config:\n      provider_type: openai_compatible\n      model_name: {model}\n      api_url: {url}\n      extra_params: {{api_key_env: FAKE_LLM_KEY}}\n    prompt_template: {prompt}\n    output_artifact_type: {artifact}\n    success_pattern: \"{pattern}\"\n    order: {order}\n{extra}"
    )
}

/// The default-shaped pipeline: analysis, plan, implement, two parallel reviews, verify.
pub fn pipeline_template(url: &str, header: &str) -> String {
    let mut t = format!(
        "name: test pipeline\nmax_iterations: 3\niteration_behavior: auto_iterate\n{header}phases:\n"
    );
    t += &phase(
        "phase-analysis",
        "analyzer",
        "analyzer",
        url,
        ("analyzer_prompt", "task_list", "/analysis-complete"),
        1,
        "",
    );
    t += &phase(
        "phase-docs",
        "planner",
        "planner",
        url,
        ("planner_prompt", "codebase_docs", "/docs-complete"),
        2,
        "",
    );
    t += &phase(
        "phase-implement",
        "implementer",
        "implementer",
        url,
        ("implementer_prompt", "code_diff", "/complete"),
        3,
        "    can_iterate: true\n    can_skip: false\n",
    );
    t += &phase(
        "phase-review-func",
        "reviewer_functional",
        "reviewer-a",
        url,
        (
            "reviewer_functional_prompt",
            "review_report",
            "/review-complete",
        ),
        4,
        "",
    );
    t += &phase(
        "phase-review-style",
        "reviewer_style",
        "reviewer-b",
        url,
        ("reviewer_style_prompt", "review_report", "/review-complete"),
        5,
        "    parallel_with: phase-review-func\n",
    );
    t += "  - id: phase-verify\n    name: phase-verify\n    role: verifier\n    provider_config: {provider_type: none}\n    output_artifact_type: verification_report\n    success_pattern: null\n    can_skip: false\n    order: 6\n";
    t
}

/// The pipeline of `pipeline_template`, stopping for approval after each iteration.
pub fn gated_template(url: &str) -> String {
    pipeline_template(url, "").replace("auto_iterate", "pause_for_approval")
}

impl Project {
    /// `run --task <task> --template <template> --no-realtime --json` plus `extra`: the exit
    /// code and the execution's id (from the last `workflow:result` line).
    pub async fn run_json(&self, task: &str, template: &str, extra: &[&str]) -> (i32, String) {
        let mut cmd = self.cmd();
        cmd.args([
            "run",
            "--task",
            task,
            "--template",
            template,
            "--no-realtime",
            "--json",
        ])
        .args(extra);
        let out = run(cmd).await;
        let last: serde_json::Value = serde_json::from_str(out.stdout.lines().last().unwrap_or(""))
            .unwrap_or_else(|_| panic!("no result line: {}\n{}", out.stdout, out.stderr));
        let id = last["execution_id"]
            .as_str()
            .expect("execution_id")
            .to_owned();
        (out.code, id)
    }
}

/// Every file under `dir`, recursively, as (path, bytes).
pub fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p, bytes));
        }
    }
    out
}

/// A fake server whose `implementer` model completes at once (for `implementer_only`).
pub async fn completing_server() -> (
    crate::fake_llm::FakeLlm,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use crate::fake_llm::{FakeLlm, Reply, Rule};
    FakeLlm::start(vec![Rule::new(
        "implementer",
        None,
        Reply::text("/complete"),
    )])
    .await
}

/// A one-phase template: an implementer on the fake server's `implementer` model.
pub fn implementer_only(url: &str, extra: &str) -> String {
    "name: x\nphases:\n".to_owned()
        + &phase(
            "impl",
            "implementer",
            "implementer",
            url,
            ("implementer_prompt", "code_diff", "/complete"),
            1,
            extra,
        )
}

/// Starts every command at once (stdout dropped) and waits for all: (exit code, stderr).
pub async fn run_all_at_once(cmds: Vec<Command>) -> Vec<(i32, String)> {
    let children: Vec<std::process::Child> = cmds
        .into_iter()
        .map(|mut c| {
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            c.spawn().expect("spawn")
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().expect("wait");
                (
                    out.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
            .collect()
    })
    .await
    .expect("join")
}

impl Project {
    /// The implementer's branch of the only execution.
    pub fn branch(&self) -> String {
        self.state()["workspace"]["branch"]
            .as_str()
            .expect("branch")
            .to_owned()
    }

    /// A file as committed on the only execution's branch.
    pub fn on_branch(&self, file: &str) -> String {
        git(
            &self.path(),
            &["show", &format!("{}:{file}", self.branch())],
        )
    }
}

/// The first command `text` suggests in backticks that starts `autowrkers PREFIX`, as the
/// arguments a user would type: each placeholder in `fills` (e.g. `("N", "1")`) replaced, quotes
/// dropped. Panics when the text suggests no such command.
pub fn hint(text: &str, prefix: &str, fills: &[(&str, &str)]) -> Vec<String> {
    let wanted = format!("`autowrkers {prefix}");
    let start = text
        .find(&wanted)
        .unwrap_or_else(|| panic!("no `autowrkers {prefix}…` suggested in:\n{text}"));
    let rest = &text[start + 1..];
    let command = &rest[..rest.find('`').expect("closing backtick")];
    command
        .split_whitespace()
        .skip(1)
        .map(|w| {
            let w = w.trim_matches('"');
            fills
                .iter()
                .find(|(from, _)| *from == w)
                .map_or(w, |(_, to)| to)
                .to_owned()
        })
        .collect()
}
