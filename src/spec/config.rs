//! `<project>/.autowrkers/config.yaml` and `~/.autowrkers/config.yaml`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn default_check_timeout() -> u64 {
    900
}

/// The verifier's commands; each runs with `sh -c` in the worktree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Lint command.
    #[serde(default)]
    pub lint: Option<String>,
    /// Test command.
    #[serde(default)]
    pub test: Option<String>,
    /// Build command.
    #[serde(default)]
    pub build: Option<String>,
    /// Limit for each command.
    #[serde(default = "default_check_timeout")]
    pub timeout_seconds: u64,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            lint: None,
            test: None,
            build: None,
            timeout_seconds: default_check_timeout(),
        }
    }
}

/// Bounds on what one phase may produce, so a runaway reply cannot fill the disk, the terminal
/// or the memory. Each cut is marked where it happens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputLimits {
    /// Largest artifact (a model's answer, a diff, a report); a bigger one fails the phase,
    /// and a model reply is stopped as soon as it passes this size.
    #[serde(default = "default_artifact_bytes")]
    pub artifact_bytes: u64,
    /// Largest phase log; the rest is dropped with a marker.
    #[serde(default = "default_log_bytes")]
    pub log_bytes: u64,
    /// Largest text of one progress event; longer text keeps its end, with a marker.
    #[serde(default = "default_event_bytes")]
    pub event_bytes: u64,
    /// Streamed text is gathered into one progress event per this many milliseconds.
    #[serde(default = "default_coalesce_ms")]
    pub coalesce_ms: u64,
}

fn default_artifact_bytes() -> u64 {
    8 << 20
}
fn default_log_bytes() -> u64 {
    16 << 20
}
fn default_event_bytes() -> u64 {
    4096
}
fn default_coalesce_ms() -> u64 {
    100
}

impl Default for OutputLimits {
    fn default() -> Self {
        Self {
            artifact_bytes: default_artifact_bytes(),
            log_bytes: default_log_bytes(),
            event_bytes: default_event_bytes(),
            coalesce_ms: default_coalesce_ms(),
        }
    }
}

/// Settings of a project, or the global defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Verification commands; detected from the project when absent.
    #[serde(default)]
    pub verify: Option<VerifyConfig>,
    /// Template id or file used when `run` names none.
    #[serde(default)]
    pub default_template: Option<String>,
    /// Default USD limit of an execution.
    #[serde(default)]
    pub budget_limit: Option<f64>,
    /// `owner/name` of the project's GitHub repository.
    #[serde(default)]
    pub github_repo: Option<String>,
    /// Environment variables passed by name to every sandboxed command of the project (the
    /// verifier's checks, `run_command`, agent CLIs), on top of the allow-list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_env: Vec<String>,
    /// Bounds on a phase's artifacts, log and progress events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_limits: Option<OutputLimits>,
    /// Extra folders sandboxed commands may read (toolchains outside the usual places).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sandbox_read_paths: Vec<String>,
    /// How many executions `reconcile` and `watch` run at once (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_executions: Option<u32>,
    /// `autowrkers watch`: the debounce and the triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<super::WatchConfig>,
}

impl super::ProviderConfig {
    /// A config of `kind` with only a model and a URL: what `provider test|detect` and
    /// `serve`'s detection use to reach a provider outside any template.
    pub fn bare(kind: super::ProviderType, model: Option<String>, url: Option<String>) -> Self {
        Self {
            provider_type: kind,
            model_name: model.unwrap_or_default(),
            api_url: url,
            temperature: 0.0,
            context_length: 8192,
            extra_params: Default::default(),
            fallback_provider: None,
        }
    }
}
