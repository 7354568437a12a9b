//! Control requests (seed Appendix B) written into `execution.yaml`: pause, resume, cancel,
//! approve, reject and skip-phase. The CLI and `serve` both call these; a live runner applies
//! them at its next safe point, and whoever asked starts a runner when none is live.

use crate::spec::{Decision, PhaseStatus, WorkflowExecution, WorkflowStatus, run_key};
use crate::store::{ExecutionDir, StoreError};

/// A request about a whole execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop at a safe point.
    Pause,
    /// Withdraw a pause request (a runner then continues the run).
    Resume,
    /// Stop for good.
    Cancel,
    /// Continue with the next iteration.
    Approve,
    /// Fail the execution.
    Reject,
}

impl Control {
    /// The request named `name` (`pause`, `resume`, `cancel`, `approve`, `reject`).
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Pause,
            Self::Resume,
            Self::Cancel,
            Self::Approve,
            Self::Reject,
        ]
        .into_iter()
        .find(|c| c.as_str() == name)
    }

    /// The request's name as the API and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }
}

/// Why a request was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The execution has ended: nothing can change it (a hand edit of an artifact reopens it).
    #[error("execution {id} is already {status}")]
    Ended {
        /// Its short id.
        id: String,
        /// Its final status.
        status: &'static str,
    },
    /// Approve or reject of an execution that is not waiting for it.
    #[error("execution {id} is {status}, not awaiting approval")]
    NotAwaiting {
        /// Its short id.
        id: String,
        /// Its status.
        status: &'static str,
    },
    /// Skip without a phase while none runs.
    #[error("no phase is running; name one with --phase")]
    NothingRunning,
    /// Skip of a phase the template does not have.
    #[error("no phase `{0}` in this execution's template")]
    NoSuchPhase(String),
    /// Skip of a phase marked `can_skip: false`.
    #[error("phase `{0}` has can_skip: false")]
    CannotSkip(String),
    /// The files could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes `what` into the execution's `execution.yaml` after checking Appendix B allows it;
/// returns the state it was checked against. A resume of an execution that is not paused is
/// allowed (it restarts an interrupted run) and writes nothing when no pause is pending.
pub fn request(dir: &ExecutionDir, what: Control) -> Result<WorkflowExecution, RequestError> {
    let state = dir.read_state()?;
    let id = super::short(&state.id).to_owned();
    if state.status.is_terminal() && what != Control::Resume {
        return Err(RequestError::Ended {
            id,
            status: state.status.as_str(),
        });
    }
    if matches!(what, Control::Approve | Control::Reject)
        && state.status != WorkflowStatus::AwaitingApproval
    {
        return Err(RequestError::NotAwaiting {
            id,
            status: state.status.as_str(),
        });
    }
    let iteration = state.iteration;
    if what == Control::Resume {
        // A file that holds no pause is left alone (no write, no sync).
        if dir.read_request()?.control.pause {
            dir.edit_request(|r| r.control.pause = false)?;
        }
        return Ok(state);
    }
    dir.edit_request(|r| match what {
        Control::Pause => r.control.pause = true,
        Control::Cancel => r.control.cancel = true,
        Control::Approve => {
            r.control.approvals.insert(iteration, Decision::Approve);
        }
        Control::Reject => {
            r.control.approvals.insert(iteration, Decision::Reject);
        }
        Control::Resume => {}
    })?;
    Ok(state)
}

/// Who applies a request once it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applier {
    /// The runner that holds the execution: it reads `execution.yaml` at its safe points and
    /// once more after letting go.
    Runner,
    /// The caller: no runner held the execution, or the one that did let go without reading
    /// the request. The caller starts a runner (`serve`) or drives a pass itself (the CLI).
    Caller,
}

/// [`request`], and who applies it. Whether a runner is on the execution is decided before
/// the write (a live runner may apply a cancel and end at once, and must not be taken for a
/// runner that never was) and checked again after it: a runner that let go in between and
/// left the request unread (`Engine::need` sees it) leaves it to the caller.
pub fn submit(
    engine: &super::Engine,
    dir: &ExecutionDir,
    what: Control,
) -> Result<(WorkflowExecution, Applier), RequestError> {
    let alive = crate::store::runner_alive(dir);
    let before = request(dir, what)?;
    // `need` is none while a runner holds the execution, and once the request is applied.
    let unread = || matches!(engine.need(dir), Ok(Some(_)));
    let applier = if alive && !unread() {
        Applier::Runner
    } else {
        Applier::Caller
    };
    Ok((before, applier))
}

/// Adds skip requests for `phase` (id or name), or for every phase running now when `None`;
/// returns the phase ids and the iteration they apply to.
pub fn request_skip(
    dir: &ExecutionDir,
    phase: Option<&str>,
) -> Result<(Vec<String>, u32), RequestError> {
    let request = dir.read_request()?;
    let state = dir.read_state()?;
    let template = &request.template;
    let targets: Vec<String> = match phase {
        Some(p) => {
            let phase = template
                .phases
                .iter()
                .find(|x| x.id == p || x.name == p)
                .ok_or_else(|| RequestError::NoSuchPhase(p.to_owned()))?;
            vec![phase.id.clone()]
        }
        None => state
            .phase_executions
            .iter()
            .filter(|r| r.iteration == state.iteration && r.status == PhaseStatus::Running)
            .map(|r| r.phase_id.clone())
            .collect(),
    };
    if targets.is_empty() {
        return Err(RequestError::NothingRunning);
    }
    if let Some(id) = targets
        .iter()
        .find(|id| template.phase(id).is_some_and(|p| !p.can_skip))
    {
        return Err(RequestError::CannotSkip(id.clone()));
    }
    let iteration = state.iteration;
    dir.edit_request(|r| {
        for id in &targets {
            let key = run_key(iteration, id);
            if !r.control.skip.contains(&key) {
                r.control.skip.push(key);
            }
        }
    })?;
    Ok((targets, iteration))
}
