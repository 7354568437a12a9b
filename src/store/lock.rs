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
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(LockError::Held {
                    holder: holder.trim().to_owned(),
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

    /// True when some live process holds the lock at `path`.
    pub fn is_held(path: &Path) -> bool {
        let Ok(file) = OpenOptions::new().read(true).write(true).open(path) else {
            return false;
        };
        matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}
