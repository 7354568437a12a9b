//! Shell commands in their own process group, inside the phase's sandbox: the verifier's checks
//! and the implementer's `run_command`. A timeout, a cancel or a dropped future kills the whole
//! group, so a phase never leaves a child running; in a sandbox, a process that left the group
//! (`setsid`) is still in the command's PID namespace and ends with it (see `sandbox::pid1`).

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

/// How long `kill_group` waits for a killed group to be gone.
const GROUP_EXIT_WAIT: Duration = Duration::from_secs(2);

/// Sends SIGKILL to every process of group `pgid`, then waits (at most two seconds) until no
/// process of the group is left alive, so a phase that ends has no process still running —
/// SIGKILL is delivered at once but a process takes a moment to die.
pub fn kill_group(pgid: i32) {
    if pgid <= 0 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    // SAFETY: signal 0 only asks whether the group has any process (zombies included).
    let any = unsafe { libc::kill(-pgid, 0) } == 0;
    let started = Instant::now();
    while any && group_has_living(pgid) && started.elapsed() < GROUP_EXIT_WAIT {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// True while a process of group `pgid` is alive (a zombie waiting to be reaped is not).
fn group_has_living(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            // pid (comm) state ppid pgrp …; comm may hold spaces or parentheses.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("");
            let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
            pgrp == Some(pgid) && state != "Z" && state != "X"
        })
}

/// Runs `command` with `/bin/sh -c` in the sandbox's worktree, with its clean environment and
/// walls, stdin from /dev/null, for at most `timeout`. The shell is named by its path, as
/// `system(3)` does: a search of the sandbox's PATH would try an `execve` in each folder.
pub async fn run_shell(
    command: &str,
    sandbox: &Sandbox,
    timeout: Duration,
    cap: usize,
) -> std::io::Result<CommandOutcome> {
    let started = Instant::now();
    let mut child = sandbox
        .command(OsStr::new("/bin/sh"), &["-c".into(), command.into()])?
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

#[cfg(test)]
mod tests {
    use super::{group_has_living, kill_group};
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_killed_group_is_gone_when_kill_group_returns() {
        // A leader with a grandchild in the background: both in the new group.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & exec sleep 30"])
            .process_group(0)
            .spawn()
            .expect("spawn");
        let pgid = child.id() as i32;
        assert!(group_has_living(pgid));
        kill_group(pgid);
        assert!(
            !group_has_living(pgid),
            "a process of the group was still alive"
        );
        let _ = child.wait();
    }
}
