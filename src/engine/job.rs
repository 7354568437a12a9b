//! What a phase run is given and what it gives back: the job the reconciler prepared, the
//! surroundings every phase shares, the outcome, and why a model could not answer.

use std::path::Path;
use std::time::Duration;

use super::events::EventBus;
use super::sandboxing::SandboxBase;
use crate::agent::Tally;
use crate::budget::{BudgetExceeded, BudgetGuard};
use crate::keys::Keys;
use crate::providers::HttpClient;
use crate::spec::{OutputLimits, PhaseStatus, ProviderConfig, WorkflowPhase, Workspace};
use crate::verify::Checks;

/// What is needed to run a phase, prepared by the reconciler.
pub(crate) struct PhaseJob<'a> {
    pub phase: &'a WorkflowPhase,
    pub iteration: u32,
    pub system_prompt: String,
    pub prompt: String,
    /// For the implementer in a worktree: the commit its run starts from.
    pub start_commit: Option<String>,
}

/// The surroundings every phase shares.
pub(crate) struct PhaseEnv<'a> {
    pub project: &'a Path,
    /// The project's repository, opened once by the pass; None when it is not one.
    pub repo: Option<&'a crate::git::ProjectRepo>,
    pub workspace: &'a Workspace,
    /// Opens when the workspace's worktree is there (a new run's is made beside its first
    /// phases): waited for before anything reads or runs in it.
    pub worktree: &'a crate::git::WorktreeGate,
    pub in_worktree: bool,
    pub bus: &'a EventBus,
    pub http: &'a HttpClient,
    pub keys: &'a Keys,
    pub budget: &'a BudgetGuard,
    pub checks: &'a Checks,
    pub sandbox: &'a SandboxBase,
    pub limits: &'a OutputLimits,
    /// The execution's folder (its phase logs).
    pub execution: &'a crate::store::ExecutionDir,
    /// The pass's state writes, waited for before a phase calls a model or starts a command.
    pub recorder: &'a super::recorder::Recorder,
}

/// How a phase run ended.
pub(crate) struct PhaseOutcome {
    pub status: PhaseStatus,
    pub passed: Option<bool>,
    pub artifact: Option<String>,
    pub tally: Tally,
    pub provider_used: String,
    pub model_used: String,
    pub error: String,
    pub duration: Duration,
    /// Set when the phase stopped because its next call did not fit a budget.
    pub budget: Option<BudgetExceeded>,
    /// For the implementer in a worktree: the branch tip holding its changes.
    pub commit: Option<String>,
}

impl PhaseOutcome {
    pub(super) fn failed(tally: Tally, provider: &ProviderConfig, error: String) -> Self {
        Self {
            status: PhaseStatus::Failed,
            passed: None,
            artifact: None,
            tally,
            provider_used: provider.provider_type.as_str().to_owned(),
            model_used: provider.model_name.clone(),
            error,
            duration: Duration::ZERO,
            budget: None,
            commit: None,
        }
    }
}

/// Why a model phase got no acceptable answer from one provider.
pub(super) enum Failure {
    /// The provider could not answer: the fallback may.
    Provider(crate::providers::ProviderError),
    /// The model answered, but never acceptably.
    Answer(String),
    /// The next call did not fit a budget: stop, do not fall back.
    Budget(BudgetExceeded),
}
