//! Templates, executions and reports: the types users edit and the runner reads, their schemas,
//! and the loading that turns a YAML file into a checked value (DESIGN §2, seed §2).
//!
//! serde_yaml is used only inside this module, so a maintained drop-in can replace it here.

pub mod config;
pub mod convergence;
pub mod execution;
pub mod load;
mod locate;
pub mod reports;
pub mod schema;
pub mod template;
pub mod watch;

pub use config::{OutputLimits, ProjectConfig, VerifyConfig};
pub use convergence::Convergence;
pub use execution::{
    Artifact, ControlRequests, Decision, ExecutionRequest, GithubIssue, PhaseExecution, TokenUsage,
    WorkflowExecution, Workspace, parse_public_artifact_id, public_artifact_id, run_key,
};
pub use load::{Problem, SpecError};
pub use reports::{CheckResult, ReviewIssue, ReviewReport, Task, TaskList, VerificationReport};
pub use template::{
    ArtifactType, ExtraParams, FailureBehavior, IterationBehavior, PhaseRole, PhaseStatus,
    ProviderConfig, ProviderType, SandboxMode, TriggerMode, WorkflowPhase, WorkflowStatus,
    WorkflowTemplate,
};
pub use watch::{OnBusy, WatchConfig, WatchTrigger};

use std::path::Path;

/// The seed's §8 pipeline with current model ids, shipped as
/// `examples/templates/default_pipeline.yaml` (the seed's exact file is `seed_default_pipeline.yaml`).
pub const DEFAULT_TEMPLATE_YAML: &str =
    include_str!("../../examples/templates/default_pipeline.yaml");

/// The built-in default template.
pub fn default_template() -> Result<WorkflowTemplate, SpecError> {
    load::parse_template(
        DEFAULT_TEMPLATE_YAML,
        Path::new("<built-in>/default_pipeline.yaml"),
    )
}

/// Serializes a value as YAML (used for `execution.yaml` and `template show`).
pub fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, SpecError> {
    serde_yaml::to_string(value).map_err(|e| SpecError::Invalid {
        path: "<memory>".into(),
        problems: vec![Problem {
            line: 1,
            column: 1,
            key: None,
            message: e.to_string(),
        }],
    })
}

/// `text` (a YAML mapping, or empty) with the top-level `key` set to `value`, other keys kept.
pub fn with_top_level_key(
    text: &str,
    key: &str,
    value: &str,
    path: &Path,
) -> Result<String, SpecError> {
    let mut doc: serde_yaml::Mapping = if text.trim().is_empty() {
        serde_yaml::Mapping::new()
    } else {
        from_yaml(text, path)?
    };
    doc.insert(key.into(), value.into());
    to_yaml(&doc)
}

/// Parses YAML without a schema (for files the runner wrote itself, like `execution.yaml`).
pub fn from_yaml<T: serde::de::DeserializeOwned>(
    source: &str,
    path: &Path,
) -> Result<T, SpecError> {
    load::parse_yaml(source, path, None)
}
