//! Shell commands in their own process group, inside the phase's sandbox: the verifier's checks
//! and the implementer's `run_command`. A timeout, a cancel or a dropped future kills the whole
//! group, so a phase never leaves a child running.

use std::ffi::OsStr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::sandbox::Sandbox;

/// What a finished (or killed) command left.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome {
    /// Exit code; None when killed by a signal.
    pub exit_code: Option<i32>,
    /// True when the timeout killed it.
    pub timed_out: bool,
    /// The last `cap` bytes of stdout and stderr, interleaved as they came.
    pub output_tail: String,
    /// Wall time.
    pub duration: Duration,
}

/// Kills a process group when dropped (unless disarmed): a dropped phase never leaves a child.
pub struct GroupGuard(pub Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            kill_group(pgid);
        }
    }
}

/// Sends SIGKILL to every process of group `pgid`.
pub fn kill_group(pgid: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Runs `command` with `sh -c` in the sandbox's worktree, with its clean environment and
/// walls, stdin from /dev/null, for at most `timeout`.
pub async fn run_shell(
    command: &str,
    sandbox: &Sandbox,
    timeout: Duration,
    cap: usize,
) -> std::io::Result<CommandOutcome> {
    let started = Instant::now();
    let mut child = sandbox
        .command(OsStr::new("sh"), &["-c".into(), command.into()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pgid = child.id().map(|p| p as i32);
    let mut guard = GroupGuard(pgid);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, tx.clone()));
    }
    drop(tx);
    let collector = tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = rx.recv().await {
            buf.extend_from_slice(&chunk);
            if buf.len() > cap * 2 {
                buf.drain(..buf.len() - cap);
            }
        }
        buf
    });
    let (exit_code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status?.code(), false),
        Err(_) => (None, true),
    };
    // The leader is done (or out of time): whatever it left in the group goes too, which also
    // closes pipes a background grandchild still held.
    if let Some(pgid) = guard.0.take() {
        kill_group(pgid);
    }
    if timed_out {
        let _ = child.wait().await;
    }
    let buf = collector.await.unwrap_or_default();
    let start = buf.len().saturating_sub(cap);
    let mut output_tail = String::from_utf8_lossy(&buf[start..]).into_owned();
    if timed_out {
        output_tail.push_str(&format!("\n[killed after {}s]", timeout.as_secs()));
    }
    Ok(CommandOutcome {
        exit_code,
        timed_out,
        output_tail,
        duration: started.elapsed(),
    })
}

async fn pump(mut reader: impl AsyncRead + Unpin, tx: tokio::sync::mpsc::UnboundedSender<Vec<u8>>) {
    let mut chunk = vec![0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(chunk[..n].to_vec()).is_err() {
                    break;
                }
            }
        }
    }
}
