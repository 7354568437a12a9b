//! Starting a runner that outlives its caller: the live view and `serve` both hand an
//! execution to `autowrkers resume --no-realtime` in a process group of its own, its output in
//! `logs/runner.log`. The runner holds the execution's lock; the caller only follows the files.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use crate::store::{ExecutionDir, StoreError};

/// Starts the detached runner of `dir` with `exe` (the running binary) and returns it; the
/// caller waits on it (or hands it to a thread that does) so it does not linger as a zombie.
pub fn detached_runner(exe: &std::path::Path, dir: &ExecutionDir) -> Result<Child, StoreError> {
    let logs = dir.logs_dir();
    let io = |e| StoreError::io(&logs, e);
    std::fs::create_dir_all(&logs).map_err(io)?;
    let log = std::fs::File::create(dir.runner_log_path()).map_err(io)?;
    let project = dir.project().map(|p| p.to_path_buf()).unwrap_or_default();
    Command::new(exe)
        .args(["resume", "--no-realtime", "--path"])
        .arg(&project)
        .arg(dir.id())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io)?)
        .stderr(log)
        // Its own process group: a Ctrl-C meant for the caller does not reach the runner.
        .process_group(0)
        .spawn()
        .map_err(io)
}
