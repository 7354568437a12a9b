//! Why an execution could not be started or reconciled: the engine's one error type, and the
//! phases that are not ready to run (what to set up, per provider of their chain).

use crate::git::GitError;
use crate::prompts::PromptError;
use crate::providers::ProviderError;
use crate::spec::SpecError;
use crate::store::StoreError;

use super::transitions::IllegalTransition;

/// Why an execution could not be started or reconciled.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A YAML file is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// No template has that name, or its file is invalid.
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    /// A prompt is missing or invalid.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// Prompts of the template are invalid (found before any call).
    #[error("invalid prompts:\n{}", .0.join("\n"))]
    Prompts(Vec<String>),
    /// Providers are not set up: each phase says what to set.
    #[error("providers are not set up:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    NotReady(Vec<Unready>),
    /// A provider could not be built.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Git failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The run's worktree, made on a thread of its own, could not be made (the text says why).
    #[error("{0}")]
    Worktree(String),
    /// A bug: a transition outside Appendix B.
    #[error(transparent)]
    Transition(#[from] IllegalTransition),
    /// The project folder cannot be worked on as it is; the text says what to do.
    #[error("{0}")]
    Project(String),
    /// A bug: a phase run was recorded before it was started.
    #[error("internal: no run {0} in state.json")]
    NoRun(String),
    /// A bug: a phase ran before the workspace was set up.
    #[error("internal: the workspace is not set up")]
    NoWorkspace,
    /// A bug: the thread writing the state and the commits stopped without an answer.
    #[error("internal: the thread writing the execution's state and commits stopped unexpectedly")]
    RecordThread,
}

/// A phase none of whose providers (its own and its fallbacks) can run here.
#[derive(Debug)]
pub struct Unready {
    /// "Name (id)" of the phase.
    pub phase: String,
    /// Why each provider of its chain cannot run.
    pub errors: Vec<ProviderError>,
}

impl Unready {
    /// True when some setup (a key, a URL, a CLI) would make it runnable.
    pub fn needs_setup(&self) -> bool {
        self.errors
            .iter()
            .any(|e| matches!(e, ProviderError::NeedsSetup(_)))
    }
}

impl std::fmt::Display for Unready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let errors: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        write!(f, "  {}: {}", self.phase, errors.join("; or "))
    }
}
