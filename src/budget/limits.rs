//! Budget limits (seed §6.5): the global and per-project monthly limits live in
//! `~/.autowrkers/budgets.yaml`; an execution's limit is its `budget_limit` in
//! `execution.yaml`. `budget reset` records what was spent so far in the period as a baseline,
//! so the append-only ledger never needs rewriting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::SpecError;
use crate::store::{Home, write_atomic};

/// A limit and its reset baseline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// USD per calendar month; None for no limit.
    #[serde(default)]
    pub limit: Option<f64>,
    /// USD spent in `reset_period` before the last `budget reset`, not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_baseline: Option<f64>,
    /// The month (`YYYY-MM`) the baseline belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_period: Option<String>,
}

impl Limit {
    /// What counts as spent in `month` when `raw` was spent.
    pub fn counted(&self, month: &str, raw: f64) -> f64 {
        match (&self.reset_period, self.reset_baseline) {
            (Some(p), Some(b)) if p == month => (raw - b).max(0.0),
            _ => raw,
        }
    }
}

/// `~/.autowrkers/budgets.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// Every project together.
    #[serde(default)]
    pub global: Limit,
    /// By absolute project path.
    #[serde(default)]
    pub projects: BTreeMap<String, Limit>,
}

fn path(home: &Home) -> std::path::PathBuf {
    home.root().join("budgets.yaml")
}

impl Budgets {
    /// Reads the file (empty when absent).
    pub fn load(home: &Home) -> Result<Self, SpecError> {
        let p = path(home);
        if !p.exists() {
            return Ok(Self::default());
        }
        crate::spec::from_yaml(&crate::spec::load::read(&p)?, &p)
    }

    /// Writes the file atomically.
    pub fn save(&self, home: &Home) -> std::io::Result<()> {
        let text = crate::spec::to_yaml(self).map_err(std::io::Error::other)?;
        write_atomic(&path(home), text.as_bytes())
    }

    /// The project's limit (default: none).
    pub fn project(&self, project: &str) -> Limit {
        self.projects.get(project).cloned().unwrap_or_default()
    }
}

/// The current month, `YYYY-MM` (UTC), the budget period.
pub fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}
