//! A sandboxed command's processes live in a PID namespace of their own, so that none of them
//! outlives the command. A process group is not a wall: `setsid` or a double `fork` leaves it,
//! and such a daemon kept running after its phase, and after its run, with the deleted worktree
//! as its folder. A namespace cannot be left, and when its first process (PID 1, its init)
//! ends the kernel kills every process still in it before that exit completes.
//!
//! `unshare(CLONE_NEWPID)` puts the caller's next child, not the caller, in the new namespace,
//! so [`split`] (between `fork` and `exec`, after the walls' `unshare`) makes three processes of
//! one: the process the runner started waits, in the runner's namespace, and exits as the
//! command did; its child is the namespace's init, which mounts the namespace's `/proc`, reaps
//! every orphan and ends when the command ends; the init's child (PID 2) goes on to `exec` the
//! command. The command is not PID 1 on purpose: the kernel drops every signal an init sends
//! itself or gets from inside its namespace without a handler for it, so a `kill $$` or a test
//! that sends itself `SIGTERM` would not die. Everything here is a system call: safe in the
//! child of a multi-threaded process. All three share the runner's process group: the runner's
//! kill of the group reaches each.
//!
//! [`end_with`], the other half of "nothing outlives its owner", applies to every command, in
//! every mode: the command dies with its runner.

use std::os::fd::RawFd;

/// Makes the namespace's init and the command's process, and returns in the latter; the
/// calling process becomes the waiting parent and never returns. `proc_read` is the Landlock
/// access the system's `/proc` has in `ruleset` (not yet applied), given to the namespace's own
/// `/proc` too: Landlock follows rules by inode, and a rule on the `/proc` below does not reach
/// one mounted over it. `Err` carries `errno`.
pub(super) fn split(ruleset: RawFd, proc_read: Option<u64>) -> Result<(), i32> {
    // The init's word on how the command ended: a wait status, written once.
    let mut report = [0; 2];
    // SAFETY: pipe2(2) fills the two-element array.
    if unsafe { libc::pipe2(report.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(errno());
    }
    let [heard, told] = report;
    // SAFETY: fork(2) in a single-threaded process (the child of the runner's spawn).
    let init = unsafe { libc::fork() };
    if init < 0 {
        return Err(errno());
    }
    if init > 0 {
        wait_as(init, heard);
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and affects this process; `heard`
    // is this process's copy of the pipe's end.
    unsafe {
        // The init dies with the waiting parent: a kill of the runner's child alone still ends
        // the namespace.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        libc::close(heard);
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
    if let Some(access) = proc_read.filter(|_| mounted) {
        allow(ruleset, c"/proc", access)?;
    }
    // SAFETY: as the fork above.
    let command = unsafe { libc::fork() };
    if command < 0 {
        return Err(errno());
    }
    if command > 0 {
        reap_until(command, told);
    }
    // SAFETY: this process's copy of the pipe's end, not used here.
    unsafe { libc::close(told) };
    Ok(())
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

/// Closes every descriptor but `keep`: the runner's pipes then end, and its spawn learns of
/// the `exec`, when the command's own copies close.
fn close_all_but(keep: RawFd) {
    let keep = keep as u32;
    // SAFETY: close_range(2) and close(2) only close this process's descriptors.
    unsafe {
        let below = keep == 0 || libc::syscall(libc::SYS_close_range, 0u32, keep - 1, 0u32) == 0;
        let above = libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32) == 0;
        if !(below && above) {
            for fd in (0..1024).filter(|fd| *fd != keep as i32) {
                libc::close(fd);
            }
        }
    }
}

/// Waits for `pid` (retrying on `EINTR`); its wait status, or `None` on another error.
fn wait_for(pid: libc::pid_t) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid(2) writes the status into a local.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Some(status);
        }
        if rc < 0 && errno() != libc::EINTR {
            return None;
        }
    }
}

/// The namespace's init: reaps every process that ends in the namespace (orphans come to it)
/// until `command` ends, writes its wait status to `told` and exits, which ends the namespace.
fn reap_until(command: libc::pid_t, told: RawFd) -> ! {
    close_all_but(told);
    name_self(c"autowrkers-init");
    let mut status = 0;
    loop {
        // SAFETY: waitpid(2) writes the status into a local.
        let rc = unsafe { libc::waitpid(-1, &mut status, 0) };
        if rc == command {
            break;
        }
        if rc < 0 && errno() != libc::EINTR {
            // SAFETY: _exit(2) ends this process without running anything of the runner's.
            unsafe { libc::_exit(127) }
        }
    }
    // SAFETY: writes the four bytes of a local; _exit as above.
    unsafe {
        libc::write(told, (&raw const status).cast(), 4);
        libc::_exit(0)
    }
}

/// The waiting parent: holds no descriptor but `heard`, waits for the namespace's `init`, and
/// ends the way the command ended (its exit code, or killed by the same signal) — or, when the
/// init died before it could tell (killed with the runner's group), the way the init did.
fn wait_as(init: libc::pid_t, heard: RawFd) -> ! {
    close_all_but(heard);
    name_self(c"autowrkers-wait");
    let Some(mut status) = wait_for(init) else {
        // SAFETY: _exit(2) ends this process without running anything of the runner's.
        unsafe { libc::_exit(127) }
    };
    let mut told = 0i32;
    // SAFETY: reads at most four bytes into a local.
    if unsafe { libc::read(heard, (&raw mut told).cast(), 4) } == 4 {
        status = told;
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

/// Names this process for `ps -e` and `top` (a fork of the runner is otherwise shown as one
/// more `autowrkers`). At most 15 bytes.
fn name_self(name: &std::ffi::CStr) {
    // SAFETY: prctl(PR_SET_NAME) reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0);
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::super::walls::Walls;
    use super::super::walls::tests::{folders, policy, status};

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

    /// Runs `sh -c script sh arg` behind the walls of the walls' tests' policy (the system's
    /// folders and `/proc` readable, no network) in a fresh worktree; how it ended.
    fn behind_walls(script: &str, arg: &str) -> std::process::ExitStatus {
        let (_tmp, work, scratch) = folders();
        let walls = Walls::plan(&policy(&work, &scratch)).unwrap().unwrap();
        status(walls, &work, script, &[arg]).unwrap()
    }

    #[test]
    fn the_command_ends_as_it_would_outside_even_by_its_own_signal() {
        // An init would not die of a signal it sends itself: the command is not the init.
        let status = behind_walls("kill -TERM $$; exit 7", "");
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
        assert_eq!(behind_walls("exit 7", "").code(), Some(7));
    }

    #[test]
    fn a_daemon_the_command_starts_ends_with_the_command() {
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
        // runs, checks that it is its namespace's first process after the init and sees that
        // namespace in /proc, and ends.
        let script = format!(
            "setsid sleep \"9$1\" </dev/null >/dev/null 2>&1 &
             n=0
             until grep -qs '{head}[{last}]' /proc/[0-9]*/cmdline; do
               n=$((n+1)); [ $n -lt 100000 ] || exit 3
             done
             [ $$ = 2 ] || exit 4
             grep -q '^2 (sh)' /proc/2/stat || exit 5
             ! grep -qs '{o_head}[{o_last}]' /proc/[0-9]*/cmdline || exit 6"
        );
        let status = behind_walls(&script, &pid);
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
