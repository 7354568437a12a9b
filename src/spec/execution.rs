//! The two files of an execution: `execution.yaml` (desired, owned by people and the CLI) and
//! `state.json` (actual, owned by the runner). Humans and the runner never write the same file.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::template::{
    ArtifactType, IterationBehavior, PhaseRole, PhaseStatus, TriggerMode, WorkflowStatus,
    WorkflowTemplate,
};

/// A human decision on an iteration that waits in `awaiting_approval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Start the next iteration.
    Approve,
    /// End the execution as failed.
    Reject,
}

/// Control requests: the only part of `execution.yaml` that changes after the start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlRequests {
    /// Stop at the next safe point; set back to false (by `resume`) to continue.
    #[serde(default)]
    pub pause: bool,
    /// Stop for good.
    #[serde(default)]
    pub cancel: bool,
    /// Phase runs to skip, as `"<iteration>/<phase-id>"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<String>,
    /// Decisions keyed by the iteration that awaits approval.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approvals: BTreeMap<u32, Decision>,
}

/// `execution.yaml`: what the user asked for. The runner reads it and never writes it after
/// creating it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionRequest {
    /// The execution's id (a UUID).
    pub id: String,
    /// How it was started.
    pub trigger_mode: TriggerMode,
    /// The project directory, absolute.
    pub project_path: String,
    /// What to do.
    pub task_description: String,
    /// A snapshot of the template taken at the start, so later edits of the file do not change
    /// a running execution.
    pub template: WorkflowTemplate,
    /// Where the template came from.
    #[serde(default)]
    pub template_source: String,
    /// USD limit for this execution.
    #[serde(default)]
    pub budget_limit: Option<f64>,
    /// Effective iteration behaviour (the template's, resolved for interactivity).
    pub iteration_behavior: IterationBehavior,
    /// Whether a person watches the run.
    #[serde(default)]
    pub interactive_mode: bool,
    /// Implement in the user's checkout instead of a worktree.
    #[serde(default)]
    pub in_place: bool,
    /// `run --no-verify`: a project without verification commands runs anyway, and its
    /// verifier passes with a note.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_verify: bool,
    /// `run --include-uncommitted`: the implementer starts from HEAD plus the user's
    /// uncommitted work.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_uncommitted: bool,
    /// `run --sandbox`: the sandbox of every phase of this execution, over the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::spec::SandboxMode>,
    /// When the execution was created.
    pub created_at: String,
    /// Control requests from `pause`, `cancel`, `skip-phase`, `approve`, `reject`.
    #[serde(default)]
    pub control: ControlRequests,
    /// The GitHub issue it works on (`run --issue`): where its pull request goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GithubIssue>,
}

/// A GitHub issue an execution works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GithubIssue {
    /// `owner/name`.
    pub repo: String,
    /// The issue's number.
    pub number: u64,
}

/// Token counts as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenUsage {
    /// Prompt tokens billed at the input price (cached ones excluded).
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
    /// Prompt tokens served from the provider's cache.
    #[serde(default)]
    pub cached_input: u64,
    /// Prompt tokens written to the provider's cache.
    #[serde(default)]
    pub cache_write: u64,
}

impl TokenUsage {
    /// Adds another usage to this one.
    pub fn add(&mut self, other: &TokenUsage) {
        self.input += other.input;
        self.output += other.output;
        self.cached_input += other.cached_input;
        self.cache_write += other.cache_write;
    }
}

/// An output of a phase run, stored under `artifacts/<iteration>/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Artifact {
    /// `<iteration>/<phase-id>`: unique in the execution.
    pub id: String,
    /// The phase execution that wrote it.
    pub phase_execution_id: String,
    /// The phase that wrote it.
    pub phase_id: String,
    /// Its kind.
    pub artifact_type: ArtifactType,
    /// The iteration it belongs to.
    pub iteration: u32,
    /// Path relative to the execution directory.
    pub file_path: String,
    /// SHA-256 of the content the runner wrote (or last saw), to notice hand edits.
    pub sha256: String,
    /// Set when a person changed the file.
    #[serde(default)]
    pub is_edited: bool,
    /// When it was written.
    pub created_at: String,
}

/// The key of one phase run, `<iteration>/<phase-id>`: its id in `state.json`, its artifact's id,
/// and what `skip-phase` names.
pub fn run_key(iteration: u32, phase_id: &str) -> String {
    format!("{iteration}/{phase_id}")
}

/// The id an artifact has outside its execution (the API, `workflow artifacts`):
/// `<execution id>.<iteration>.<phase id>`, unique across executions and URL-safe (a byte of
/// the phase id outside `A-Z a-z 0-9 _ -` is written `~XX`).
pub fn public_artifact_id(execution_id: &str, iteration: u32, phase_id: &str) -> String {
    let mut phase = String::new();
    for b in phase_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            phase.push(char::from(b));
        } else {
            phase.push_str(&format!("~{b:02X}"));
        }
    }
    format!("{execution_id}.{iteration}.{phase}")
}

/// The (execution id, iteration, phase id) of a public artifact id; `None` when it is not one.
pub fn parse_public_artifact_id(id: &str) -> Option<(String, u32, String)> {
    let (execution, rest) = id.split_once('.')?;
    let (iteration, phase) = rest.split_once('.')?;
    let iteration = iteration.parse().ok()?;
    let mut bytes = Vec::new();
    let mut it = phase.bytes();
    while let Some(b) = it.next() {
        if b == b'~' {
            let hex = [it.next()?, it.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    let phase = String::from_utf8(bytes).ok()?;
    (!execution.is_empty() && !phase.is_empty()).then(|| (execution.to_owned(), iteration, phase))
}

/// One run of one phase in one iteration (seed §2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PhaseExecution {
    /// `<iteration>/<phase-id>`.
    pub id: String,
    /// The template phase.
    pub phase_id: String,
    /// Its name.
    pub phase_name: String,
    /// Its role.
    pub phase_role: PhaseRole,
    /// Provider type that answered.
    #[serde(default)]
    pub provider_used: String,
    /// Model requested.
    #[serde(default)]
    pub model_used: String,
    /// Model the provider says served the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_served: Option<String>,
    /// Status.
    pub status: PhaseStatus,
    /// The iteration.
    pub iteration: u32,
    /// Artifacts read by the prompt.
    #[serde(default)]
    pub input_artifact_ids: Vec<String>,
    /// Artifact written.
    #[serde(default)]
    pub output_artifact_id: Option<String>,
    /// Hash of the phase definition, rendered prompt and inputs; equal means up to date.
    #[serde(default)]
    pub fingerprint: String,
    /// Tokens over every call of the run.
    #[serde(default)]
    pub tokens: TokenUsage,
    /// USD over every call; None when a call's price is unknown.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Provider calls made (model turns, retries included).
    #[serde(default)]
    pub calls: u32,
    /// Calls among them whose cost is unknown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unknown_cost_calls: u32,
    /// For reviewers: the verdict. For the verifier: whether every check passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// Start time.
    #[serde(default)]
    pub started_at: Option<String>,
    /// End time.
    #[serde(default)]
    pub completed_at: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error_message: String,
    /// For the implementer in a worktree: the commit holding its changes; the next
    /// iteration's implementer starts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Where the implementer works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Workspace {
    /// Directory the phases run in.
    pub dir: String,
    /// Commit the run started from; None outside git.
    pub base_commit: Option<String>,
    /// Branch the implementer commits to; None in place or outside git.
    pub branch: Option<String>,
}

/// `state.json`: what actually happened. Written only by the runner holding the lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowExecution {
    /// The execution's id.
    pub id: String,
    /// Status.
    pub status: WorkflowStatus,
    /// Current iteration, from 1.
    pub iteration: u32,
    /// Phase that runs (or ran last).
    #[serde(default)]
    pub current_phase_id: Option<String>,
    /// Every phase run, in the order they started. In `state.json`, those of the iterations
    /// after `history_through` only: the earlier ones are in `history/<iteration>.json`.
    #[serde(default)]
    pub phase_executions: Vec<PhaseExecution>,
    /// Every artifact written (in `state.json`, as `phase_executions`).
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// The iterations 1 to this one keep their phase runs and artifacts in
    /// `history/<iteration>.json`, each written once when the iteration is over, so that a long
    /// run's `state.json` (written at every step) stays the size of one iteration. 0: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_through: u32,
    /// Where the code is changed.
    #[serde(default)]
    pub workspace: Option<Workspace>,
    /// Tokens of the whole execution.
    #[serde(default)]
    pub total_tokens: TokenUsage,
    /// USD of the whole execution, priced calls only.
    #[serde(default)]
    pub total_cost_usd: f64,
    /// True when some call's cost is unknown, so `total_cost_usd` is a lower bound.
    #[serde(default)]
    pub cost_incomplete: bool,
    /// How many calls have an unknown cost (not counted in `total_cost_usd`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unknown_cost_calls: u32,
    /// When the first reconcile started.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When a terminal status was reached.
    #[serde(default)]
    pub completed_at: Option<String>,
    /// Why the execution failed, paused or stopped.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl WorkflowExecution {
    /// A fresh state for a new execution.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            status: WorkflowStatus::Pending,
            iteration: 1,
            current_phase_id: None,
            phase_executions: Vec::new(),
            artifacts: Vec::new(),
            history_through: 0,
            workspace: None,
            total_tokens: TokenUsage::default(),
            total_cost_usd: 0.0,
            cost_incomplete: false,
            unknown_cost_calls: 0,
            started_at: None,
            completed_at: None,
            message: String::new(),
        }
    }

    /// The run of `phase_id` in `iteration`, if any.
    pub fn run(&self, iteration: u32, phase_id: &str) -> Option<&PhaseExecution> {
        self.phase_executions
            .iter()
            .find(|r| r.iteration == iteration && r.phase_id == phase_id)
    }

    /// The latest artifact of a type at or before `iteration`; with several (two reviewers),
    /// all of that latest iteration.
    pub fn latest_artifacts(&self, kind: ArtifactType, iteration: u32) -> Vec<&Artifact> {
        let latest = self
            .artifacts
            .iter()
            .filter(|a| a.artifact_type == kind && a.iteration <= iteration)
            .map(|a| a.iteration)
            .max();
        match latest {
            Some(it) => self
                .artifacts
                .iter()
                .filter(|a| a.artifact_type == kind && a.iteration == it)
                .collect(),
            None => Vec::new(),
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::{parse_public_artifact_id, public_artifact_id};

    #[test]
    fn public_artifact_ids_are_url_safe_and_read_back() {
        let id = public_artifact_id("1a2b-3c", 2, "review/style x");
        assert_eq!(id, "1a2b-3c.2.review~2Fstyle~20x");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-~".contains(&b))
        );
        assert_eq!(
            parse_public_artifact_id(&id),
            Some(("1a2b-3c".into(), 2, "review/style x".into()))
        );
        assert_eq!(parse_public_artifact_id("1a2b.x.plan"), None);
        assert_eq!(parse_public_artifact_id("1a2b.1"), None);
    }
}
