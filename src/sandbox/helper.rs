//! The helper side of the sandbox: `autowrkers __sandbox POLICY PROGRAM ARGS…`. It runs as its
//! own single-threaded process (the runner is multi-threaded, and a new user namespace needs a
//! single thread), sets up the walls in this order, then executes the command in place:
//!
//! 1. new user and mount namespaces, and a new network namespace unless the phase allows the
//!    network (it holds only a loopback that is down: every connect fails);
//! 2. the worktree's `.git` made read-only (a `gitdir:` pointer file) or hidden behind an empty
//!    read-only tmpfs (the repository folder, with `--in-place`); the runner's `.autowrkers`
//!    folder bound read-only where the work happens in the project itself;
//! 3. Landlock: read and execute on the readable roots, read (and in `workspace-write`, write)
//!    on the worktree, read and write on the private scratch folder and the harmless devices;
//!    TCP bind and connect refused without network. Landlock also keeps the command from
//!    reading other processes' memory and environment (`/proc/<pid>/environ` of the runner).
//!
//! Any step that fails stops the helper with exit code 125 and the reason on stderr, before
//! the command starts: the sandbox fails closed.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, path_beneath_rules,
};

use super::{HELPER_ARG, Policy, SandboxMode};

/// The exit code of a helper that could not build the sandbox.
pub const SETUP_FAILED: u8 = 125;

/// Devices any command may read and write.
const DEVICES: [&str; 7] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
];

/// When this process was started as the helper, builds the sandbox and executes the command
/// (never returning on success); returns None for a normal start. Call first thing in `main`.
pub fn main_if_helper() -> Option<u8> {
    let mut args = std::env::args_os();
    let _exe = args.next();
    if args.next()? != HELPER_ARG {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    let [policy, program, command_args @ ..] = rest.as_slice() else {
        eprintln!("autowrkers sandbox: usage: {HELPER_ARG} POLICY PROGRAM [ARGS…]");
        return Some(SETUP_FAILED);
    };
    let policy: Policy = match serde_json::from_slice(policy.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("autowrkers sandbox: bad policy: {e}");
            return Some(SETUP_FAILED);
        }
    };
    if let Err(reason) = enter(&policy) {
        eprintln!("autowrkers sandbox: {reason}");
        return Some(SETUP_FAILED);
    }
    let err = std::process::Command::new(program)
        .args(command_args)
        .exec();
    eprintln!(
        "autowrkers sandbox: cannot run {}: {err}",
        Path::new(program).display()
    );
    Some(127)
}

fn enter(policy: &Policy) -> Result<(), String> {
    if policy.mode == SandboxMode::FullAccess {
        return Ok(());
    }
    // SAFETY: getuid/getgid only read the process's credentials.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS;
    if !policy.network && policy.connect_ports.is_empty() {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare(2) changes only this (single-threaded) process's namespaces.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(format!(
            "cannot create user namespaces: {}",
            std::io::Error::last_os_error()
        ));
    }
    let write = |file: &str, text: String| {
        std::fs::write(file, text).map_err(|e| format!("cannot write {file}: {e}"))
    };
    // setgroups is absent on old kernels; the maps are what matter.
    let _ = std::fs::write("/proc/self/setgroups", "deny");
    write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
    // Nothing mounted here may reach the runner's namespace.
    mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
    protect_git(&policy.workdir)?;
    if let Some(folder) = super::runner_folder(&policy.workdir) {
        bind_read_only(&folder)?;
    }
    restrict(policy)
}

/// Makes `<workdir>/.git` unwritable: a pointer file is bound read-only over itself, a
/// repository folder is covered by an empty read-only tmpfs (its config and objects unreadable).
fn protect_git(workdir: &Path) -> Result<(), String> {
    let git = workdir.join(".git");
    let Ok(meta) = std::fs::metadata(&git) else {
        return Ok(());
    };
    let target = git.to_string_lossy().into_owned();
    if meta.is_dir() {
        mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some("size=4k,mode=0555"),
        )
    } else {
        bind_read_only(&git)
    }
}

/// Binds `path` (a file or a folder) read-only over itself: readable, never written, no link
/// made in it.
fn bind_read_only(path: &Path) -> Result<(), String> {
    let target = path.to_string_lossy().into_owned();
    mount(Some(&target), &target, None, libc::MS_BIND, None)?;
    let locked = inherited_flags(path);
    mount(
        None,
        &target,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked,
        None,
    )
}

/// The flags of the mount under `path` that a user namespace may not clear on a remount.
fn inherited_flags(path: &Path) -> libc::c_ulong {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs writes into a zeroed struct we own; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let pairs = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    pairs
        .iter()
        .filter(|(st_flag, _)| st.f_flag & st_flag != 0)
        .fold(0, |acc, (_, ms)| acc | ms)
}

fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let c = |s: &str| CString::new(s).map_err(|e| e.to_string());
    let source_c = source.map(c).transpose()?;
    let target_c = c(target)?;
    let fstype_c = fstype.map(c).transpose()?;
    let data_c = data.map(c).transpose()?;
    let ptr = |o: &Option<CString>| o.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is a valid C string or null, as mount(2) allows.
    let rc = unsafe {
        libc::mount(
            ptr(&source_c),
            target_c.as_ptr(),
            ptr(&fstype_c),
            flags,
            ptr(&data_c).cast(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot mount {target}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Applies the Landlock rules; anything short of full enforcement is a failure.
fn restrict(policy: &Policy) -> Result<(), String> {
    let abi = ABI::V4;
    let err = |e: landlock::RulesetError| format!("Landlock: {e}");
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?;
    if !policy.network {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(err)?;
    }
    let workdir_access = if policy.mode == SandboxMode::WorkspaceWrite {
        AccessFs::from_all(abi)
    } else {
        AccessFs::from_read(abi)
    };
    let status = ruleset
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(
            &policy.readable,
            AccessFs::from_read(abi),
        ))
        .map_err(err)?
        .add_rules(path_beneath_rules([&policy.workdir], workdir_access))
        .map_err(err)?
        .add_rules(path_beneath_rules(
            [&policy.scratch],
            AccessFs::from_all(abi),
        ))
        .map_err(err)?
        .add_rules(path_beneath_rules(DEVICES, AccessFs::from_all(abi)))
        .map_err(err)?
        .add_rules(path_beneath_rules(
            ["/dev/shm", "/dev/pts"],
            AccessFs::from_all(abi),
        ))
        .map_err(err)?
        // Port rules only mean something while TCP is handled (network off).
        .add_rules(
            policy
                .connect_ports
                .iter()
                .filter(|_| !policy.network)
                .map(|p| Ok::<_, landlock::RulesetError>(NetPort::new(*p, AccessNet::ConnectTcp))),
        )
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(format!(
            "this kernel cannot enforce Landlock ABI 4 (filesystem and TCP rules): {:?}",
            status.ruleset
        ));
    }
    Ok(())
}
