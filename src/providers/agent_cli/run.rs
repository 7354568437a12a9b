//! One run of an agent CLI as a process: started in the phase's sandbox with its prompt on
//! stdin, its stream parsed line by line (what it spent kept up to date for the bill), and —
//! for the CLIs without a dollar cap of their own — behind the budget watchdog, which stops
//! the run at the first call that would pass what it may spend.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::watchdog::{Stopped, Watchdog};
use super::{CliResult, CliRun, Note, Plan, Spent, plan, upstream_url};
use crate::process::GroupGuard;
use crate::sandbox::Extra;
use crate::spec::ProviderType;

/// Why a run gave no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CliError {
    /// It could not start, or it failed: the CLI's own message where it has one.
    #[error("{0}")]
    Failed(String),
    /// The watchdog refused a call that would have passed what the run may spend.
    #[error(
        "stopped by the budget watchdog: ${spent:.4} spent + up to ${needed:.4} for the next call would pass the ${cap:.4} this run may spend",
        spent = .0.spent, needed = .0.needed, cap = .0.cap
    )]
    Budget(Stopped),
}

/// Runs the CLI to the end. `on_note` gets every progress line (and the raw lines for the log).
pub async fn run(
    run: &CliRun<'_>,
    on_note: &(dyn Fn(Note) + Send + Sync),
) -> Result<CliResult, CliError> {
    let watchdog = match (run.config.provider_type, run.max_budget_usd, run.price) {
        // Claude Code enforces --max-budget-usd itself.
        (ProviderType::ClaudeCode, _, _) | (_, None, _) | (_, _, None) => None,
        (_, Some(cap), Some(price)) => {
            let upstream = upstream_url(run.config)?;
            Some(
                Watchdog::start(&upstream, run.http.clone(), price, cap)
                    .await
                    .map_err(|e| CliError::Failed(format!("budget watchdog: {e}")))?,
            )
        }
    };
    let outcome = match &watchdog {
        Some(w) => tokio::select! {
            r = run_process(run, on_note, Some(w)) => r,
            // Returning drops the process's future: its whole group is killed.
            stopped = w.stopped() => Err(CliError::Budget(stopped)),
        },
        None => run_process(run, on_note, None).await,
    };
    if let Some(w) = &watchdog {
        fill_from_watchdog(run, &w.measured());
    }
    outcome
}

/// What the watchdog measured stands in for what the CLI did not report (Codex reports usage
/// only when its whole turn ends, and never the model).
fn fill_from_watchdog(run: &CliRun<'_>, measured: &super::Measured) {
    let Ok(mut s) = run.spent.lock() else {
        return;
    };
    if !s.reported && measured.calls > 0 {
        s.reported = true;
        s.usage = measured.usage;
    }
    if s.served_model.is_none() {
        s.served_model = measured.served_model.clone();
    }
}

async fn run_process(
    run: &CliRun<'_>,
    on_note: &(dyn Fn(Note) + Send + Sync),
    watchdog: Option<&Watchdog>,
) -> Result<CliResult, CliError> {
    let home = run
        .sandbox
        .home()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let Plan {
        program,
        args,
        env,
        prompt,
        api_port,
        mut parser,
    } = plan(run, &home, watchdog)?;
    let program = resolve(&program);
    let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
    let install = install_root(&program);
    let ports: Vec<u16> = api_port.into_iter().collect();
    let extra = Extra {
        env: &env,
        connect_ports: &ports,
        read_paths: std::slice::from_ref(&install),
    };
    let mut cmd = run
        .sandbox
        .command_with(program.as_os_str(), &args, &extra)
        .map_err(|e| CliError::Failed(format!("cannot start {}: {e}", program.display())))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        // Not found: the binary is elsewhere. Anything else failed inside the sandbox's set-up.
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => " (set extra_params.binary)",
            _ => " (while entering its sandbox)",
        };
        CliError::Failed(format!("cannot start {}: {e}{hint}", program.display()))
    })?;
    let pid = child.id();
    // Dropping this future (timeout, cancel, the watchdog) kills the CLI and all it started.
    let _guard = GroupGuard(pid.map(|p| p as i32));
    if let Ok(mut s) = run.spent.lock() {
        s.started = true;
    }
    if let Some(mut stdin) = child.stdin.take() {
        // Written from its own task: a CLI that streams before reading all of its prompt must
        // not deadlock against us. Closing stdin is the end of the prompt.
        tokio::spawn(async move {
            let _ = stdin.write_all(prompt.as_bytes()).await;
        });
    }
    on_note(Note::Raw(format!(
        "[{} started, pid {}]",
        program.display(),
        pid.unwrap_or(0)
    )));
    let stderr = child.stderr.take();
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut text).await;
        }
        text
    });
    if let Some(out) = child.stdout.take() {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            for note in parser.line(&line) {
                on_note(note);
            }
            if let Ok(mut s) = run.spent.lock() {
                *s = Spent {
                    started: true,
                    ..parser.spent()
                };
            }
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let stderr = stderr_task.await.unwrap_or_default();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        on_note(Note::Raw(format!("stderr: {line}")));
    }
    parser.finish(status.code()).map_err(|e| {
        let CliError::Failed(message) = e else {
            return e;
        };
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .filter(|l| !l.trim().is_empty())
            .take(3)
            .collect();
        CliError::Failed(if tail.is_empty() {
            message
        } else {
            format!(
                "{message} (stderr: {})",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )
        })
    })
}

/// `program` as a full path (looked up on PATH when it is a bare name), so the sandbox can let
/// its installation be read.
fn resolve(program: &Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_default()
        .unwrap_or_else(|| program.to_path_buf())
}

/// The folder a CLI is installed in: the outermost `node_modules` above its real path (npm
/// packages load their siblings and native binaries from there), else its own folder.
fn install_root(program: &Path) -> PathBuf {
    let real = program
        .canonicalize()
        .unwrap_or_else(|_| program.to_path_buf());
    real.ancestors()
        .filter(|a| a.file_name().is_some_and(|n| n == "node_modules"))
        .last()
        .or_else(|| real.parent())
        .map_or_else(|| real.clone(), Path::to_path_buf)
}
