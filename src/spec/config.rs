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
    /// Extra folders sandboxed commands may read (toolchains outside the usual places).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sandbox_read_paths: Vec<String>,
}
