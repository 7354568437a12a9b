//! The seed's state transition matrix (Appendix B), and nothing else. Every status change of an
//! execution goes through [`transition`]; an illegal one is a bug and is reported as such.

use crate::spec::WorkflowStatus::{self, *};

/// What happened to the execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `run` or `resume` started reconciling a new execution.
    Start,
    /// The last phase of an iteration completed and all passed.
    AllPhasesDone,
    /// An iteration ended with feedback and the behaviour is to pause.
    NeedsApproval,
    /// A review or verification failed with iterations left (auto) …
    ReviewFailedIterate,
    /// … or with none left.
    ReviewFailedFinal,
    /// The next call would exceed a budget.
    BudgetExceeded,
    /// A pause request (or `failure_behavior: pause_notify`).
    Pause,
    /// A cancel request.
    Cancel,
    /// A phase failed for good.
    Error,
    /// A paused (or budget-stopped) execution is resumed.
    Resume,
    /// The awaited iteration was approved.
    Approve,
    /// The awaited iteration was rejected.
    Reject,
    /// An artifact of a completed execution was edited by hand: what reads it is stale.
    HandEdit,
}

/// An illegal transition: a bug in the runner.
#[derive(Debug, thiserror::Error)]
#[error("illegal transition {from:?} --{trigger:?}--> (not in the seed's Appendix B)")]
pub struct IllegalTransition {
    /// The status it was in.
    pub from: WorkflowStatus,
    /// What was attempted.
    pub trigger: Trigger,
}

/// The status after `trigger` in status `from`.
pub fn transition(
    from: WorkflowStatus,
    trigger: Trigger,
) -> Result<WorkflowStatus, IllegalTransition> {
    use Trigger as T;
    let to = match (from, trigger) {
        (Pending, T::Start) => Running,
        (Running, T::NeedsApproval) => AwaitingApproval,
        (Running, T::AllPhasesDone) => Completed,
        (Running, T::ReviewFailedIterate) => Running,
        (Running, T::ReviewFailedFinal) => Failed,
        (Running, T::BudgetExceeded) => BudgetExceeded,
        (Running, T::Pause) => Paused,
        (Running, T::Cancel) => Cancelled,
        (Running, T::Error) => Failed,
        (Paused, T::Resume) => Running,
        (AwaitingApproval, T::Approve) => Running,
        (AwaitingApproval, T::Reject) => Failed,
        // Raising the limit and resuming continues a budget-stopped run (issue: budgets).
        (BudgetExceeded, T::Resume) => Running,
        // A hand edit reopens a completed execution: `resume` re-runs what reads the artifact,
        // and the iteration is judged again.
        (Completed, T::HandEdit) => Running,
        // Cancelling works from every non-terminal status.
        (Pending | Paused | AwaitingApproval | BudgetExceeded, T::Cancel) => Cancelled,
        _ => return Err(IllegalTransition { from, trigger }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_allows_the_seed_rows_and_refuses_others() {
        assert_eq!(transition(Pending, Trigger::Start).ok(), Some(Running));
        assert_eq!(
            transition(AwaitingApproval, Trigger::Reject).ok(),
            Some(Failed)
        );
        assert!(transition(Completed, Trigger::Start).is_err());
        assert!(transition(Paused, Trigger::AllPhasesDone).is_err());
        assert!(transition(Failed, Trigger::Resume).is_err());
    }
}
