//! `watch:` in `.autowrkers/config.yaml`: how `autowrkers watch` waits out a burst of saves,
//! and the triggers that start a pipeline when matching files change.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn default_debounce_ms() -> u64 {
    300
}

/// `watch:` settings of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// Quiet time after the last change before the watcher acts (a burst of saves is one
    /// change).
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// Pipelines started when files matching their globs change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<WatchTrigger>,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            debounce_ms: default_debounce_ms(),
            triggers: Vec::new(),
        }
    }
}

/// What a trigger does while the execution it started last is still running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnBusy {
    /// Start again once it has ended (several changes meanwhile start one run).
    #[default]
    Queue,
    /// Cancel it and start again now.
    Restart,
    /// Ignore the change.
    Skip,
}

/// Re-run a pipeline when files matching `paths` change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchTrigger {
    /// A name for messages (default: the template).
    #[serde(default)]
    pub name: Option<String>,
    /// Globs relative to the project (`src/**/*.rs`, `*.md`); files git ignores never match.
    pub paths: Vec<String>,
    /// The template: an id or name, or a YAML file.
    pub template: String,
    /// The task, a Jinja template: `changed_files` is the list of changed paths.
    pub task: String,
    /// While its last execution still runs: `queue`, `restart` or `skip`.
    #[serde(default)]
    pub on_busy: OnBusy,
    /// USD limit of each execution it starts.
    #[serde(default)]
    pub budget_limit: Option<f64>,
}

impl WatchTrigger {
    /// The name messages use.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.template)
    }
}
