//! `convergence:` in a template: when the review loop stops for want of progress, and which
//! findings block. The loop's rule is in `engine::findings`; the book's "The review loop"
//! page explains it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn default_plateau_rounds() -> u32 {
    2
}

fn default_blocking() -> String {
    "major".to_owned()
}

/// How the review loop decides it no longer converges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Convergence {
    /// Iterations in a row without a blocking finding resolved before the loop stops
    /// (`workflow:stalled`, plateau).
    #[serde(default = "default_plateau_rounds")]
    pub plateau_rounds: u32,
    /// The least severe finding that blocks (`critical`, `major` or `minor`); findings below it
    /// never keep the loop going.
    #[serde(default = "default_blocking")]
    pub blocking_severity: String,
}

impl Default for Convergence {
    fn default() -> Self {
        Self {
            plateau_rounds: default_plateau_rounds(),
            blocking_severity: default_blocking(),
        }
    }
}

/// The rank of a severity: higher is worse; unknown words count as `major`.
pub fn severity_rank(severity: &str) -> u8 {
    match severity.trim().to_ascii_lowercase().as_str() {
        "critical" | "blocker" => 3,
        "minor" | "low" | "nit" | "info" | "trivial" => 1,
        _ => 2,
    }
}

impl Convergence {
    /// True when a finding of `severity` blocks.
    pub fn blocks(&self, severity: &str) -> bool {
        severity_rank(severity) >= severity_rank(&self.blocking_severity)
    }
}

/// True for the default settings (left out when a template is written).
pub fn is_default(c: &Convergence) -> bool {
    *c == Convergence::default()
}
