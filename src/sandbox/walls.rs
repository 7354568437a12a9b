//! The walls a sandboxed command runs behind, in two halves. [`Walls::plan`] works out
//! everything from the [`Policy`] — which namespaces, the id maps, each mount, the Landlock
//! ruleset (built, not yet applied) — where allocating and failing with a message are fine.
//! [`Walls::raise`] then applies them in the process that is about to execute the command, with
//! system calls only: it runs between `fork` and `exec` of the runner (a multi-threaded process,
//! whose child may not allocate or take a lock), or in the `__sandbox` helper.
//!
//! The order is fixed: new user, mount and PID namespaces, the id maps, the mount tree made
//! private, the worktree's `.git` and the runner's folder made unwritable, the forks that make
//! the namespace's init and the command's process (see `pid1`), `no_new_privs`, the Landlock
//! ruleset, and last — without network — the seccomp filter that makes `socket(2)` refuse every
//! family but `AF_UNIX` ([`Filter`]). Where Landlock cannot scope abstract UNIX sockets (before
//! ABI 6) or no filter is written for the architecture, a network namespace of the command's
//! own keeps it off the network instead. A failed step stops the command before it starts: the
//! sandbox fails closed.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope, path_beneath_rules,
};

use super::seccomp::Filter;
use super::{Policy, SandboxMode};

/// The Landlock ABI whose file-system rights the rules name (the least a sandbox needs).
const FS_ABI: ABI = ABI::V4;

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
    /// The Landlock access of the system's `/proc`, for the namespace's own (see `pid1`).
    proc_read: Option<u64>,
    filter: Option<Filter>,
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
        Self::plan_as(policy, Filter::network_off)
    }

    /// [`Self::plan`], with the network filter (when the network is off) from `filter`: a
    /// filter-less plan is how the namespace route is tested on a kernel that needs none.
    fn plan_as(policy: &Policy, filter: fn() -> Option<Filter>) -> Result<Option<Self>, String> {
        if policy.mode == SandboxMode::FullAccess {
            return Ok(None);
        }
        // A PID namespace of its own: no process the command starts outlives it (see `pid1`).
        let mut namespaces = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID;
        let closed = !policy.network && policy.connect_ports.is_empty();
        let scoped = closed
            .then(filter)
            .flatten()
            .and_then(|f| Some((ruleset(policy, true).ok()?, f)));
        let (ruleset, filter) = match scoped {
            Some((ruleset, filter)) => (ruleset, Some(filter)),
            None => {
                if closed {
                    namespaces |= libc::CLONE_NEWNET;
                }
                (ruleset(policy, false)?, None)
            }
        };
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
            ruleset,
            proc_read: readable(policy, Path::new("/proc"))
                .then(|| AccessFs::from_read(FS_ABI).bits()),
            filter,
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
        // Landlock forbids mounting once applied: the namespace's own `/proc` comes first.
        super::pid1::split(self.ruleset.as_raw_fd(), self.proc_read).map_err(|errno| Breach {
            step: "start the command's process namespace",
            errno,
        })?;
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
        if let Some(filter) = &self.filter {
            filter.install().map_err(|errno| Breach {
                step: "install the network filter",
                errno,
            })?;
        }
        Ok(())
    }
}

/// True when `policy` lets its commands read `path` (a rule on it or a folder above it).
fn readable(policy: &Policy, path: &Path) -> bool {
    policy.readable.iter().any(|r| path.starts_with(r))
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
/// for the policy's ports; no signal to a process outside the sandbox where the kernel can
/// refuse it (ABI 6). `scoped` also refuses abstract UNIX sockets made outside, which only
/// ABI 6 can: the network filter's half of keeping a command off the network. Anything else
/// the kernel cannot enforce in full is an error.
fn ruleset(policy: &Policy, scoped: bool) -> Result<OwnedFd, String> {
    let abi = FS_ABI;
    let err = |e: landlock::RulesetError| {
        format!("this kernel cannot enforce Landlock ABI 4 (filesystem and TCP rules): {e}")
    };
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?;
    ruleset = if scoped {
        ruleset.scope(Scope::from_all(ABI::V6)).map_err(err)?
    } else {
        ruleset
            .set_compatibility(CompatLevel::BestEffort)
            .scope(Scope::Signal)
            .map_err(err)?
            .set_compatibility(CompatLevel::HardRequirement)
    };
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
pub(super) mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::process::CommandExt;

    /// A workspace-write policy without network for `workdir`: the system's folders and
    /// `/proc` readable.
    pub(in crate::sandbox) fn policy(workdir: &Path, scratch: &Path) -> Policy {
        Policy {
            mode: SandboxMode::WorkspaceWrite,
            workdir: workdir.to_path_buf(),
            scratch: scratch.to_path_buf(),
            network: false,
            readable: ["/usr", "/bin", "/lib", "/lib64", "/etc", "/proc"]
                .iter()
                .map(std::path::PathBuf::from)
                .collect(),
            connect_ports: Vec::new(),
        }
    }

    /// A temp folder holding a worktree (`work`) and a scratch folder, both made.
    pub(in crate::sandbox) fn folders()
    -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let (work, scratch) = (tmp.path().join("work"), tmp.path().join("scratch"));
        std::fs::create_dir(&work).unwrap();
        std::fs::create_dir(&scratch).unwrap();
        (tmp, work, scratch)
    }

    /// Runs `script` in `workdir` behind `walls`; the spawn's error when they fail.
    fn run(walls: Walls, workdir: &Path, script: &str) -> std::io::Result<bool> {
        exit_code(walls, workdir, script).map(|c| c == Some(0))
    }

    /// Runs `script` in `workdir` behind `walls`; its exit code.
    fn exit_code(walls: Walls, workdir: &Path, script: &str) -> std::io::Result<Option<i32>> {
        status(walls, workdir, script, &[]).map(|s| s.code())
    }

    /// Runs `sh -c script sh args…` in `workdir` behind `walls`; how it ended.
    pub(in crate::sandbox) fn status(
        walls: Walls,
        workdir: &Path,
        script: &str,
        args: &[&str],
    ) -> std::io::Result<std::process::ExitStatus> {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", script, "sh"])
            .args(args)
            .current_dir(workdir);
        // SAFETY: `raise` makes system calls only.
        unsafe {
            cmd.pre_exec(move || {
                walls
                    .raise()
                    .map_err(|b| std::io::Error::from_raw_os_error(b.errno))
            });
        }
        cmd.status()
    }

    #[test]
    fn a_child_behind_the_walls_writes_only_its_worktree() {
        let (tmp, work, scratch) = folders();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
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
        let (tmp, work, scratch) = folders();
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

    /// A perl one-liner that exits 3 when it cannot make a socket of `family`/`kind`, 4 when it
    /// cannot send on it to `to`, 5 when it cannot connect there, 0 when it got through.
    fn perl_socket(family: &str, kind: &str, to: &str, verb: &str) -> String {
        format!(
            "perl -MSocket -e 'socket(S, {family}, {kind}, 0) or exit 3; \
             {verb} or exit({}); exit 0'",
            if verb.starts_with("send") { 4 } else { 5 }
        )
        .replace("TO", to)
    }

    /// The three ways out a network namespace used to close, tried behind `walls()`: a UDP
    /// datagram to a socket of this test, a connection to an abstract UNIX socket of this test,
    /// and a signal to this test's process. Returns the three exit codes.
    fn try_the_ways_out(walls: impl Fn() -> Walls, work: &Path) -> [Option<i32>; 3] {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_nonblocking(true).unwrap();
        let port = udp.local_addr().unwrap().port();
        let name = format!("autowrkers-walls-{}", std::process::id());
        let addr =
            <std::os::unix::net::SocketAddr as SocketAddrExt>::from_abstract_name(name.as_bytes())
                .unwrap();
        let unix = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        unix.set_nonblocking(true).unwrap();
        let send = perl_socket(
            "PF_INET",
            "SOCK_DGRAM",
            &format!("pack_sockaddr_in({port}, inet_aton(\"127.0.0.1\"))"),
            "send(S, \"x\", 0, TO)",
        );
        let connect = perl_socket(
            "PF_UNIX",
            "SOCK_STREAM",
            &format!("pack_sockaddr_un(\"\\0{name}\")"),
            "connect(S, TO)",
        );
        let codes = [
            exit_code(walls(), work, &send).unwrap(),
            exit_code(walls(), work, &connect).unwrap(),
            exit_code(walls(), work, &format!("kill -0 {}", std::process::id())).unwrap(),
        ];
        // A connection made is queued before `connect` returns. A datagram the command says it
        // sent is waited for (the kernel may hand it over a moment later); one it could not
        // send is not there.
        let mut buf = [0u8; 8];
        if codes[0] == Some(0) {
            udp.set_nonblocking(false).unwrap();
            udp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
        }
        let got_datagram = udp.recv(&mut buf).is_ok();
        let got_connection = unix.accept().is_ok();
        assert_eq!(
            (got_datagram, got_connection),
            (codes[0] == Some(0), codes[1] == Some(0)),
            "what arrived matches what the commands said: {codes:?}"
        );
        codes
    }

    #[test]
    fn without_network_no_socket_reaches_outside_and_no_signal_leaves() {
        let (_tmp, work, scratch) = folders();
        let closed = policy(&work, &scratch);
        // This kernel (Landlock ABI 7) takes the filter's route, without a network namespace.
        let walls = Walls::plan(&closed).unwrap().unwrap();
        assert!(walls.filter.is_some(), "the network filter is planned");
        assert_eq!(
            walls.namespaces & libc::CLONE_NEWNET,
            0,
            "no network namespace"
        );
        let [udp, unix, signal] =
            try_the_ways_out(|| Walls::plan(&closed).unwrap().unwrap(), &work);
        assert_eq!(udp, Some(3), "a UDP socket could be made");
        assert_eq!(unix, Some(5), "an abstract socket outside was reached");
        // Two walls stop it: the command's PID namespace (no process outside has a number
        // there) and, behind it, Landlock's signal scope.
        assert_ne!(signal, Some(0), "a signal reached a process outside");
        // Inside, a command still signals its own processes and makes its own UNIX sockets.
        assert!(run(Walls::plan(&closed).unwrap().unwrap(), &work, "kill -0 $$").unwrap());
        let pair = "perl -MSocket -e 'socketpair(A, B, AF_UNIX, SOCK_STREAM, 0) or exit 3'";
        assert!(run(Walls::plan(&closed).unwrap().unwrap(), &work, pair).unwrap());

        // The namespace route (older kernels) closes the same ways out.
        let namespaced = || Walls::plan_as(&closed, || None).unwrap().unwrap();
        assert_ne!(namespaced().namespaces & libc::CLONE_NEWNET, 0);
        let [udp, unix, _] = try_the_ways_out(namespaced, &work);
        assert!(matches!(udp, Some(3 | 4)), "a datagram left: {udp:?}");
        assert_eq!(unix, Some(5), "an abstract socket outside was reached");

        // With the network on, all of it gets through: the probes above can succeed.
        let open = Policy {
            network: true,
            ..closed.clone()
        };
        let open_walls = || Walls::plan(&open).unwrap().unwrap();
        assert!(open_walls().filter.is_none());
        let [udp, unix, _] = try_the_ways_out(open_walls, &work);
        assert_eq!((udp, unix), (Some(0), Some(0)));
    }
}
