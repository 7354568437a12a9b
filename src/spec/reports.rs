//! The JSON artifacts models and the verifier write (seed §9). Their schemas are generated into
//! `schemas/` and every model answer is validated against them before it is accepted.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One task of the analyzer's list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Task {
    /// Number of the task.
    pub id: u32,
    /// Short title.
    pub title: String,
    /// What to do.
    #[serde(default)]
    pub description: String,
    /// Files involved.
    #[serde(default)]
    pub files: Vec<String>,
    /// `high`, `medium` or `low`.
    #[serde(default)]
    pub priority: Option<String>,
    /// Ids of tasks this one depends on.
    #[serde(default)]
    pub dependencies: Vec<u32>,
    /// What carrying it out may cost, in USD (a directory scan's estimate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
}

/// The analyzer's output (`task_list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskList {
    /// What needs doing, briefly.
    pub summary: String,
    /// `low`, `medium` or `high`.
    #[serde(default)]
    pub complexity: Option<String>,
    /// A human estimate.
    #[serde(default)]
    pub estimated_time: Option<String>,
    /// The tasks, in priority order.
    pub tasks: Vec<Task>,
    /// Risks seen.
    #[serde(default)]
    pub risks: Vec<String>,
    /// Open questions.
    #[serde(default)]
    pub questions: Vec<String>,
}

/// One finding of a review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewIssue {
    /// `critical`, `major` or `minor`.
    pub severity: String,
    /// File concerned.
    #[serde(default)]
    pub file: Option<String>,
    /// Line concerned.
    #[serde(default)]
    pub line: Option<u64>,
    /// What is wrong.
    pub description: String,
    /// How to fix it.
    #[serde(default)]
    pub suggestion: Option<String>,
}

/// A reviewer's output (`review_report`); `approved: false` starts another iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewReport {
    /// The verdict.
    pub approved: bool,
    /// Overall assessment.
    pub summary: String,
    /// Findings.
    #[serde(default)]
    pub issues: Vec<ReviewIssue>,
    /// Optional improvements.
    #[serde(default)]
    pub suggestions: Vec<String>,
}

/// One command the verifier ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    /// `lint`, `test` or `build`.
    pub name: String,
    /// The shell command.
    pub command: String,
    /// Exit code; None when it was killed.
    pub exit_code: Option<i32>,
    /// Wall time.
    pub duration_ms: u64,
    /// Whether the timeout stopped it.
    #[serde(default)]
    pub timed_out: bool,
    /// The last lines of its combined output.
    pub output_tail: String,
}

/// The verifier's output (`verification_report`): evidence, not a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VerificationReport {
    /// True when there was at least one check and every check exited 0.
    pub passed: bool,
    /// Where the commands came from: `config` or `detected:<file>`.
    pub source: String,
    /// The checks in the order they ran.
    pub checks: Vec<CheckResult>,
    /// Why it did not pass, when no check explains it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
