//! The runner's lock on one execution: an OS advisory lock (`flock`) on `lock` in the execution
//! folder. The kernel drops it when the holder dies, so a stale lock is taken over without
//! guessing from pids; the pid and host written inside only explain who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// A held lock; dropping it releases the execution.
#[derive(Debug)]
pub struct ExecutionLock {
    _file: File,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process reconciles this execution.
    #[error("execution is being run by another runner ({holder})")]
    Held {
        /// "pid N on HOST", as the holder wrote it.
        holder: String,
    },
    /// The lock file could not be opened.
    #[error("cannot open lock file: {0}")]
    Io(#[from] std::io::Error),
}

impl ExecutionLock {
    /// Takes the lock at `path` without waiting.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut written = String::new();
                let _ = file.read_to_string(&mut written);
                return Err(LockError::Held {
                    holder: describe_holder(&file, written.trim()),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        write!(file, "pid {} on {}", std::process::id(), hostname())?;
        file.flush()?;
        Ok(Self { _file: file })
    }

    /// True when some live process holds the lock at `path`. Asked of the kernel's lock table
    /// (`/proc/locks`), not by taking the lock for an instant: such a probe could make a
    /// runner that starts at that very moment find its execution taken. Without
    /// `/proc/locks`, the probe it is.
    pub fn is_held(path: &Path) -> bool {
        let Ok(file) = OpenOptions::new().read(true).open(path) else {
            return false;
        };
        if std::path::Path::new("/proc/locks").exists() {
            return lock_holder_pid(&file).is_some();
        }
        matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    }
}

/// "pid N on HOST": the kernel's word on who holds the lock (`/proc/locks`), with the host the
/// holder wrote. The file alone can be empty for an instant while the holder rewrites it.
fn describe_holder(file: &File, written: &str) -> String {
    let Some(pid) = lock_holder_pid(file) else {
        return if written.is_empty() {
            "a process that has not said its pid yet".to_owned()
        } else {
            written.to_owned()
        };
    };
    if written.starts_with(&format!("pid {pid} ")) {
        written.to_owned()
    } else {
        format!("pid {pid}")
    }
}

/// The pid holding a `flock` on `file`, from `/proc/locks` (matched by device and inode).
fn lock_holder_pid(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->" in field 1.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = fields.get(5)?.split(':');
        let maj = u32::from_str_radix(id.next()?, 16).ok()?;
        let min = u32::from_str_radix(id.next()?, 16).ok()?;
        let ino: u64 = id.next()?.parse().ok()?;
        (maj == major && min == minor && ino == meta.ino())
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::ExecutionLock;

    #[test]
    fn a_lock_held_by_another_process_is_seen_without_taking_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("lock");
        std::fs::write(&path, "").expect("write");
        assert!(!ExecutionLock::is_held(&path));
        let mut holder = std::process::Command::new("flock")
            .arg(&path)
            .args(["sh", "-c", "echo held; read _"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("flock");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("held");
        let held = ExecutionLock::is_held(&path);
        drop(holder.stdin.take());
        let _ = holder.wait();
        assert!(held, "held by another process");
        assert!(!ExecutionLock::is_held(&path), "released");
        let own = ExecutionLock::acquire(&path).expect("acquire");
        assert!(ExecutionLock::is_held(&path), "held by this process");
        drop(own);
    }
}
