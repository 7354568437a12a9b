//! The sandbox settings of one execution (the `--sandbox` override, the project's
//! `pass_env` and `sandbox_read_paths`, the places to keep unreadable), resolved per phase
//! into a [`SandboxSpec`].

use std::path::{Path, PathBuf};

use crate::sandbox::{SandboxMode, SandboxSpec};
use crate::spec::{ExecutionRequest, PhaseRole, ProjectConfig, WorkflowPhase};

/// What every phase of an execution shares about its sandbox.
#[derive(Debug, Clone)]
pub(crate) struct SandboxBase {
    /// `run --sandbox`, over each phase's own mode.
    pub mode: Option<SandboxMode>,
    /// The project's `pass_env`.
    pub pass_env: Vec<String>,
    /// The project's `sandbox_read_paths`.
    pub read_paths: Vec<PathBuf>,
    /// The user's project and the autowrkers home: never readable as a whole.
    pub protected: Vec<PathBuf>,
}

impl SandboxBase {
    /// The settings of `request` in a project with `config`; `home` is the autowrkers home.
    pub fn new(request: &ExecutionRequest, config: &ProjectConfig, home: &Path) -> Self {
        let project = PathBuf::from(&request.project_path);
        let read_paths = config
            .sandbox_read_paths
            .iter()
            .map(|p| expand_home(p))
            .collect();
        Self {
            mode: request.sandbox,
            pass_env: config.pass_env.clone(),
            read_paths,
            protected: vec![project, home.to_path_buf()],
        }
    }

    /// The mode `phase` runs its commands in.
    pub fn mode_of(&self, phase: &WorkflowPhase) -> SandboxMode {
        self.mode
            .or(phase.sandbox)
            .unwrap_or_else(|| SandboxMode::default_for(phase.role))
    }

    /// The sandbox of `phase` in `workdir`; None for a phase that starts no command (a chat
    /// model in a read-only role has only the file tools, confined in-process).
    pub fn spec_for(&self, phase: &WorkflowPhase, workdir: &Path) -> Option<SandboxSpec> {
        let uses_cli = phase
            .provider_config
            .chain()
            .any(|c| c.provider_type.is_agent_cli());
        let commands =
            uses_cli || matches!(phase.role, PhaseRole::Implementer | PhaseRole::Verifier);
        commands.then(|| SandboxSpec {
            mode: self.mode_of(phase),
            workdir: workdir.to_path_buf(),
            network: phase.sandbox_network,
            pass_env: self
                .pass_env
                .iter()
                .chain(&phase.pass_env)
                .cloned()
                .collect(),
            read_paths: self.read_paths.clone(),
            protected: self.protected.clone(),
        })
    }
}

/// `~/x` → `$HOME/x`.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}
