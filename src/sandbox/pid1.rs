//! A sandboxed command's processes live in a PID namespace of their own, so that none of them
//! outlives the command. A process group is not a wall: `setsid` or a double `fork` leaves it,
//! and such a daemon kept running after its phase, and after its run, with the deleted worktree
//! as its folder. A namespace cannot be left, and when its first process (PID 1) ends the kernel
//! kills every process still in it before that exit completes.
//!
//! `unshare(CLONE_NEWPID)` puts the caller's next child, not the caller, in the new namespace,
//! so [`split`] (between `fork` and `exec`, after the walls' `unshare`) forks once more: the
//! child becomes PID 1 and goes on to `exec` the command with a `/proc` of its namespace; the
//! parent — the process the runner started, in the runner's process group like its child — holds
//! no descriptor, waits for PID 1 and exits as it did. Everything here is a system call: safe in
//! the child of a multi-threaded process.

use std::os::fd::RawFd;

/// Forks the namespace's first process and returns in it; the calling process becomes the
/// waiting parent and never returns. `proc_read` is the Landlock access the system's `/proc`
/// has in `ruleset` (not yet applied), given to the namespace's own `/proc` too: Landlock
/// follows rules by inode, and a rule on the `/proc` below does not reach one mounted over
/// it. `Err` carries `errno`.
pub(super) fn split(ruleset: RawFd, proc_read: Option<u64>) -> Result<(), i32> {
    // SAFETY: fork(2) in a single-threaded process (the child of the runner's spawn).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(errno());
    }
    if pid > 0 {
        wait_as(pid);
    }
    // PID 1 dies with the waiting parent: a kill of the runner's child alone still ends the
    // command and, with it, the namespace.
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and affects this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
    // A `/proc` that shows the namespace's processes, under the numbers the command knows
    // them by (`$$`, `$!`), and no other process of the machine. Where the kernel refuses (a
    // `/proc` partly hidden by a container) the system's stays: the namespace still holds the
    // processes.
    // SAFETY: static NUL-terminated strings and a null data pointer, as mount(2) allows.
    let mounted = unsafe {
        libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    } == 0;
    match proc_read {
        Some(access) if mounted => allow(ruleset, c"/proc", access),
        _ => Ok(()),
    }
}

/// Makes the calling process (the child of the runner's spawn, before `exec`) die with
/// `runner`: a runner killed mid-command (`kill -9`, a crash, the machine's OOM killer) takes
/// the command with it, so a `resume` never finds the last pass's command still at work in
/// the worktree it is about to use. The kernel signals the death of the runner's thread that
/// spawned the command; runners spawn from the one thread of their runtime, which lives as
/// long as they do. Fails when the runner is already gone.
pub(super) fn end_with(runner: libc::pid_t) -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and affects this process;
    // getppid(2) has no preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != runner {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// `struct landlock_path_beneath_attr` of the kernel's UAPI.
#[repr(C, packed)]
struct PathBeneath {
    allowed_access: u64,
    parent_fd: i32,
}

/// Adds to `ruleset` a rule giving `access` beneath `path`, with system calls only.
fn allow(ruleset: RawFd, path: &std::ffi::CStr, access: u64) -> Result<(), i32> {
    /// `LANDLOCK_RULE_PATH_BENEATH`.
    const PATH_BENEATH: libc::c_int = 1;
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    let rule = PathBeneath {
        allowed_access: access,
        parent_fd: fd,
    };
    // SAFETY: the rule outlives the call; the kernel reads it and keeps nothing of it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            PATH_BENEATH,
            &rule as *const PathBeneath,
            0u32,
        )
    };
    let failed = (rc != 0).then(errno);
    // SAFETY: `fd` was opened above and is not used again.
    unsafe { libc::close(fd) };
    failed.map_or(Ok(()), Err)
}

/// The waiting parent: closes every descriptor (the runner's pipes then end, and its spawn
/// learns of the `exec`, when PID 1's copies close), waits for `pid`, and ends the way it
/// ended — the same exit code, or killed by the same signal.
fn wait_as(pid: libc::pid_t) -> ! {
    // SAFETY: close_range(2) and close(2) only close this process's descriptors.
    unsafe {
        if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
            for fd in 0..1024 {
                libc::close(fd);
            }
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waitpid(2) writes the status into a local.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        if rc < 0 && errno() != libc::EINTR {
            // SAFETY: _exit(2) ends this process without running anything of the runner's.
            unsafe { libc::_exit(127) }
        }
    }
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        // SAFETY: plain system calls on this process's own signal state.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), signal);
            libc::_exit(128 + signal)
        }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(libc::WEXITSTATUS(status)) }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::path::PathBuf;

    use super::super::walls::Walls;
    use super::super::{Policy, SandboxMode};

    /// Live processes of this machine whose command line is exactly `sleep <seconds>`.
    fn sleeping(seconds: &str) -> Vec<i32> {
        let wanted = format!("sleep\0{seconds}\0");
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted.as_bytes())
            })
            .collect()
    }

    #[test]
    fn a_daemon_the_command_starts_ends_with_the_command() {
        let tmp = tempfile::tempdir().unwrap();
        let (work, scratch) = (tmp.path().join("work"), tmp.path().join("scratch"));
        std::fs::create_dir(&work).unwrap();
        std::fs::create_dir(&scratch).unwrap();
        let policy = Policy {
            mode: SandboxMode::WorkspaceWrite,
            workdir: work.clone(),
            scratch,
            network: false,
            readable: ["/usr", "/bin", "/lib", "/lib64", "/etc", "/proc"]
                .iter()
                .map(PathBuf::from)
                .collect(),
            connect_ports: Vec::new(),
        };
        let walls = Walls::plan(&policy).unwrap().unwrap();
        // Unique to this test process. Neither the script (the shell's command line) nor grep's
        // pattern holds the number itself, so only the daemon's command line matches.
        let pid = std::process::id().to_string();
        let seconds = format!("9{pid}");
        let (head, last) = seconds.split_at(seconds.len() - 1);
        // A process of the machine, outside: its command line is not the command's to read
        // (a user's `curl -H 'Authorization: …'` in another terminal).
        let outside = format!("8{pid}");
        let (o_head, o_last) = outside.split_at(outside.len() - 1);
        let mut neighbour = std::process::Command::new("sleep")
            .arg(&outside)
            .spawn()
            .unwrap();
        // The daemon leaves the process group and the session; the command waits until it
        // runs, checks that it is its namespace's PID 1 and sees that namespace in /proc,
        // and ends.
        let script = format!(
            "setsid sleep \"9$1\" </dev/null >/dev/null 2>&1 &
             n=0
             until grep -qs '{head}[{last}]' /proc/[0-9]*/cmdline; do
               n=$((n+1)); [ $n -lt 100000 ] || exit 3
             done
             [ $$ = 1 ] || exit 4
             grep -q '^1 (sh)' /proc/1/stat || exit 5
             ! grep -qs '{o_head}[{o_last}]' /proc/[0-9]*/cmdline || exit 6"
        );
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", &script, "sh", &pid]).current_dir(&work);
        // SAFETY: `raise` makes system calls only.
        unsafe {
            cmd.pre_exec(move || {
                walls
                    .raise()
                    .map_err(|b| std::io::Error::from_raw_os_error(b.errno))
            });
        }
        let status = cmd.status().unwrap();
        neighbour.kill().unwrap();
        neighbour.wait().unwrap();
        let left = sleeping(&seconds);
        for pid in &left {
            // SAFETY: kill(2) of a process this test started.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        assert!(left.is_empty(), "outlived the command: {left:?}");
        assert_eq!(
            status.code(),
            Some(0),
            "the daemon ran, in the namespace, which shows no process outside it"
        );
    }
}
