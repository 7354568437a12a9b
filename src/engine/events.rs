//! The one event stream (DESIGN §9): every subscriber — `events.ndjson`, `--json` output and
//! the terminal view — receives the same typed events, serialized the same way.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::spec::{ArtifactType, PhaseRole, PhaseStatus, TokenUsage, WorkflowStatus};
use crate::store::ExecutionDir;

/// One thing that happened to an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 time.
    pub ts: String,
    /// The execution.
    pub execution_id: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The seed's event names (§5.6) plus `workflow:paused`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    /// Reconciling started (also on resume).
    #[serde(rename = "workflow:started")]
    Started {
        /// The task.
        task: String,
        /// Template name.
        template: String,
        /// Where the code is changed.
        workspace: String,
        /// True when this continues an earlier run.
        resumed: bool,
    },
    /// A phase run began.
    #[serde(rename = "workflow:phase_started")]
    PhaseStarted {
        /// Phase id.
        phase_id: String,
        /// Phase name.
        phase_name: String,
        /// Iteration.
        iteration: u32,
        /// Provider type.
        provider: String,
        /// Model requested.
        model: String,
    },
    /// A line of a phase's streamed output or a tool it used.
    #[serde(rename = "workflow:phase_progress")]
    PhaseProgress {
        /// Phase id.
        phase_id: String,
        /// Iteration.
        iteration: u32,
        /// The line.
        text: String,
    },
    /// A phase run ended (or was found up to date).
    #[serde(rename = "workflow:phase_completed")]
    PhaseCompleted {
        /// Phase id.
        phase_id: String,
        /// Phase name.
        phase_name: String,
        /// Its role.
        role: PhaseRole,
        /// Iteration.
        iteration: u32,
        /// Outcome.
        status: PhaseStatus,
        /// Reviewer verdict or verifier result.
        #[serde(skip_serializing_if = "Option::is_none")]
        passed: Option<bool>,
        /// Tokens of this run.
        tokens: TokenUsage,
        /// USD of this run; null when unknown.
        cost_usd: Option<f64>,
        /// Wall time.
        duration_ms: u64,
        /// True when the phase was not called because its last run is still up to date.
        up_to_date: bool,
        /// Why it failed.
        #[serde(skip_serializing_if = "String::is_empty", default)]
        error: String,
    },
    /// The provider says another model answered than the one requested.
    #[serde(rename = "workflow:model_mismatch")]
    ModelMismatch {
        /// Phase id.
        phase_id: String,
        /// Iteration.
        iteration: u32,
        /// Model in the template.
        requested: String,
        /// Model the provider reported.
        served: String,
    },
    /// A provider failed for good and the phase moved to its `fallback_provider`.
    #[serde(rename = "workflow:provider_fallback")]
    ProviderFallback {
        /// Phase id.
        phase_id: String,
        /// Iteration.
        iteration: u32,
        /// The provider (type and model) that failed.
        from: String,
        /// The fallback tried next.
        to: String,
        /// Why the first failed.
        reason: String,
    },
    /// A provider's quota or credit is used up: it is not retried, its key is marked for a
    /// cool-down (other phases and runners skip it), and the phase moves to its fallback.
    #[serde(rename = "workflow:provider_exhausted")]
    ProviderExhausted {
        /// Phase id.
        phase_id: String,
        /// Iteration.
        iteration: u32,
        /// The provider (type and model).
        provider: String,
        /// What it said.
        message: String,
    },
    /// The reviewers' findings of an iteration, matched with the previous ones (see
    /// `engine::findings`).
    #[serde(rename = "workflow:findings")]
    Findings {
        /// Iteration.
        iteration: u32,
        /// Ids seen for the first time.
        new: Vec<String>,
        /// Ids still open from the previous iteration.
        open: Vec<String>,
        /// Ids of the previous iteration not reported again.
        resolved: Vec<String>,
        /// Ids resolved earlier and back now.
        reopened: Vec<String>,
    },
    /// The loop ended because it converged: the verifier passed and only findings below
    /// `blocking_severity` are left.
    #[serde(rename = "workflow:converged")]
    Converged {
        /// Iteration.
        iteration: u32,
        /// Why.
        reason: String,
    },
    /// The loop stopped because it no longer converges (`plateau` or `oscillation`).
    #[serde(rename = "workflow:stalled")]
    Stalled {
        /// Iteration.
        iteration: u32,
        /// `plateau` or `oscillation`.
        kind: String,
        /// Why, with the findings concerned.
        reason: String,
    },
    /// A control request (`pause`, `cancel`, `skip-phase`, `approval`) was noticed.
    #[serde(rename = "workflow:control")]
    ControlNoticed {
        /// Which request.
        request: String,
        /// What the runner will do.
        detail: String,
    },
    /// A budget passed 80 % of its limit.
    #[serde(rename = "workflow:budget_warning")]
    BudgetWarning {
        /// `execution`, `project` or `global`.
        scope: String,
        /// USD spent.
        spent: f64,
        /// USD limit.
        limit: f64,
    },
    /// An artifact was written.
    #[serde(rename = "workflow:artifact_created")]
    ArtifactCreated {
        /// Artifact id.
        artifact_id: String,
        /// Its type.
        artifact_type: ArtifactType,
        /// Path relative to the execution folder.
        path: String,
    },
    /// A new iteration starts.
    #[serde(rename = "workflow:iteration")]
    Iteration {
        /// The new iteration.
        iteration: u32,
        /// What the last one lacked.
        reason: String,
    },
    /// The execution waits for `workflow approve|reject`.
    #[serde(rename = "workflow:approval_needed")]
    ApprovalNeeded {
        /// The iteration awaiting approval.
        iteration: u32,
        /// What the iteration lacked.
        reason: String,
    },
    /// The execution stopped at a safe point (pause request or `failure_behavior: pause_notify`).
    #[serde(rename = "workflow:paused")]
    Paused {
        /// Why.
        reason: String,
    },
    /// Every review approved and verification passed.
    #[serde(rename = "workflow:completed")]
    Completed {
        /// Tokens of the execution.
        total_tokens: TokenUsage,
        /// USD of the execution (priced calls).
        total_cost_usd: f64,
        /// True when some calls' cost is unknown: the total is then a lower bound.
        cost_incomplete: bool,
        /// How many calls have an unknown cost.
        unknown_cost_calls: u32,
    },
    /// The execution failed.
    #[serde(rename = "workflow:failed")]
    Failed {
        /// Why.
        reason: String,
        /// The final status (failed or budget_exceeded).
        status: WorkflowStatus,
    },
    /// The execution was cancelled.
    #[serde(rename = "workflow:cancelled")]
    Cancelled {},
}

/// Fans events out to `events.ndjson` and to every subscriber, losslessly.
pub struct EventBus {
    execution_id: String,
    dir: Option<ExecutionDir>,
    /// `events.ndjson`, opened once for appending (on the first event).
    log: Mutex<Option<std::fs::File>>,
    subscribers: Mutex<Vec<UnboundedSender<Event>>>,
}

impl EventBus {
    /// A bus writing to `dir`'s `events.ndjson`.
    pub fn new(dir: &ExecutionDir) -> Self {
        Self {
            execution_id: dir.id(),
            dir: Some(dir.clone()),
            log: Mutex::new(None),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    /// A new receiver of every later event.
    pub fn subscribe(&self) -> UnboundedReceiver<Event> {
        let (tx, rx) = unbounded_channel();
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(tx);
        }
        rx
    }

    /// Records and broadcasts one event.
    pub fn emit(&self, kind: EventKind) {
        let event = Event {
            // Microseconds: a fast phase lasts about a millisecond, and the span between two
            // events is how its cost is read (the scale bench's 50-iteration row).
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            execution_id: self.execution_id.clone(),
            kind,
        };
        if let (Some(dir), Ok(line)) = (&self.dir, serde_json::to_string(&event)) {
            // The event log is a record, not a control path: a full disk must not stop the run.
            self.append(dir, &line);
        }
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|tx| tx.send(event.clone()).is_ok());
        }
    }

    /// Appends one line to `events.ndjson` through the bus's one handle: a single `write` of
    /// the whole line on an `O_APPEND` file, so other writers never interleave inside it.
    fn append(&self, dir: &ExecutionDir, line: &str) {
        let Ok(mut log) = self.log.lock() else {
            return;
        };
        if log.is_none() {
            *log = dir.open_events().ok();
        }
        if let Some(file) = log.as_mut() {
            let _ = crate::store::write_line(file, line);
        }
    }

    /// Drops every subscriber, so their receivers end.
    pub fn close(&self) {
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.clear();
        }
    }
}
