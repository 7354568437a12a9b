//! Recording what phase runs did: artifacts on disk, `state.json`, events, and one commit per
//! phase run on the execution's ref.

use std::path::{Path, PathBuf};

use super::events::EventKind;
use super::{EngineError, Reconcile, now, sha256_hex};
use crate::git::{CommitJob, Recorded};
use crate::spec::{Artifact, PhaseExecution, PhaseStatus, WorkflowPhase};
use crate::store::ExecutionDir;

use super::job::PhaseOutcome;

impl Reconcile<'_> {
    /// Where an implementer run of `iteration` starts: the code the implementer of the latest
    /// earlier iteration left, else the base commit.
    pub(super) fn start_commit(&self, phase: &WorkflowPhase, iteration: u32) -> Option<String> {
        if phase.role != crate::spec::PhaseRole::Implementer {
            return None;
        }
        self.state
            .phase_executions
            .iter()
            .filter(|r| {
                r.phase_role == phase.role
                    && r.iteration < iteration
                    && r.status == PhaseStatus::Completed
            })
            .max_by_key(|r| r.iteration)
            .and_then(|r| r.commit.clone())
            .or_else(|| {
                self.state
                    .workspace
                    .as_ref()
                    .and_then(|w| w.base_commit.clone())
            })
    }

    pub(super) fn upsert(&mut self, run: PhaseExecution) {
        match self
            .state
            .phase_executions
            .iter_mut()
            .find(|r| r.id == run.id)
        {
            Some(existing) => *existing = run,
            None => self.state.phase_executions.push(run),
        }
    }

    pub(super) fn record_skip(
        &mut self,
        phase: &WorkflowPhase,
        iteration: u32,
        why: &str,
    ) -> Result<(), EngineError> {
        let mut run = self
            .state
            .run(iteration, &phase.id)
            .cloned()
            .unwrap_or_else(|| PhaseExecution {
                id: crate::spec::run_key(iteration, &phase.id),
                phase_id: phase.id.clone(),
                phase_name: phase.name.clone(),
                phase_role: phase.role,
                provider_used: String::new(),
                model_used: String::new(),
                model_served: None,
                status: PhaseStatus::Skipped,
                iteration,
                input_artifact_ids: Vec::new(),
                output_artifact_id: None,
                fingerprint: String::new(),
                tokens: Default::default(),
                cost_usd: Some(0.0),
                calls: 0,
                unknown_cost_calls: 0,
                passed: None,
                started_at: None,
                completed_at: None,
                error_message: String::new(),
                commit: None,
            });
        run.status = PhaseStatus::Skipped;
        run.passed = None;
        run.error_message = why.to_owned();
        run.completed_at = Some(now());
        self.bus.emit(completed_event(&run, 0, false));
        self.upsert(run);
        self.save()?;
        Ok(())
    }

    /// Stores a finished run: artifact file, state, events, and a commit on the execution's ref.
    pub(super) fn record_outcome(
        &mut self,
        phase: &WorkflowPhase,
        iteration: u32,
        fingerprint: &str,
        outcome: PhaseOutcome,
    ) -> Result<(), EngineError> {
        let run_id = crate::spec::run_key(iteration, &phase.id);
        let mut artifact_id = None;
        if let Some(content) = &outcome.artifact {
            let kind = phase.output_artifact_type;
            let rel = ExecutionDir::artifact_rel(iteration, &phase.id, kind.extension());
            self.dir.write_artifact(&rel, content)?;
            let artifact = Artifact {
                id: run_id.clone(),
                phase_execution_id: run_id.clone(),
                phase_id: phase.id.clone(),
                artifact_type: kind,
                iteration,
                file_path: rel.clone(),
                sha256: sha256_hex(content.as_bytes()),
                is_edited: false,
                created_at: now(),
            };
            self.state.artifacts.retain(|a| a.id != artifact.id);
            self.state.artifacts.push(artifact);
            artifact_id = Some(run_id.clone());
            self.bus.emit(EventKind::ArtifactCreated {
                artifact_id: run_id.clone(),
                artifact_type: kind,
                path: rel,
            });
        }
        let tally = &outcome.tally;
        self.state.total_tokens.add(&tally.usage);
        // The known part always counts; unknown calls are counted apart, never as $0.
        self.state.total_cost_usd += tally.known_usd;
        if tally.unknown_calls > 0 {
            self.state.cost_incomplete = true;
            self.state.unknown_cost_calls += tally.unknown_calls;
        }
        let mut run = self
            .state
            .run(iteration, &phase.id)
            .cloned()
            .ok_or_else(|| EngineError::NoRun(crate::spec::run_key(iteration, &phase.id)))?;
        run.status = outcome.status;
        run.passed = outcome.passed;
        run.provider_used = outcome.provider_used;
        run.model_used = outcome.model_used;
        run.model_served = tally.served_model.clone();
        run.tokens = tally.usage;
        run.cost_usd = tally.cost_usd;
        run.calls = tally.calls;
        run.unknown_cost_calls = tally.unknown_calls;
        run.output_artifact_id = artifact_id;
        run.error_message = outcome.error;
        run.commit = outcome.commit;
        run.completed_at = Some(now());
        // Only an accepted run may count as up to date later.
        run.fingerprint = if outcome.status == PhaseStatus::Completed {
            fingerprint.to_owned()
        } else {
            String::new()
        };
        self.bus.emit(completed_event(
            &run,
            outcome.duration.as_millis() as u64,
            false,
        ));
        let message = commit_message(&run);
        self.upsert(run);
        let saved = self.save()?;
        crate::store::crash_point("before-ref-commit");
        self.commit_saved(message, saved)
    }

    /// Commits the execution's files on its ref (git projects only), now: after the commits
    /// still queued.
    pub(crate) fn commit(&self, message: &str) -> Result<(), EngineError> {
        self.wait_for_writes()?;
        super::hand_edit::commit_snapshot(Path::new(&self.request.project_path), self.dir, message)
    }

    /// Queues the commit of the state just saved (`state`, its bytes) and the artifacts it
    /// records; the commit thread makes it while the next phase runs.
    fn commit_saved(&self, message: String, state: Vec<u8>) -> Result<(), EngineError> {
        let artifacts = self.state.artifacts.iter().map(|a| a.file_path.clone());
        let history = (1..=self.state.history_through).map(ExecutionDir::history_rel);
        self.queue_commit(
            message,
            Some(Recorded {
                state,
                files: artifacts.chain(history).collect(),
            }),
        )
    }

    /// Queues the commit of the execution's folder as it will be once the pass stops writing
    /// it (its last commit), for the commit thread to make while the pass ends; the pass
    /// waits for it ([`Self::wait_for_writes`]) before it lets go of the execution.
    pub(crate) fn commit_last(&self, message: String) -> Result<(), EngineError> {
        self.queue_commit(message, None)
    }

    /// Waits until every queued state write and commit is made; the first that failed, if
    /// any.
    pub(crate) fn wait_for_writes(&self) -> Result<(), EngineError> {
        self.recorder.finish()
    }

    fn queue_commit(&self, message: String, recorded: Option<Recorded>) -> Result<(), EngineError> {
        self.recorder.commit(CommitJob {
            project: PathBuf::from(&self.request.project_path),
            id: self.dir.id(),
            root: self.dir.root().to_path_buf(),
            message,
            recorded,
        })
    }
}

pub(super) fn completed_event(
    run: &PhaseExecution,
    duration_ms: u64,
    up_to_date: bool,
) -> EventKind {
    EventKind::PhaseCompleted {
        phase_id: run.phase_id.clone(),
        phase_name: run.phase_name.clone(),
        role: run.phase_role,
        iteration: run.iteration,
        status: run.status,
        passed: run.passed,
        tokens: run.tokens,
        cost_usd: run.cost_usd,
        duration_ms,
        up_to_date,
        error: run.error_message.clone(),
    }
}

fn commit_message(run: &PhaseExecution) -> String {
    let cost = run
        .cost_usd
        .map_or("cost unknown".to_owned(), |c| format!("${c:.4}"));
    format!(
        "{} (iteration {}): {:?} via {} {}\n\ntokens: {} in, {} out, {} cached\ncost: {cost}\n",
        run.phase_name,
        run.iteration,
        run.status,
        run.provider_used,
        run.model_used,
        run.tokens.input,
        run.tokens.output,
        run.tokens.cached_input
    )
}
