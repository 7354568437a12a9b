//! `workflow address`: a pull request's feedback fed back into its execution. The review
//! comments and the failed check runs of the pull request become one more `review_report` of
//! the execution's last iteration (`pr-feedback`, its findings one per comment or check), and
//! the execution is reopened for the next iteration, whose implementer reads them as it reads
//! the reviewers' reports. Publishing it again pushes to the same branch.

use serde_json::Value;

use super::github::{GitHub, GitHubError};
use crate::engine::sha256_hex;
use crate::spec::{Artifact, ArtifactType, ReviewIssue, ReviewReport, WorkflowStatus, run_key};
use crate::store::{ExecutionDir, ExecutionLock, StoreError};

/// The phase id the feedback is filed under.
pub const PHASE: &str = "pr-feedback";

/// Why feedback could not be fed back.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// Only a completed execution has a pull request to address.
    #[error("execution {id} is {status}: only a completed execution is addressed")]
    NotCompleted {
        /// Its short id.
        id: String,
        /// Its status.
        status: &'static str,
    },
    /// The pull request has nothing to address.
    #[error("pull request #{0} has no review comments and no failed checks: nothing to address")]
    Nothing(u64),
    /// No iteration is left.
    #[error(
        "execution {0} has used its max_iterations; raise it in execution.yaml to address more"
    )]
    NoIterationLeft(String),
    /// GitHub said no.
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    /// A file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The review comments and failed checks of pull request `number`, as one review report.
pub async fn feedback(gh: &GitHub<'_>, number: u64) -> Result<ReviewReport, AddressError> {
    let comments = gh
        .get(&format!("/pulls/{number}/comments"), "its review comments")
        .await?;
    let pr = gh
        .get(&format!("/pulls/{number}"), "the pull request")
        .await?;
    let mut issues: Vec<ReviewIssue> = comments
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| ReviewIssue {
            severity: "major".into(),
            file: c["path"].as_str().map(str::to_owned),
            line: c["line"].as_u64().or_else(|| c["original_line"].as_u64()),
            description: format!(
                "{} (review comment by {})",
                c["body"].as_str().unwrap_or("").trim(),
                c["user"]["login"].as_str().unwrap_or("a reviewer")
            ),
            suggestion: None,
        })
        .collect();
    if let Some(sha) = pr["head"]["sha"].as_str() {
        let checks = gh
            .get(&format!("/commits/{sha}/check-runs"), "its checks")
            .await?;
        for run in checks["check_runs"].as_array().into_iter().flatten() {
            if !matches!(run["conclusion"].as_str(), Some("failure" | "timed_out")) {
                continue;
            }
            let text = |v: &Value| v.as_str().unwrap_or("").trim().to_owned();
            issues.push(ReviewIssue {
                severity: "major".into(),
                file: None,
                line: None,
                description: format!(
                    "check `{}` failed: {} {}",
                    text(&run["name"]),
                    text(&run["output"]["title"]),
                    text(&run["output"]["summary"])
                )
                .trim()
                .to_owned(),
                suggestion: None,
            });
        }
    }
    if issues.is_empty() {
        return Err(AddressError::Nothing(number));
    }
    Ok(ReviewReport {
        approved: false,
        summary: format!("feedback on pull request #{number}"),
        issues,
        suggestions: Vec::new(),
    })
}

/// Files `report` as the `pr-feedback` review of the execution's last iteration and reopens
/// the execution for the next one; under its lock.
pub fn reopen_with(
    dir: &ExecutionDir,
    report: &ReviewReport,
    number: u64,
) -> Result<u32, AddressError> {
    let _lock = ExecutionLock::acquire(&dir.lock_path()).map_err(StoreError::from)?;
    let request = dir.read_request()?;
    let mut state = dir.read_state()?;
    let id = crate::engine::short(&state.id).to_owned();
    if state.status != WorkflowStatus::Completed {
        return Err(AddressError::NotCompleted {
            id,
            status: state.status.as_str(),
        });
    }
    if state.iteration >= request.template.max_iterations {
        return Err(AddressError::NoIterationLeft(id));
    }
    let iteration = state.iteration;
    let rel = ExecutionDir::artifact_rel(iteration, PHASE, "json");
    let text = serde_json::to_string_pretty(report).unwrap_or_default();
    dir.write_artifact(&rel, &text)?;
    let key = run_key(iteration, PHASE);
    state.artifacts.retain(|a| a.id != key);
    state.artifacts.push(Artifact {
        id: key.clone(),
        phase_execution_id: key,
        phase_id: PHASE.to_owned(),
        artifact_type: ArtifactType::ReviewReport,
        iteration,
        file_path: rel,
        sha256: sha256_hex(text.as_bytes()),
        is_edited: false,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    // Completed → running again (the transition a hand edit makes), one iteration further.
    state.status = crate::engine::transitions::transition(
        state.status,
        crate::engine::transitions::Trigger::HandEdit,
    )
    .map_err(|e| StoreError::io(dir.root(), std::io::Error::other(e.to_string())))?;
    state.completed_at = None;
    state.iteration += 1;
    state.message = format!("addressing the feedback on pull request #{number}");
    dir.write_state(&state)?;
    Ok(state.iteration)
}
