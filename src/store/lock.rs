//! The runner's lock on one execution: an OS advisory lock on `lock` in the execution folder,
//! an open-file-description lock (`fcntl(F_OFD_SETLK)`, Linux 3.15+), with a `flock` beside it
//! that only names the holder. The kernel drops both when the holder dies, so a stale lock is
//! taken over without guessing from pids; the pid and host written inside explain who holds
//! it. Whether it is held is asked of the kernel without taking it (`F_OFD_GETLK`), in one
//! consistent answer: reading `/proc/locks` instead, as this module once did, misses a held
//! lock whenever another lock in the system comes or goes between two of its reads (seen under
//! load: a live view that took its runner for dead and stopped following it).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// A held lock; dropping it (closing the file) releases the execution.
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
    /// The lock file could not be opened or locked.
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
        let mut whole = whole_file(libc::F_WRLCK);
        // SAFETY: fcntl on an fd we own, with a flock struct we own.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut whole) } != 0 {
            let e = std::io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
                return Err(LockError::Io(e));
            }
            return Err(held_by(&mut file));
        }
        // Also a `flock`, which no other runner can want once the lock above is ours: it puts
        // the holder's pid in `/proc/locks` for a refusal to name (an OFD lock shows none).
        // A runner of an older version holds only this one.
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(held_by(&mut file));
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        write!(file, "pid {} on {}", std::process::id(), hostname())?;
        file.flush()?;
        Ok(Self { _file: file })
    }

    /// Takes the lock at `path`, trying again for up to `within` while another process holds
    /// it: for an execution that has ended, whose runner may still be writing its last commit
    /// and removing its worktree for a few milliseconds after its `completed` event.
    pub fn acquire_within(path: &Path, within: std::time::Duration) -> Result<Self, LockError> {
        let until = std::time::Instant::now() + within;
        loop {
            match Self::acquire(path) {
                Err(LockError::Held { .. }) if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                taken => return taken,
            }
        }
    }

    /// True when some live process (this one included) holds the lock at `path`: asked of
    /// the kernel, without taking the lock — a probe that took it for an instant could make a
    /// runner starting at that very moment find its execution taken.
    pub fn is_held(path: &Path) -> bool {
        let Ok(file) = OpenOptions::new().read(true).open(path) else {
            return false;
        };
        let mut probe = whole_file(libc::F_WRLCK);
        // SAFETY: fcntl on an fd we own, with a flock struct we own; F_OFD_GETLK only reads.
        let asked = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut probe) };
        asked == 0 && i32::from(probe.l_type) != libc::F_UNLCK
    }
}

/// The refusal for a lock `file` someone else holds, naming them.
fn held_by(file: &mut File) -> LockError {
    let mut written = String::new();
    let _ = file.read_to_string(&mut written);
    LockError::Held {
        holder: describe_holder(file, written.trim()),
    }
}

/// A lock request of `kind` over the whole file.
fn whole_file(kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value of it.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// "pid N on HOST": the kernel's word on who holds the lock (the holder's `flock` in
/// `/proc/locks`, for this message only), with the host the holder wrote. The file alone can
/// be empty for an instant while the holder rewrites it.
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
    fn a_held_lock_is_seen_without_taking_it_and_refuses_a_second_runner() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("lock");
        std::fs::write(&path, "").expect("write");
        assert!(!ExecutionLock::is_held(&path));
        let own = ExecutionLock::acquire(&path).expect("acquire");
        // Asked through another open of the file, as another process asks.
        assert!(ExecutionLock::is_held(&path), "held");
        assert!(ExecutionLock::is_held(&path), "asking did not take it");
        match ExecutionLock::acquire(&path) {
            Err(super::LockError::Held { holder }) => {
                assert!(
                    holder.starts_with(&format!("pid {} on ", std::process::id())),
                    "{holder}"
                );
            }
            other => panic!("a second runner took the lock: {other:?}"),
        }
        drop(own);
        assert!(!ExecutionLock::is_held(&path), "released");
        assert!(ExecutionLock::acquire(&path).is_ok(), "taken again");
    }

    #[test]
    fn a_lock_held_by_another_process_is_seen_and_dropped_with_it() {
        // Another process: a python3 child taking the lock with fcntl itself.
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("lock");
        let mut child = holder(&path);
        assert!(ExecutionLock::is_held(&path), "held by the child");
        assert!(ExecutionLock::acquire(&path).is_err(), "refused");
        drop(child.stdin.take());
        let _ = child.wait();
        assert!(!ExecutionLock::is_held(&path), "gone with the child");
    }

    #[test]
    fn a_lock_waited_for_is_taken_once_its_holder_lets_go() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("lock");
        let mut child = holder(&path);
        let refused = ExecutionLock::acquire_within(&path, std::time::Duration::ZERO);
        assert!(
            matches!(refused, Err(super::LockError::Held { .. })),
            "{refused:?}"
        );
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                ExecutionLock::acquire_within(&path, std::time::Duration::from_secs(60))
            })
        };
        // The holder exits while the lock is (or is about to be) waited for.
        drop(child.stdin.take());
        let _ = child.wait();
        assert!(
            waiter.join().expect("waiter").is_ok(),
            "taken after the holder"
        );
    }

    /// A child process (python3) holding an OFD write lock on `path` until its stdin closes.
    fn holder(path: &std::path::Path) -> std::process::Child {
        use std::io::BufRead;
        let script = "import fcntl,struct,sys\nf=open(sys.argv[1],'a+')\nfcntl.fcntl(f,fcntl.F_OFD_SETLK,struct.pack('hhqqi',fcntl.F_WRLCK,0,0,0,0))\nprint('held',flush=True)\nsys.stdin.read()\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("held");
        assert_eq!(line.trim(), "held");
        child
    }
}
