//! The sandbox of every command a model causes (DESIGN §12): `run_command`, the verifier's
//! checks and agent CLIs. A [`Sandbox`] is built per phase run; each command it starts gets a
//! clean environment (see [`env`]) and, unless the mode is `full-access`, enters new user, mount
//! and PID namespaces (see [`pid1`]: nothing it starts outlives it), gets the repository's
//! `.git` hidden, and applies Landlock rules (and without network a seccomp filter, see
//! [`seccomp`]) between `fork` and `exec` (see [`walls`]). Whether the kernel can do that at
//! all is probed once through this binary's own helper (`autowrkers __sandbox`, see
//! [`helper`]); where it cannot, the phase fails closed with a message naming
//! `--sandbox full-access`.

mod env;
pub mod helper;
mod paths;
mod pid1;
mod scratch;
mod seccomp;
mod walls;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub use crate::spec::SandboxMode;
pub use env::clean_env;

/// The first argument that turns this binary into the sandbox helper.
pub const HELPER_ARG: &str = "__sandbox";

/// Why a sandbox cannot be set up here.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The kernel refused namespaces or Landlock.
    #[error(
        "the {mode} sandbox cannot start on this machine ({reason}); run with `--sandbox full-access` to run this phase's commands without a sandbox"
    )]
    Unavailable {
        /// The mode that was asked for.
        mode: &'static str,
        /// What the helper reported.
        reason: String,
    },
    /// The private scratch folder could not be made.
    #[error("cannot make the sandbox's private folder: {0}")]
    Scratch(#[from] std::io::Error),
}

/// What a phase's commands may touch, as the reconciler resolved it.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The mode.
    pub mode: SandboxMode,
    /// The worktree (or the user's checkout with `--in-place`).
    pub workdir: PathBuf,
    /// Whether commands may use the network.
    pub network: bool,
    /// Variables passed by name, on top of the allow-list.
    pub pass_env: Vec<String>,
    /// Extra folders commands may read.
    pub read_paths: Vec<PathBuf>,
    /// Folders that must stay unreadable even when under a readable one: the user's project
    /// (its `.git` and uncommitted files) and the autowrkers home.
    pub protected: Vec<PathBuf>,
}

/// The policy handed to the helper process on its command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Policy {
    pub mode: SandboxMode,
    pub workdir: PathBuf,
    pub scratch: PathBuf,
    pub network: bool,
    pub readable: Vec<PathBuf>,
    /// TCP ports a command may connect to while the network is otherwise off (an agent CLI's
    /// API). Loopback-only worlds cannot reach them, so these keep the host's network.
    #[serde(default)]
    pub connect_ports: Vec<u16>,
}

/// What one command adds to its phase's sandbox.
#[derive(Debug, Clone, Default)]
pub struct Extra<'a> {
    /// Variables on top of the clean environment (an agent CLI's own key and base URL).
    pub env: &'a [(String, String)],
    /// TCP ports it may connect to (an agent CLI's API).
    pub connect_ports: &'a [u16],
    /// Folders it may also read (an agent CLI's installation).
    pub read_paths: &'a [PathBuf],
}

/// One phase run's sandbox: a private HOME and TMPDIR (removed when dropped), the clean
/// environment, and the policy its commands run under. All three are made at the first
/// command (or [`Sandbox::home`]): a phase that runs none leaves nothing on disk.
#[derive(Debug)]
pub struct Sandbox {
    spec: SandboxSpec,
    helper: PathBuf,
    ready: OnceLock<Ready>,
}

/// What a sandbox's commands need: made once, at the first of them.
#[derive(Debug)]
struct Ready {
    policy: Policy,
    env: Vec<(OsString, OsString)>,
    _scratch: tempfile::TempDir,
}

impl Ready {
    fn prepare(spec: &SandboxSpec) -> Result<Self, SandboxError> {
        let scratch = scratch::create()?;
        let root = scratch.path().canonicalize()?;
        std::fs::create_dir_all(root.join("home"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        let env = clean_env(&root.join("home"), &root.join("tmp"), &spec.pass_env);
        let mut protected = spec.protected.clone();
        protected.extend(paths::always_protected());
        let mut extra = spec.read_paths.clone();
        extra.extend(paths::toolchains(&env));
        let policy = Policy {
            mode: spec.mode,
            workdir: spec.workdir.clone(),
            scratch: root,
            network: spec.network,
            readable: paths::readable_roots(&protected, &extra),
            connect_ports: Vec::new(),
        };
        Ok(Self {
            policy,
            env,
            _scratch: scratch,
        })
    }
}

impl Sandbox {
    /// Prepares the sandbox of `spec`; fails (closed) when its mode cannot be enforced here
    /// or its worktree is gone.
    pub fn new(spec: &SandboxSpec) -> Result<Self, SandboxError> {
        let mut spec = spec.clone();
        spec.workdir = spec.workdir.canonicalize()?;
        let sandbox = Self {
            spec,
            helper: helper_binary(),
            ready: OnceLock::new(),
        };
        if sandbox.spec.mode != SandboxMode::FullAccess {
            probe(&sandbox)?;
        }
        Ok(sandbox)
    }

    /// The mode its commands run in.
    pub fn mode(&self) -> SandboxMode {
        self.spec.mode
    }

    /// The private HOME of its commands (made now if no command made it yet).
    pub fn home(&self) -> Result<PathBuf, SandboxError> {
        Ok(self.ready()?.policy.scratch.join("home"))
    }

    /// The scratch folder, environment and policy, made at the first call.
    fn ready(&self) -> Result<&Ready, SandboxError> {
        if let Some(ready) = self.ready.get() {
            return Ok(ready);
        }
        let made = Ready::prepare(&self.spec)?;
        Ok(self.ready.get_or_init(|| made))
    }

    /// A command for `program` with `args`, in the worktree, with the clean environment,
    /// inside the sandbox unless the mode is full-access. Fails when the sandbox's walls cannot
    /// be planned (a path the kernel cannot be given).
    pub fn command(
        &self,
        program: &OsStr,
        args: &[OsString],
    ) -> std::io::Result<tokio::process::Command> {
        self.command_with(program, args, &Extra::default())
    }

    /// Like [`Self::command`], with what this one command adds (see [`Extra`]). The walls
    /// are raised in the child between `fork` and `exec` ([`walls::Walls::raise`]); a step
    /// that fails makes the spawn fail, and the command never starts. In every mode the
    /// command dies with the runner (see `pid1::end_with`).
    pub fn command_with(
        &self,
        program: &OsStr,
        args: &[OsString],
        extra: &Extra<'_>,
    ) -> std::io::Result<tokio::process::Command> {
        let ready = self
            .ready()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut cmd = tokio::process::Command::new(program);
        let runner = std::process::id() as libc::pid_t;
        // SAFETY: `end_with` makes system calls only.
        unsafe {
            cmd.pre_exec(move || pid1::end_with(runner));
        }
        if ready.policy.mode != SandboxMode::FullAccess {
            let mut policy = ready.policy.clone();
            policy.connect_ports.extend_from_slice(extra.connect_ports);
            policy.readable.extend(
                extra
                    .read_paths
                    .iter()
                    .filter_map(|p| p.canonicalize().ok()),
            );
            let walls = walls::Walls::plan(&policy)
                .map_err(|reason| std::io::Error::other(format!("sandbox: {reason}")))?;
            if let Some(walls) = walls {
                // SAFETY: `raise` makes system calls only: no allocation, no lock, nothing
                // the forked child of a multi-threaded process may not do.
                unsafe {
                    cmd.pre_exec(move || {
                        walls
                            .raise()
                            .map_err(|b| std::io::Error::from_raw_os_error(b.errno))
                    });
                }
            }
        }
        cmd.args(args)
            .env_clear()
            .envs(ready.env.iter().map(|(k, v)| (k, v)))
            .envs(extra.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&ready.policy.workdir);
        Ok(cmd)
    }
}

/// The binary that holds the helper: this one, or `AUTOWRKERS_SANDBOX_HELPER` when the library
/// runs inside another program (its unit tests).
fn helper_binary() -> PathBuf {
    std::env::var_os("AUTOWRKERS_SANDBOX_HELPER")
        .map(PathBuf::from)
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| PathBuf::from("autowrkers"))
}

/// Checks that the kernel can enforce a sandbox, by running `true` in one through the helper
/// (which says in words what failed): once per process, and not again in later processes of
/// the same binary on the same boot once it passed (a marker in the temp folder; it only spares
/// the probe — every command still raises its walls itself, and does not start when one fails).
fn probe(sandbox: &Sandbox) -> Result<(), SandboxError> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = RESULT.get_or_init(|| {
        let marker = probe_marker(&sandbox.helper, sandbox.spec.network);
        if marker.as_ref().is_some_and(|m| m.exists()) {
            return Ok(());
        }
        let ready = sandbox.ready().map_err(|e| e.to_string())?;
        let mut cmd = std::process::Command::new(&sandbox.helper);
        cmd.arg(HELPER_ARG)
            .arg(serde_json::to_string(&ready.policy).unwrap_or_default())
            .arg("true")
            .env_clear()
            .envs(ready.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&ready.policy.workdir)
            .stdin(std::process::Stdio::null());
        match cmd.output() {
            Ok(out) if out.status.success() => {
                if let Some(m) = marker {
                    let _ = std::fs::create_dir_all(m.parent().unwrap_or(Path::new("/")))
                        .and_then(|()| std::fs::write(&m, b""));
                }
                Ok(())
            }
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) => Err(format!("cannot start {}: {e}", sandbox.helper.display())),
        }
    });
    result.clone().map_err(|reason| SandboxError::Unavailable {
        mode: sandbox.spec.mode.as_str(),
        reason,
    })
}

/// `<temp>/autowrkers-<uid>/sandbox-ok-<boot>-<binary>-<net>`: the helper binary (its path and
/// stamp) passed the probe on this boot. `None` when the boot or the binary cannot be named.
fn probe_marker(helper: &Path, network: bool) -> Option<PathBuf> {
    use std::hash::{Hash, Hasher};
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (helper, crate::store::Stamp::of(helper)?).hash(&mut h);
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    Some(
        std::env::temp_dir()
            .join(format!("autowrkers-{uid}"))
            .join(format!(
                "sandbox-ok-{}-{:016x}-{}",
                boot.trim(),
                h.finish(),
                u8::from(network)
            )),
    )
}

/// True when `path` is `.git` or lies under a `.git` at any depth: nothing a model writes may
/// land there, in a worktree or in the user's checkout.
pub fn is_git_path(path: &Path) -> bool {
    path.components()
        .any(|c| c.as_os_str() == OsStr::new(".git"))
}

/// The runner's own folder in `workdir` (`.autowrkers`: its config, templates and the
/// executions' files) when the work happens in the project itself (`--in-place`, or a project
/// without git): never a model's to change — it could approve its own gate in `execution.yaml`
/// or replace the verification commands. In a worktree `.autowrkers` is only the repository's
/// code (it holds no `executions`), and `None`.
pub fn runner_folder(workdir: &Path) -> Option<PathBuf> {
    let folder = workdir.join(".autowrkers");
    folder.join("executions").is_dir().then_some(folder)
}

/// True when `relative` (a path inside `root`) lies in the runner's folder of `root`.
pub fn is_runner_path(root: &Path, relative: &Path) -> bool {
    let first = relative
        .components()
        .find(|c| !matches!(c, std::path::Component::CurDir));
    first.is_some_and(|c| c.as_os_str() == OsStr::new(".autowrkers"))
        && runner_folder(root).is_some()
}
