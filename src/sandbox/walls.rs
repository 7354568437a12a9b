//! The walls a sandboxed command runs behind, in two halves. [`Walls::plan`] works out
//! everything from the [`Policy`] — which namespaces, the id maps, each mount, the Landlock
//! ruleset (built, not yet applied) — where allocating and failing with a message are fine.
//! [`Walls::raise`] then applies them in the process that is about to execute the command, with
//! system calls only: it runs between `fork` and `exec` of the runner (a multi-threaded process,
//! whose child may not allocate or take a lock), or in the `__sandbox` helper.
//!
//! The order is fixed: new user and mount namespaces (and a network namespace without network),
//! the id maps, the mount tree made private, the worktree's `.git` and the runner's folder made
//! unwritable, `no_new_privs`, and last the Landlock ruleset. A failed step stops the command
//! before it starts: the sandbox fails closed.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr,
    RulesetCreatedAttr, path_beneath_rules,
};

use super::{Policy, SandboxMode};

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

/// One `mount(2)` call, its strings ready.
#[derive(Debug)]
struct Mount {
    source: Option<CString>,
    target: CString,
    fstype: Option<CString>,
    flags: libc::c_ulong,
    data: Option<CString>,
}

/// Everything a sandboxed command's process does to itself before it executes the command.
#[derive(Debug)]
pub(crate) struct Walls {
    namespaces: libc::c_int,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    mounts: Vec<Mount>,
    ruleset: OwnedFd,
}

/// The step of [`Walls::raise`] that failed, and the system's error number.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Breach {
    /// What was being done.
    pub step: &'static str,
    /// `errno`.
    pub errno: i32,
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = std::io::Error::from_raw_os_error(self.errno);
        write!(f, "cannot {}: {e}", self.step)
    }
}

impl Walls {
    /// The walls of `policy`; `None` for `full-access`. Fails when the kernel cannot enforce
    /// Landlock ABI 4 (file system and TCP rules) or a path cannot be named to the kernel.
    pub fn plan(policy: &Policy) -> Result<Option<Self>, String> {
        if policy.mode == SandboxMode::FullAccess {
            return Ok(None);
        }
        let mut namespaces = libc::CLONE_NEWUSER | libc::CLONE_NEWNS;
        if !policy.network && policy.connect_ports.is_empty() {
            namespaces |= libc::CLONE_NEWNET;
        }
        // SAFETY: getuid/getgid only read the process's credentials.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        // Nothing mounted in the sandbox may reach the runner's namespace.
        let mut mounts = vec![Mount {
            source: None,
            target: c_path(Path::new("/"))?,
            fstype: None,
            flags: libc::MS_REC | libc::MS_PRIVATE,
            data: None,
        }];
        protect_git(&policy.workdir, &mut mounts)?;
        if let Some(folder) = super::runner_folder(&policy.workdir) {
            bind_read_only(&folder, &mut mounts)?;
        }
        Ok(Some(Self {
            namespaces,
            uid_map: format!("{uid} {uid} 1").into_bytes(),
            gid_map: format!("{gid} {gid} 1").into_bytes(),
            mounts,
            ruleset: ruleset(policy)?,
        }))
    }

    /// Applies the walls to this process, with system calls only (safe between `fork` and
    /// `exec`). The process must be single-threaded: a new user namespace requires it.
    pub fn raise(&self) -> Result<(), Breach> {
        let fail = |step| Breach {
            step,
            errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        };
        // SAFETY: unshare(2) changes only this process's namespaces.
        if unsafe { libc::unshare(self.namespaces) } != 0 {
            return Err(fail("create user namespaces"));
        }
        // setgroups is absent on old kernels; the maps are what matter.
        let _ = write_proc(c"/proc/self/setgroups", b"deny");
        write_proc(c"/proc/self/uid_map", &self.uid_map).map_err(|()| fail("write uid_map"))?;
        write_proc(c"/proc/self/gid_map", &self.gid_map).map_err(|()| fail("write gid_map"))?;
        for m in &self.mounts {
            let ptr = |o: &Option<CString>| o.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
            // SAFETY: every pointer is a NUL-terminated string owned by `self`, or null, as
            // mount(2) allows.
            let rc = unsafe {
                libc::mount(
                    ptr(&m.source),
                    m.target.as_ptr(),
                    ptr(&m.fstype),
                    m.flags,
                    ptr(&m.data).cast(),
                )
            };
            if rc != 0 {
                return Err(fail("mount"));
            }
        }
        // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes plain integers and affects this process.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(fail("set no_new_privs"));
        }
        // SAFETY: the ruleset fd is open and owned by `self`; flags 0.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                0u32,
            )
        };
        if rc != 0 {
            return Err(fail("apply the Landlock rules"));
        }
        Ok(())
    }
}

/// Writes `bytes` to a `/proc/self` file with system calls only.
fn write_proc(path: &std::ffi::CStr, bytes: &[u8]) -> Result<(), ()> {
    // SAFETY: a NUL-terminated path; the fd is ours and closed before returning.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(());
        }
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        if n != bytes.len() as isize {
            return Err(());
        }
    }
    Ok(())
}

fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("a path holds a NUL byte: {}", path.display()))
}

fn c_str(s: &str) -> Option<CString> {
    CString::new(s).ok()
}

/// Makes `<workdir>/.git` unwritable: a pointer file is bound read-only over itself, a
/// repository folder is covered by an empty read-only tmpfs (its config and objects unreadable).
fn protect_git(workdir: &Path, mounts: &mut Vec<Mount>) -> Result<(), String> {
    let git = workdir.join(".git");
    let Ok(meta) = std::fs::metadata(&git) else {
        return Ok(());
    };
    if meta.is_dir() {
        mounts.push(Mount {
            source: c_str("tmpfs"),
            target: c_path(&git)?,
            fstype: c_str("tmpfs"),
            flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data: c_str("size=4k,mode=0555"),
        });
        Ok(())
    } else {
        bind_read_only(&git, mounts)
    }
}

/// Binds `path` (a file or a folder) read-only over itself: readable, never written, no link
/// made in it.
fn bind_read_only(path: &Path, mounts: &mut Vec<Mount>) -> Result<(), String> {
    let target = c_path(path)?;
    mounts.push(Mount {
        source: Some(target.clone()),
        target: target.clone(),
        fstype: None,
        flags: libc::MS_BIND,
        data: None,
    });
    mounts.push(Mount {
        source: None,
        target,
        fstype: None,
        flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | inherited_flags(path),
        data: None,
    });
    Ok(())
}

/// The flags of the mount under `path` that a user namespace may not clear on a remount.
fn inherited_flags(path: &Path) -> libc::c_ulong {
    let Ok(c) = c_path(path) else {
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

/// The Landlock ruleset of `policy`, built but not applied: read and execute on the readable
/// roots, read (and in `workspace-write`, write) on the worktree, everything on the private
/// scratch folder and the harmless devices; TCP bind and connect refused without network but
/// for the policy's ports. Anything the kernel cannot enforce in full is an error.
fn ruleset(policy: &Policy) -> Result<OwnedFd, String> {
    let abi = ABI::V4;
    let err = |e: landlock::RulesetError| {
        format!("this kernel cannot enforce Landlock ABI 4 (filesystem and TCP rules): {e}")
    };
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
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
    let created = ruleset
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
        .map_err(err)?;
    Option::<OwnedFd>::from(created)
        .ok_or_else(|| "this kernel has no Landlock (ABI 4 is needed)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    fn policy(workdir: &Path, scratch: &Path) -> Policy {
        Policy {
            mode: SandboxMode::WorkspaceWrite,
            workdir: workdir.to_path_buf(),
            scratch: scratch.to_path_buf(),
            network: false,
            readable: ["/usr", "/bin", "/lib", "/lib64", "/etc"]
                .iter()
                .map(std::path::PathBuf::from)
                .collect(),
            connect_ports: Vec::new(),
        }
    }

    /// Runs `script` in `workdir` behind `walls`; the spawn's error when they fail.
    fn run(walls: Walls, workdir: &Path, script: &str) -> std::io::Result<bool> {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", script]).current_dir(workdir);
        // SAFETY: `raise` makes system calls only.
        unsafe {
            cmd.pre_exec(move || {
                walls
                    .raise()
                    .map_err(|b| std::io::Error::from_raw_os_error(b.errno))
            });
        }
        cmd.status().map(|s| s.success())
    }

    #[test]
    fn a_child_behind_the_walls_writes_only_its_worktree() {
        let tmp = tempfile::tempdir().unwrap();
        let (work, scratch, outside) = (
            tmp.path().join("work"),
            tmp.path().join("scratch"),
            tmp.path().join("outside"),
        );
        for d in [&work, &scratch, &outside] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::create_dir(work.join(".git")).unwrap();
        let walls = || Walls::plan(&policy(&work, &scratch)).unwrap().unwrap();
        assert!(run(walls(), &work, "echo ok > inside.txt").unwrap());
        assert!(work.join("inside.txt").exists());
        let escape = format!("echo no > {}/x.txt", outside.display());
        assert!(!run(walls(), &work, &escape).unwrap());
        assert!(
            !outside.join("x.txt").exists(),
            "wrote outside the worktree"
        );
        assert!(!run(walls(), &work, "echo no > .git/config").unwrap());
        assert!(!work.join(".git/config").exists(), "wrote in .git");
    }

    #[test]
    fn a_wall_that_cannot_be_raised_stops_the_command_before_it_starts() {
        let tmp = tempfile::tempdir().unwrap();
        let (work, scratch) = (tmp.path().join("work"), tmp.path().join("scratch"));
        std::fs::create_dir(&work).unwrap();
        std::fs::create_dir(&scratch).unwrap();
        let mut walls = Walls::plan(&policy(&work, &scratch)).unwrap().unwrap();
        walls.mounts.push(Mount {
            source: None,
            target: c_path(&tmp.path().join("missing")).unwrap(),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            data: None,
        });
        let spawned = run(walls, &work, "echo ran > ran.txt");
        assert!(spawned.is_err(), "the spawn failed: {spawned:?}");
        assert!(!work.join("ran.txt").exists(), "the command ran");
    }
}
