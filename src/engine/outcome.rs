//! The one result object of an execution, for scripts (as `codex exec --json` and
//! `claude -p --output-format json` end with one): status, where the change is, what the
//! reviewers and the verifier said, and what it cost. Built from the files and the repository,
//! so `run --json` and `workflow status --json` give the same answer at any time.

use serde::Serialize;

use crate::git::{BranchChange, ProjectRepo};
use crate::spec::{PhaseRole, ReviewReport, VerificationReport, WorkflowExecution};
use crate::store::ExecutionDir;

/// The result of an execution as it stands.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The execution's id.
    pub id: String,
    /// `completed`, `failed`, … (the names of `state.json`).
    pub status: String,
    /// Why it failed, paused or stopped; empty otherwise.
    pub message: String,
    /// The last iteration run.
    pub iteration: u32,
    /// The result branch; None in place or outside git.
    pub branch: Option<String>,
    /// The commit the run started from.
    pub base_commit: Option<String>,
    /// The branch's tip and its diff stat against the base, when the branch exists.
    pub change: Option<BranchChange>,
    /// Each reviewer's verdict in the last iteration that has one.
    pub reviews: Vec<Verdict>,
    /// The last verification, if one ran.
    pub verification: Option<Verification>,
    /// What the execution cost.
    pub cost: Cost,
}

/// One reviewer's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The reviewer's phase id.
    pub phase: String,
    /// Its role (`reviewer_functional`, …).
    pub role: PhaseRole,
    /// Approved, rejected, or None when it did not finish.
    pub approved: Option<bool>,
    /// Its summary, from the review report.
    pub summary: Option<String>,
    /// How many issues it found.
    pub issues: usize,
}

/// The verifier's last report, briefly.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Every check exited 0 (or verification was off on purpose).
    pub passed: bool,
    /// `config` or `detected:<file>`.
    pub source: String,
    /// `(name, exit code)` of each check; None when it was killed.
    pub checks: Vec<(String, Option<i32>)>,
}

/// The cost of the execution.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// USD of the calls whose price is known.
    pub usd: f64,
    /// True when some call's cost is unknown: `usd` is then a lower bound.
    pub unknown: bool,
    /// How many calls have an unknown cost.
    pub unknown_calls: u32,
}

/// The result of the execution in `dir`, from its files and the repository of the project
/// that holds the folder.
pub fn outcome(dir: &ExecutionDir, state: &WorkflowExecution) -> Outcome {
    let workspace = state.workspace.as_ref();
    let branch = workspace.and_then(|w| w.branch.clone());
    let base_commit = workspace.and_then(|w| w.base_commit.clone());
    let repo = dir.project().and_then(ProjectRepo::open);
    let change = match (&branch, &base_commit, repo) {
        (Some(b), Some(base), Some(repo)) => repo.branch_change(base, b).ok(),
        _ => None,
    };
    let last_iteration = |wanted: &dyn Fn(PhaseRole) -> bool| {
        state
            .phase_executions
            .iter()
            .filter(|r| wanted(r.phase_role))
            .map(|r| r.iteration)
            .max()
    };
    let reviews = match last_iteration(&|r| r.is_reviewer()) {
        Some(it) => state
            .phase_executions
            .iter()
            .filter(|r| r.iteration == it && r.phase_role.is_reviewer())
            .map(|r| {
                let report = r
                    .output_artifact_id
                    .as_deref()
                    .and_then(|a| read_json::<ReviewReport>(dir, state, a));
                Verdict {
                    phase: r.phase_id.clone(),
                    role: r.phase_role,
                    approved: r.passed,
                    summary: report.as_ref().map(|x| x.summary.clone()),
                    issues: report.map_or(0, |x| x.issues.len()),
                }
            })
            .collect(),
        None => Vec::new(),
    };
    let verification = last_iteration(&|r| r == PhaseRole::Verifier).and_then(|it| {
        let run = state
            .phase_executions
            .iter()
            .find(|r| r.iteration == it && r.phase_role == PhaseRole::Verifier)?;
        let report =
            read_json::<VerificationReport>(dir, state, run.output_artifact_id.as_deref()?)?;
        Some(Verification {
            passed: report.passed,
            source: report.source,
            checks: report
                .checks
                .into_iter()
                .map(|c| (c.name, c.exit_code))
                .collect(),
        })
    });
    Outcome {
        id: state.id.clone(),
        status: state.status.as_str().to_owned(),
        message: state.message.clone(),
        iteration: state.iteration,
        branch,
        base_commit,
        change,
        reviews,
        verification,
        cost: Cost {
            usd: state.total_cost_usd,
            unknown: state.cost_incomplete || state.unknown_cost_calls > 0,
            unknown_calls: state.unknown_cost_calls,
        },
    }
}

/// An artifact's JSON content, when it exists and parses.
fn read_json<T: serde::de::DeserializeOwned>(
    dir: &ExecutionDir,
    state: &WorkflowExecution,
    artifact_id: &str,
) -> Option<T> {
    let artifact = state.artifacts.iter().find(|a| a.id == artifact_id)?;
    let text = dir.read_artifact(&artifact.file_path).ok()?;
    serde_json::from_str(&text).ok()
}
