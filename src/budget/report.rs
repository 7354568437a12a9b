//! What `budget status` and `serve`'s budget endpoints show, and the limits they set: one
//! row per scope (the global month, the project's month, each live execution), spending read
//! from the ledger, limits from `budgets.yaml` and each `execution.yaml`.

use std::path::Path;

use serde::Serialize;

use super::ledger::{execution_key, global_key, project_key};
use super::{Budgets, Ledger, Limit, Sum, this_month};
use crate::spec::SpecError;
use crate::store::{self, ExecutionDir, Home, StoreError};

/// Which budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every project together, per calendar month.
    Global,
    /// One project, per calendar month.
    Project,
    /// One execution, for its whole run.
    Execution,
}

impl Scope {
    /// The scope as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Project => "project",
            Self::Execution => "execution",
        }
    }

    /// The scope named `s` (`global`, `project`, `execution`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "global" => Some(Self::Global),
            "project" => Some(Self::Project),
            "execution" => Some(Self::Execution),
            _ => None,
        }
    }
}

/// One budget: its limit, what was spent against it and what is left.
#[derive(Debug, Clone, Serialize)]
pub struct ScopeStatus {
    /// `global`, `project` or `execution`.
    pub scope: &'static str,
    /// The month (global), the project path, or the execution id.
    pub id: String,
    /// How `budget status` names it: `global`, `project <path>`, `execution <id> (<status>)`.
    pub label: String,
    /// `YYYY-MM`, or `whole run`.
    pub period: String,
    /// The limit in USD, if any.
    pub limit: Option<f64>,
    /// Spent and counted against the limit (after a reset, from the reset on).
    pub spent: f64,
    /// Held right now by live runners' reservations.
    pub reserved: f64,
    /// What is left of the limit.
    pub left: Option<f64>,
    /// Calls made.
    pub calls: u64,
    /// Calls whose cost is unknown.
    pub unknown_calls: u64,
}

impl ScopeStatus {
    fn new(
        scope: Scope,
        id: String,
        label: String,
        period: String,
        limit: &Limit,
        (sum, spent): (Sum, f64),
        reserved: f64,
    ) -> Self {
        Self {
            scope: scope.as_str(),
            id,
            label,
            period,
            limit: limit.limit,
            spent,
            reserved,
            left: limit.limit.map(|l| (l - spent - reserved).max(0.0)),
            calls: sum.calls,
            unknown_calls: sum.unknown,
        }
    }
}

/// Why budgets could not be read or set.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// `budgets.yaml` is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A file could not be read or written, or no execution matches.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Execution budgets are for a whole run.
    #[error(
        "execution budgets are not periodic: set a new limit with `budget set --scope execution`"
    )]
    NotPeriodic,
}

/// USD held right now by live runners (their reservation files).
pub fn reserved(home: &Home) -> f64 {
    let dir = home.root().join("ledger").join("reserved");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0.0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(|v| {
            v["pid"]
                .as_u64()
                .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
        })
        .filter_map(|v| v["reserved"].as_f64())
        .fold(0.0, |a, b| a + b)
}

/// The executions of `project` with a budget of their own or still going. From the index;
/// from the files when it cannot be opened.
fn live_executions(
    catalog: Option<&store::Catalog>,
    project: &Path,
) -> Vec<store::ExecutionSummary> {
    match catalog {
        Some(catalog) => catalog.live_of(project),
        None => store::executions_of(project)
            .iter()
            .map(store::summarize)
            .filter(store::ExecutionSummary::is_live)
            .collect(),
    }
}

/// The index tree `budget status` keeps the ledger's sums in, beside the summaries it reads.
const LEDGER_SUMS: &str = "ledger_sums";

/// Every scope's status: the global month, then (given a project) the project's month and
/// its live executions.
pub fn status(home: &Home, project: Option<&Path>) -> Result<Vec<ScopeStatus>, BudgetError> {
    let budgets = Budgets::load(home)?;
    // With a project, its live executions come from the index: the ledger's sums are kept
    // there too, so one index is opened (each sled open zeroes and syncs its free space).
    let catalog = match project {
        Some(p) => store::Catalog::open(home, Some(p))?,
        None => None,
    };
    let ledger = Ledger::new(home);
    let totals = match catalog.as_ref().map(|c| c.tree(LEDGER_SUMS)) {
        Some(Ok(sums)) => ledger.totals_in(&sums),
        _ => ledger.totals(),
    };
    let month = this_month();
    let held = reserved(home);
    let g = totals.get(&global_key(&month));
    let mut rows = vec![ScopeStatus::new(
        Scope::Global,
        month.clone(),
        "global".into(),
        month.clone(),
        &budgets.global,
        (g, budgets.global.counted(&month, g.usd)),
        held,
    )];
    let Some(project) = project else {
        return Ok(rows);
    };
    let path = project.to_string_lossy().into_owned();
    let limit = budgets.project(&path);
    let p = totals.get(&project_key(&month, &path));
    rows.push(ScopeStatus::new(
        Scope::Project,
        path.clone(),
        format!("project {path}"),
        month.clone(),
        &limit,
        (p, limit.counted(&month, p.usd)),
        held,
    ));
    for e in live_executions(catalog.as_ref(), project) {
        let sum = totals.get(&execution_key(&e.id));
        let limit = Limit {
            limit: e.budget_limit,
            ..Limit::default()
        };
        rows.push(ScopeStatus::new(
            Scope::Execution,
            e.id.clone(),
            format!("execution {} ({})", crate::engine::short(&e.id), e.status),
            "whole run".into(),
            &limit,
            (sum, sum.usd),
            held,
        ));
    }
    Ok(rows)
}

/// The status of one execution's budget.
pub fn execution_status(home: &Home, dir: &ExecutionDir) -> Result<ScopeStatus, BudgetError> {
    let request = dir.read_request()?;
    let state = dir.read_state()?;
    let sum = Ledger::new(home).totals().get(&execution_key(&state.id));
    let limit = Limit {
        limit: request.budget_limit,
        ..Limit::default()
    };
    Ok(ScopeStatus::new(
        Scope::Execution,
        state.id.clone(),
        format!(
            "execution {} ({})",
            crate::engine::short(&state.id),
            state.status.as_str()
        ),
        "whole run".into(),
        &limit,
        (sum, sum.usd),
        reserved(home),
    ))
}

/// Sets the monthly limit of the global budget or of `project` (`None` removes it).
pub fn set_monthly(
    home: &Home,
    project: Option<&str>,
    value: Option<f64>,
) -> Result<(), BudgetError> {
    let mut budgets = Budgets::load(home)?;
    match project {
        None => budgets.global.limit = value,
        Some(p) => budgets.projects.entry(p.to_owned()).or_default().limit = value,
    }
    let file = home.root().join("budgets.yaml");
    budgets.save(home).map_err(|e| StoreError::io(&file, e))?;
    Ok(())
}

/// Sets the limit of one execution (`None` removes it) in its `execution.yaml`.
pub fn set_execution(
    home: &Home,
    dir: &ExecutionDir,
    value: Option<f64>,
) -> Result<(), BudgetError> {
    dir.edit_request(|r| r.budget_limit = value)?;
    store::note_changed(home, dir);
    Ok(())
}

/// What one model of one provider cost on one day.
#[derive(Debug, Clone, Serialize)]
pub struct DaySpend {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// The provider type.
    pub provider: String,
    /// The model.
    pub model: String,
    /// The sum of that day's calls.
    #[serde(flatten)]
    pub sum: Sum,
}

/// The ledger's spending per day, provider and model over the last `days` days, oldest first.
pub fn history(home: &Home, days: u32) -> Vec<DaySpend> {
    let totals = Ledger::new(home).totals();
    let since = (chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
        .format("%Y-%m-%d")
        .to_string();
    let mut out = Vec::new();
    for (key, sum) in totals.sums.range("d:".to_owned()..) {
        let Some(rest) = key.strip_prefix("d:") else {
            break;
        };
        let mut parts = rest.splitn(3, ':');
        let (Some(day), Some(provider), Some(model)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if day < since.as_str() {
            continue;
        }
        out.push(DaySpend {
            day: day.to_owned(),
            provider: provider.to_owned(),
            model: model.to_owned(),
            sum: *sum,
        });
    }
    out
}
