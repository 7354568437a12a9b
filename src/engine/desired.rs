//! Desired against actual, for every execution of a project (`reconcile`, `watch`): what an
//! execution's files ask for that its state does not show yet, and why. An execution a runner
//! holds is that runner's business; the others are planned here and run by a runner each.

use std::path::Path;

use super::context::prepare;
use super::runner::{Engine, EngineError};
use super::transitions::{Trigger, transition};
use crate::spec::{ExecutionRequest, PhaseRole, PhaseStatus, WorkflowExecution, WorkflowStatus};
use crate::store::{ExecutionDir, ExecutionLock, StoreError};

/// Why an execution needs a runner now.
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    /// A new `execution.yaml` (no state yet, or never started).
    New,
    /// `running`, but no runner holds it: a killed or lost runner.
    Interrupted,
    /// `paused`, and `execution.yaml` no longer asks for a pause.
    Resume,
    /// `execution.yaml` asks for a cancel.
    Cancel,
    /// Awaiting approval, and `execution.yaml` holds the decision.
    Decided,
    /// Stopped by its budget, which has since been raised or removed.
    BudgetRaised,
    /// Completed, and artifacts were edited by hand since.
    ArtifactsEdited(Vec<String>),
    /// Completed, `execution.yaml` edited since, and these phases' inputs (template, prompts,
    /// task) no longer match the runs that completed them.
    Stale(Vec<String>),
}

impl Need {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Self::New => "new execution.yaml: start".into(),
            Self::Interrupted => "running without a runner: resume".into(),
            Self::Resume => "pause withdrawn: resume".into(),
            Self::Cancel => "cancel requested: apply".into(),
            Self::Decided => "approval decided: apply".into(),
            Self::BudgetRaised => "budget raised: resume".into(),
            Self::ArtifactsEdited(ids) => format!(
                "artifacts edited ({}): re-run what reads them",
                ids.join(", ")
            ),
            Self::Stale(ids) => format!("inputs changed ({}): re-run them", ids.join(", ")),
        }
    }
}

impl Engine {
    /// What `dir` needs, or `None` when its state is what its files ask for (or a live runner
    /// is on it). A file that cannot be read is an error, for the caller to report and skip.
    pub fn need(&self, dir: &ExecutionDir) -> Result<Option<Need>, EngineError> {
        if crate::store::runner_alive(dir) {
            return Ok(None);
        }
        let request = dir.read_request()?;
        if !dir.state_path().exists() {
            return Ok(Some(Need::New));
        }
        let state = dir.read_state()?;
        use WorkflowStatus as S;
        if let Some(need) = requested(&request, &state) {
            return Ok(Some(need));
        }
        let need = match state.status {
            S::Pending => Some(Need::New),
            S::Running => Some(Need::Interrupted),
            S::Completed => {
                let edited = edited_artifacts(dir, &state);
                if !edited.is_empty() {
                    Some(Need::ArtifactsEdited(edited))
                } else if edited_after_state(dir) {
                    // Its desired file changed after the run last wrote its state: the
                    // fingerprints tell which phases that touches.
                    let stale = self.stale_phases(dir)?;
                    (!stale.is_empty()).then_some(Need::Stale(stale))
                } else {
                    None
                }
            }
            _ => None,
        };
        Ok(need)
    }

    /// What `execution.yaml` asks of a stopped execution that its state does not show yet:
    /// for the runner that just stopped it, which re-reads its files before letting go.
    pub fn requested_of(&self, dir: &ExecutionDir) -> Result<Option<Need>, EngineError> {
        Ok(requested(&dir.read_request()?, &dir.read_state()?))
    }

    /// The phases of a completed execution's last iteration whose fingerprint (definition,
    /// prompts, inputs) no longer matches the run that completed them.
    pub fn stale_phases(&self, dir: &ExecutionDir) -> Result<Vec<String>, EngineError> {
        let request = dir.read_request()?;
        let state = dir.read_state()?;
        let project = Path::new(&request.project_path);
        let config = self.project_config(project)?;
        let prompts = self.prompts(project);
        let workspace = state
            .workspace
            .as_ref()
            .map(|w| Path::new(&w.dir).to_path_buf())
            .filter(|d| d.exists())
            .unwrap_or_else(|| project.to_path_buf());
        let mut checks = crate::verify::resolve(config.verify.as_ref(), &workspace);
        checks.off = request.no_verify;
        let mut stale = Vec::new();
        for phase in &request.template.phases {
            let Some(run) = state.run(state.iteration, &phase.id) else {
                continue;
            };
            // The verifier's inputs are the worktree's files, gone once a run ends.
            if run.status != PhaseStatus::Completed || phase.role == PhaseRole::Verifier {
                continue;
            }
            let prepared = prepare(
                &request,
                &state,
                dir,
                &prompts,
                &checks,
                phase,
                state.iteration,
            )?;
            if prepared.fingerprint != run.fingerprint {
                stale.push(phase.id.clone());
            }
        }
        Ok(stale)
    }

    /// Makes `dir` ready for a runner to meet `need`: a stale completed execution is reopened
    /// (the others a runner takes as they are).
    pub fn ready_for(&self, dir: &ExecutionDir, need: &Need) -> Result<(), EngineError> {
        match need {
            Need::Stale(_) => self.reopen(dir, &need.describe()),
            _ => Ok(()),
        }
    }

    /// Reopens a completed execution whose desired files changed (`reason` says how), so the
    /// next runner re-runs what is stale; under the execution's lock.
    pub fn reopen(&self, dir: &ExecutionDir, reason: &str) -> Result<(), EngineError> {
        let _lock = ExecutionLock::acquire(&dir.lock_path()).map_err(StoreError::from)?;
        let mut state = dir.read_state()?;
        state.status = transition(state.status, Trigger::HandEdit)?;
        state.completed_at = None;
        state.message = format!("reopened: {reason}");
        dir.write_state(&state)?;
        self.note_changed(dir);
        Ok(())
    }
}

/// True when `execution.yaml` was written after `state.json` (the runner never writes it after
/// creating it: a person or a tool did).
fn edited_after_state(dir: &ExecutionDir) -> bool {
    let modified = |p: std::path::PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(dir.request_path()), modified(dir.state_path())) {
        (Some(request), Some(state)) => request > state,
        _ => false,
    }
}

/// The artifacts whose file no longer has the hash the runner recorded.
fn edited_artifacts(dir: &ExecutionDir, state: &crate::spec::WorkflowExecution) -> Vec<String> {
    state
        .artifacts
        .iter()
        .filter(|a| {
            dir.read_artifact(&a.file_path)
                .is_ok_and(|text| super::sha256_hex(text.as_bytes()) != a.sha256)
        })
        .map(|a| a.id.clone())
        .collect()
}

/// The control requests of `request` that `state` (not running, not pending) has not applied:
/// a cancel, a pause withdrawn, an approval decided, a budget raised.
fn requested(request: &ExecutionRequest, state: &WorkflowExecution) -> Option<Need> {
    use WorkflowStatus as S;
    let control = &request.control;
    match state.status {
        S::Pending | S::Running => None,
        s if control.cancel && !s.is_terminal() => Some(Need::Cancel),
        S::Paused if !control.pause => Some(Need::Resume),
        S::AwaitingApproval if control.approvals.contains_key(&state.iteration) => {
            Some(Need::Decided)
        }
        S::BudgetExceeded
            if request
                .budget_limit
                .is_none_or(|limit| limit > state.total_cost_usd) =>
        {
            Some(Need::BudgetRaised)
        }
        _ => None,
    }
}
