//! One step of the reconciler: the phases of one `order` (joined by `parallel_with`) that are
//! not up to date are started together, run, and settled — recorded, and then a cancel, a
//! budget stop or a failure policy decides whether the pass goes on.

use std::path::Path;

use futures_util::future::join_all;

use super::context::{Prepared, prepare};
use super::control::{self, Interrupt};
use super::job::{PhaseEnv, PhaseJob, PhaseOutcome};
use super::phase::run_phase;
use super::record::completed_event;
use super::runner::EngineError;
use super::transitions::Trigger;
use super::{EventKind, Reconcile, StepEnd, now, short};
use crate::budget::BudgetExceeded;
use crate::spec::{FailureBehavior, PhaseExecution, PhaseStatus, WorkflowPhase, run_key};

/// A phase to run, with its rendered prompts.
type Job<'p> = (&'p WorkflowPhase, Prepared);

impl Reconcile<'_> {
    /// Runs the phases of one step that are not up to date, concurrently.
    pub(super) async fn run_step(
        &mut self,
        step: &[&WorkflowPhase],
        iteration: u32,
    ) -> Result<StepEnd, EngineError> {
        let jobs = self.pending_jobs(step, iteration)?;
        if jobs.is_empty() {
            return Ok(StepEnd::Continue);
        }
        self.start_runs(&jobs, iteration)?;
        let outcomes = self.launch(&jobs, iteration).await?;
        self.settle(&jobs, outcomes, iteration)
    }

    /// The phases of `step` to run now: not skipped on request, not up to date.
    fn pending_jobs<'p>(
        &mut self,
        step: &[&'p WorkflowPhase],
        iteration: u32,
    ) -> Result<Vec<Job<'p>>, EngineError> {
        let mut jobs = Vec::new();
        for phase in step.iter().copied() {
            let key = run_key(iteration, &phase.id);
            if self.request.control.skip.contains(&key) && phase.can_skip {
                if self
                    .state
                    .run(iteration, &phase.id)
                    .is_none_or(|r| r.status != PhaseStatus::Skipped)
                {
                    self.record_skip(phase, iteration, "skipped on request")?;
                }
                continue;
            }
            let prepared = prepare(
                &self.request,
                &self.state,
                self.dir,
                &self.prompts,
                &self.checks,
                phase,
                iteration,
            )?;
            let up_to_date = self.state.run(iteration, &phase.id).is_some_and(|r| {
                (r.status == PhaseStatus::Completed && r.fingerprint == prepared.fingerprint)
                    || r.status == PhaseStatus::Skipped
            });
            if up_to_date {
                if let Some(run) = self.state.run(iteration, &phase.id) {
                    self.bus.emit(completed_event(run, 0, true));
                }
                continue;
            }
            jobs.push((phase, prepared));
        }
        Ok(jobs)
    }

    /// Records each job as running (one write for the step, which its calls do not wait for:
    /// a kill before it lands finds the phase not started, as good for a restart) and
    /// announces it.
    fn start_runs(&mut self, jobs: &[Job<'_>], iteration: u32) -> Result<(), EngineError> {
        for (phase, prepared) in jobs {
            let run = PhaseExecution {
                id: run_key(iteration, &phase.id),
                phase_id: phase.id.clone(),
                phase_name: phase.name.clone(),
                phase_role: phase.role,
                provider_used: phase.provider_config.provider_type.as_str().to_owned(),
                model_used: phase.provider_config.model_name.clone(),
                model_served: None,
                status: PhaseStatus::Running,
                iteration,
                input_artifact_ids: prepared.input_artifact_ids.clone(),
                output_artifact_id: None,
                fingerprint: String::new(),
                tokens: Default::default(),
                cost_usd: None,
                calls: 0,
                unknown_cost_calls: 0,
                passed: None,
                started_at: Some(now()),
                completed_at: None,
                error_message: String::new(),
                commit: None,
            };
            self.upsert(run);
            self.state.current_phase_id = Some(phase.id.clone());
            self.bus.emit(EventKind::PhaseStarted {
                phase_id: phase.id.clone(),
                phase_name: phase.name.clone(),
                iteration,
                provider: phase.provider_config.provider_type.as_str().to_owned(),
                model: phase.provider_config.model_name.clone(),
            });
        }
        // Not yet a transition worth a disk wait: the phase's end is.
        self.write_state(false)?;
        Ok(())
    }

    /// Runs the jobs together; a cancel or a skip of one stops it (its process group killed).
    async fn launch(
        &self,
        jobs: &[Job<'_>],
        iteration: u32,
    ) -> Result<Vec<Result<PhaseOutcome, Interrupt>>, EngineError> {
        let workspace = self
            .state
            .workspace
            .clone()
            .ok_or(EngineError::NoWorkspace)?;
        let env = PhaseEnv {
            project: Path::new(&self.request.project_path),
            repo: self.repo.as_ref(),
            in_worktree: workspace.branch.is_some(),
            workspace: &workspace,
            worktree: &self.worktree,
            bus: self.bus,
            http: &self.engine.http,
            keys: &self.engine.keys,
            budget: &self.budget,
            checks: &self.checks,
            sandbox: &self.sandbox,
            limits: &self.limits,
            execution: self.dir,
            recorder: &self.recorder,
        };
        let job_list: Vec<PhaseJob<'_>> = jobs
            .iter()
            .map(|(phase, prepared)| PhaseJob {
                phase,
                iteration,
                system_prompt: prepared.system_prompt.clone(),
                prompt: prepared.prompt.clone(),
                start_commit: self.start_commit(phase, iteration),
            })
            .collect();
        Ok(join_all(job_list.iter().map(|job| {
            let key = run_key(iteration, &job.phase.id);
            let rx = self.control.subscribe();
            let announcer = self.control.announcer();
            let skippable = job.phase.can_skip;
            let env = &env;
            async move {
                tokio::select! {
                    outcome = run_phase(job, env) => Ok(outcome),
                    // Dropping the phase's future kills its process group.
                    why = control::interrupted(rx, key, skippable, (announcer, env.bus)) => Err(why),
                }
            }
        }))
        .await)
    }

    /// Records every outcome, then lets a cancel, a budget stop or the failure policy end the
    /// pass.
    fn settle(
        &mut self,
        jobs: &[Job<'_>],
        outcomes: Vec<Result<PhaseOutcome, Interrupt>>,
        iteration: u32,
    ) -> Result<StepEnd, EngineError> {
        let mut failed = Vec::new();
        let mut budget_stop = None;
        let mut cancelled = Vec::new();
        for ((phase, prepared), outcome) in jobs.iter().zip(outcomes) {
            let outcome = match outcome {
                Ok(o) => o,
                Err(Interrupt::Skip) => {
                    self.record_skip(phase, iteration, "skipped on request while running")?;
                    continue;
                }
                Err(Interrupt::Cancel) => {
                    cancelled.push(phase.name.clone());
                    self.record_cancelled(phase, iteration)?;
                    continue;
                }
            };
            if let Some(b) = &outcome.budget {
                budget_stop.get_or_insert_with(|| (phase.name.clone(), b.clone()));
            } else if outcome.status == PhaseStatus::Failed {
                failed.push((*phase, outcome.error.clone()));
            }
            self.record_outcome(phase, iteration, &prepared.fingerprint, outcome)?;
        }
        if !cancelled.is_empty() {
            self.state.message = format!("cancelled while {} ran", cancelled.join(" and "));
            self.set_status(Trigger::Cancel)?;
            self.bus.emit(EventKind::Cancelled {});
            return Ok(StepEnd::Stop);
        }
        if let Some((phase, b)) = budget_stop {
            return self.stop_for_budget(&phase, &b);
        }
        for (phase, error) in failed {
            if let StepEnd::Stop = self.apply_failure_policy(phase, iteration, &error)? {
                return Ok(StepEnd::Stop);
            }
        }
        Ok(StepEnd::Continue)
    }

    /// A phase stopped by a cancel: failed, its processes killed.
    fn record_cancelled(
        &mut self,
        phase: &WorkflowPhase,
        iteration: u32,
    ) -> Result<(), EngineError> {
        let mut run = self
            .state
            .run(iteration, &phase.id)
            .cloned()
            .ok_or_else(|| EngineError::NoRun(run_key(iteration, &phase.id)))?;
        run.status = PhaseStatus::Failed;
        run.error_message = "cancelled while running; its processes were killed".to_owned();
        run.completed_at = Some(now());
        self.bus.emit(completed_event(&run, 0, false));
        self.upsert(run);
        Ok(())
    }

    /// Stops the pass in `budget_exceeded`, saying which budget to raise — or, when not even one
    /// call of `phase` fits an untouched budget, that one call can cost more than it.
    fn stop_for_budget(&mut self, phase: &str, b: &BudgetExceeded) -> Result<StepEnd, EngineError> {
        let s = short(&self.state.id).to_owned();
        let raise = match b.scope.as_str() {
            "execution" => format!("`autowrkers budget set --scope execution --id {s} --limit N`"),
            "project" | "global" => {
                format!("`autowrkers budget set --scope {} --limit N`", b.scope)
            }
            // An agent CLI's run was capped by the tightest budget that applies.
            _ => "the tightest budget (`autowrkers budget status`)".to_owned(),
        };
        self.state.message = if b.spent == 0.0 && b.reserved == 0.0 {
            format!(
                "one call of {phase} can cost up to ${:.4}, more than the {} budget of ${:.2}: raise {raise}, or cap its answers lower with extra_params.max_tokens; then `autowrkers resume {s}`",
                b.needed, b.scope, b.limit
            )
        } else {
            format!("{b}; raise {raise}, then `autowrkers resume {s}`")
        };
        self.set_status(Trigger::BudgetExceeded)?;
        self.bus.emit(EventKind::Failed {
            reason: self.state.message.clone(),
            status: self.state.status,
        });
        Ok(StepEnd::Stop)
    }

    /// The template's `failure_behavior` for a phase that failed.
    fn apply_failure_policy(
        &mut self,
        phase: &WorkflowPhase,
        iteration: u32,
        error: &str,
    ) -> Result<StepEnd, EngineError> {
        match self.request.template.failure_behavior {
            FailureBehavior::SkipPhase if phase.can_skip => {
                self.record_skip(phase, iteration, &format!("skipped after failure: {error}"))?;
                Ok(StepEnd::Continue)
            }
            FailureBehavior::PauseNotify => {
                self.state.message = format!(
                    "{} failed: {error}; fix the cause, then `autowrkers resume {}`",
                    phase.name,
                    short(&self.state.id)
                );
                self.set_status(Trigger::Pause)?;
                self.bus.emit(EventKind::Paused {
                    reason: self.state.message.clone(),
                });
                Ok(StepEnd::Stop)
            }
            _ => {
                self.state.message = format!("{} failed: {error}", phase.name);
                self.set_status(Trigger::Error)?;
                self.bus.emit(EventKind::Failed {
                    reason: self.state.message.clone(),
                    status: self.state.status,
                });
                Ok(StepEnd::Stop)
            }
        }
    }
}
