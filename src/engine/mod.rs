//! The reconciler (DESIGN §4): reads an execution's desired file and actual state, runs the
//! phases that are not up to date, and moves the status through the seed's Appendix B until
//! the execution is terminal, paused or awaiting approval.
//!
//! One module a job: `runner` (the `Engine`: create, start a pass), this file (the pass's loop,
//! safe points, iterations), `step` (one step's phases), `phase` / `agent_phase` (one phase
//! run, chat model or agent CLI), `observer` (its output), `record` (its result in state.json
//! and git), `hand_edit`, `control` (requests while running), `requests` (writing them), `launch` (a detached runner), `context` (prompts and
//! fingerprints), `sandboxing`, `estimate` (the dry run), `events`, `transitions`, `error`.

mod agent_phase;
mod cleanup;
mod configs;
mod context;
mod control;
mod desired;
mod error;
mod estimate;
pub mod events;
mod extract;
pub mod findings;
mod hand_edit;
mod job;
mod launch;
mod observer;
mod outcome;
mod phase;
mod record;
mod recorder;
mod requests;
mod runner;
mod sandboxing;
mod step;
mod syncer;
pub mod transitions;

pub use cleanup::Removed;
pub use context::sha256_hex;
pub use desired::Need;
pub use estimate::PhaseEstimate;
pub use events::{Event, EventBus, EventKind};
pub use extract::{extract_json, json_artifact};
pub use launch::detached_runner;
pub use outcome::{Cost, Outcome, Verdict, Verification, outcome};
pub use requests::{Applier, Control, RequestError, request, request_skip, submit};
pub use runner::{Engine, EngineError, StartOptions, Unready};

use self::transitions::{Trigger, transition};
use crate::prompts::PromptLibrary;
use crate::spec::{
    Decision, ExecutionRequest, IterationBehavior, PhaseStatus, WorkflowExecution, WorkflowPhase,
    WorkflowStatus,
};
use crate::store::ExecutionDir;
use crate::verify::Checks;

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One reconcile pass over one execution; holds the lock for its whole life.
pub(crate) struct Reconcile<'a> {
    pub engine: &'a Engine,
    pub dir: &'a ExecutionDir,
    pub bus: &'a EventBus,
    pub request: ExecutionRequest,
    pub state: WorkflowExecution,
    /// The project's repository, opened once for the whole pass (a `git2` repository reads
    /// its config files at each open); None when the project is not a git repository.
    pub repo: Option<crate::git::ProjectRepo>,
    /// Opens when the run's worktree is there: a new run's is made beside its first phases.
    pub worktree: crate::git::WorktreeGate,
    pub prompts: PromptLibrary,
    pub checks: Checks,
    pub sandbox: sandboxing::SandboxBase,
    pub limits: crate::spec::OutputLimits,
    pub budget: crate::budget::BudgetGuard,
    pub control: control::ControlWatch,
    /// The last problem reported about a hand edit of `execution.yaml`.
    pub bad_edit: Option<String>,
    /// The stat of `execution.yaml` when its control requests were last read: unchanged, it is
    /// not parsed again at the next safe point.
    pub request_seen: Option<crate::store::Stamp>,
    /// Writes `state.json` and makes the phases' commits while the next phases run.
    pub recorder: recorder::Recorder,
    /// Encodes `state.json` at each write, re-encoding only the entries that changed.
    pub encoder: crate::store::StateEncoder,
}

/// What a step decided.
enum StepEnd {
    Continue,
    Stop,
}

impl Reconcile<'_> {
    /// Applies `trigger` and saves the state; the index is told only when the status changed.
    fn set_status(&mut self, trigger: Trigger) -> Result<(), EngineError> {
        let changed = self.apply(trigger)?;
        // A status records no work of its own: what decides it (each phase's end, the
        // requests in `execution.yaml`, the budget) is on disk already, synced where it cost
        // money. Lost to a power cut, the state shows the step before, from which a resume
        // decides the same status again (a completed run completes with no model call), so
        // no status waits for the disk.
        let running = self.state.status == WorkflowStatus::Running;
        self.write_state(false)?;
        if !running {
            // A status that stops the pass is on disk before its event says so: whoever
            // follows the events reads the state next.
            self.recorder.flush()?;
        }
        if changed {
            self.engine.note_changed(self.dir);
        }
        Ok(())
    }

    /// Applies `trigger` to the state in memory (the caller saves); true when the status
    /// changed.
    fn apply(&mut self, trigger: Trigger) -> Result<bool, EngineError> {
        let before = self.state.status;
        self.state.status = transition(before, trigger)?;
        if self.state.status.is_terminal() {
            self.state.completed_at = Some(now());
        }
        Ok(self.state.status != before)
    }

    /// Saves the state durably; returns the bytes written, for the commit that records them.
    fn save(&mut self) -> Result<Vec<u8>, EngineError> {
        self.write_state(true)
    }

    /// Queues the state's write, `durable` or not, encoded by the pass's encoder (which
    /// re-encodes only what changed); returns the bytes of `state.json`. The record thread
    /// writes it while the pass goes on ([`recorder`]).
    fn write_state(&mut self, durable: bool) -> Result<Vec<u8>, EngineError> {
        self.recorder
            .write(&mut self.encoder, &mut self.state, durable)
    }

    /// Re-reads the control requests; returns true when the pass must stop here.
    fn at_safe_point(&mut self) -> Result<bool, EngineError> {
        let stamp = crate::store::Stamp::of(&self.dir.request_path());
        if stamp.is_none() || stamp != self.request_seen {
            match self.dir.read_request() {
                Ok(request) => {
                    self.request.control = request.control;
                    self.request_seen = stamp;
                }
                // A hand edit that broke the file: keep the last valid requests, say where.
                Err(e) => self.report_bad_edit(&e.to_string()),
            }
        }
        if self.request.control.cancel && !self.state.status.is_terminal() {
            self.control.announcer().cancel(self.bus);
            self.set_status(Trigger::Cancel)?;
            self.bus.emit(EventKind::Cancelled {});
            return Ok(true);
        }
        if self.request.control.pause && self.state.status == WorkflowStatus::Running {
            self.state.message = format!(
                "paused on request; `autowrkers resume {}` continues",
                short(&self.state.id)
            );
            self.set_status(Trigger::Pause)?;
            self.bus.emit(EventKind::Paused {
                reason: "pause requested".to_owned(),
            });
            return Ok(true);
        }
        Ok(false)
    }

    /// Tells once per distinct problem that `execution.yaml` cannot be read, with file, line
    /// and column, and that the last valid version still applies.
    fn report_bad_edit(&mut self, problem: &str) {
        if self.bad_edit.as_deref() == Some(problem) {
            return;
        }
        self.bad_edit = Some(problem.to_owned());
        self.bus.emit(EventKind::ControlNoticed {
            request: "invalid-edit".to_owned(),
            detail: format!("{problem}; keeping the last valid execution.yaml"),
        });
    }

    /// Runs until the execution is terminal, paused or waiting.
    pub async fn run(&mut self) -> Result<WorkflowStatus, EngineError> {
        loop {
            if self.at_safe_point()? {
                return Ok(self.state.status);
            }
            match self.state.status {
                s if s.is_terminal() => return Ok(s),
                WorkflowStatus::Paused if self.request.control.pause => {
                    return Ok(WorkflowStatus::Paused);
                }
                WorkflowStatus::Paused | WorkflowStatus::BudgetExceeded => {
                    self.state.message.clear();
                    self.set_status(Trigger::Resume)?;
                }
                WorkflowStatus::AwaitingApproval => {
                    match self.request.control.approvals.get(&self.state.iteration) {
                        Some(Decision::Approve) => {
                            self.set_status(Trigger::Approve)?;
                            self.next_iteration("approved".to_owned())?;
                        }
                        Some(Decision::Reject) => {
                            self.state.message =
                                format!("iteration {} rejected", self.state.iteration);
                            self.set_status(Trigger::Reject)?;
                            self.bus.emit(EventKind::Failed {
                                reason: self.state.message.clone(),
                                status: self.state.status,
                            });
                            return Ok(self.state.status);
                        }
                        None => return Ok(self.state.status),
                    }
                }
                WorkflowStatus::Pending => {
                    self.state.started_at = Some(now());
                    self.set_status(Trigger::Start)?;
                }
                _ => {}
            }
            if let StepEnd::Stop = self.run_iteration().await? {
                return Ok(self.state.status);
            }
        }
    }

    /// Moves to the next iteration. Not saved on its own: the next phase's start writes it,
    /// and a crash before that judges the finished iteration again, to the same verdict.
    fn next_iteration(&mut self, reason: String) -> Result<(), EngineError> {
        self.state.iteration += 1;
        self.bus.emit(EventKind::Iteration {
            iteration: self.state.iteration,
            reason,
        });
        Ok(())
    }

    /// Runs every step of the current iteration, then judges it.
    async fn run_iteration(&mut self) -> Result<StepEnd, EngineError> {
        let iteration = self.state.iteration;
        let template = self.request.template.clone();
        let start = if iteration > 1 {
            template.iteration_start_order()
        } else {
            None
        };
        for step in template.steps() {
            let step: Vec<&WorkflowPhase> = step
                .into_iter()
                .filter(|p| start.is_none_or(|o| p.order >= o))
                .collect();
            if step.is_empty() {
                continue;
            }
            if let StepEnd::Stop = self.run_step(&step, iteration).await? {
                return Ok(StepEnd::Stop);
            }
            if self.at_safe_point()? {
                return Ok(StepEnd::Stop);
            }
        }
        self.judge_iteration(iteration)
    }

    fn judge_iteration(&mut self, iteration: u32) -> Result<StepEnd, EngineError> {
        let rule = self.request.template.convergence.clone();
        let history = findings::track(self.dir, &self.state, &rule);
        let now = history.last().filter(|h| h.iteration == iteration);
        if let Some(h) = now {
            self.bus.emit(EventKind::Findings {
                iteration,
                new: h.new.clone(),
                open: h.open.clone(),
                resolved: h.resolved.clone(),
                reopened: h.reopened.clone(),
            });
        }
        let mut lacking = Vec::new();
        for run in self
            .state
            .phase_executions
            .iter()
            .filter(|r| r.iteration == iteration)
        {
            if run.status == PhaseStatus::Completed && run.passed == Some(false) {
                lacking.push(if run.phase_role.is_reviewer() {
                    format!("{} did not approve", run.phase_name)
                } else {
                    format!("{} failed", run.phase_name)
                });
            }
        }
        // The verifier is the final authority: a passing one with only findings below
        // `blocking_severity` left ends the loop, whatever the reviewers' verdicts.
        let this_iteration = |r: &&crate::spec::PhaseExecution| r.iteration == iteration;
        let verifier_passed = self
            .state
            .phase_executions
            .iter()
            .filter(this_iteration)
            .find(|r| r.phase_role == crate::spec::PhaseRole::Verifier)
            .is_some_and(|r| r.status == PhaseStatus::Completed && r.passed == Some(true));
        let only_reviewers_lacking = self
            .state
            .phase_executions
            .iter()
            .filter(this_iteration)
            .filter(|r| r.status == PhaseStatus::Completed && r.passed == Some(false))
            .all(|r| r.phase_role.is_reviewer());
        if !lacking.is_empty()
            && verifier_passed
            && only_reviewers_lacking
            && now.is_some_and(|h| !h.findings.iter().any(|f| f.blocking))
        {
            let reason = format!(
                "the verifier passed and no finding is {} or worse",
                rule.blocking_severity
            );
            self.bus.emit(EventKind::Converged { iteration, reason });
            lacking.clear();
        }
        if lacking.is_empty() {
            self.state.message.clear();
            self.set_status(Trigger::AllPhasesDone)?;
            self.bus.emit(EventKind::Completed {
                total_tokens: self.state.total_tokens,
                total_cost_usd: self.state.total_cost_usd,
                cost_incomplete: self.state.cost_incomplete,
                unknown_cost_calls: self.state.unknown_cost_calls,
            });
            return Ok(StepEnd::Stop);
        }
        let reason = lacking.join("; ");
        if let Some(stalled) = findings::stall(&history, &rule) {
            return self.stalled(iteration, &stalled);
        }
        if iteration >= self.request.template.max_iterations {
            self.state.message =
                format!("{reason} after {iteration} iteration(s) (max_iterations reached)");
            self.set_status(Trigger::ReviewFailedFinal)?;
            self.bus.emit(EventKind::Failed {
                reason: self.state.message.clone(),
                status: self.state.status,
            });
            return Ok(StepEnd::Stop);
        }
        let pause = match self.request.iteration_behavior {
            IterationBehavior::AutoIterate => false,
            IterationBehavior::PauseForApproval => true,
            IterationBehavior::Configurable => self.request.interactive_mode,
        };
        if pause {
            self.state.message = format!(
                "{reason}; `autowrkers workflow approve {}` starts iteration {}",
                short(&self.state.id),
                iteration + 1
            );
            self.set_status(Trigger::NeedsApproval)?;
            self.bus
                .emit(EventKind::ApprovalNeeded { iteration, reason });
            return Ok(StepEnd::Stop);
        }
        // Running stays running: the next iteration's save records both.
        if self.apply(Trigger::ReviewFailedIterate)? {
            self.engine.note_changed(self.dir);
        }
        self.next_iteration(reason)?;
        Ok(StepEnd::Continue)
    }
}

impl Reconcile<'_> {
    /// The loop no longer converges: say so, then pause (`failure_behavior: pause_notify`,
    /// `resume` tries one more iteration) or fail.
    fn stalled(
        &mut self,
        iteration: u32,
        stalled: &findings::Stall,
    ) -> Result<StepEnd, EngineError> {
        let kind = match stalled {
            findings::Stall::Plateau { .. } => "plateau",
            findings::Stall::Oscillation { .. } => "oscillation",
        };
        self.bus.emit(EventKind::Stalled {
            iteration,
            kind: kind.to_owned(),
            reason: stalled.to_string(),
        });
        self.state.message = format!("stalled after iteration {iteration}: {stalled}");
        if self.request.template.failure_behavior == crate::spec::FailureBehavior::PauseNotify
            && iteration < self.request.template.max_iterations
        {
            // Paused before the next iteration: `resume` runs it (the same one would be
            // judged the same way again).
            self.state.iteration += 1;
            self.state.message.push_str(&format!(
                "; `autowrkers resume {}` runs iteration {} anyway",
                short(&self.state.id),
                self.state.iteration
            ));
            self.set_status(Trigger::Pause)?;
            self.bus.emit(EventKind::Paused {
                reason: self.state.message.clone(),
            });
        } else {
            self.set_status(Trigger::ReviewFailedFinal)?;
            self.bus.emit(EventKind::Failed {
                reason: self.state.message.clone(),
                status: self.state.status,
            });
        }
        Ok(StepEnd::Stop)
    }
}

/// The first 8 characters of an id, as shown to people.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
