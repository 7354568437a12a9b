//! `budget status|set|reset|history` (seed §6.5): limits in `~/.autowrkers/budgets.yaml` and
//! `execution.yaml`, spending from the ledger.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::json;

use super::args::{BudgetCommand, ScopeArg};
use super::output::usd_with_unknown;
use autowrkers::budget::ledger::{execution_key, global_key, project_key};
use autowrkers::budget::{Budgets, Ledger, Limit, Sum, this_month};
use autowrkers::engine::short;
use autowrkers::store::{self, Home};

/// Runs a `budget` subcommand.
pub fn run(cmd: BudgetCommand, home: Home) -> Result<u8> {
    match cmd {
        BudgetCommand::Status { path, json } => status(&home, &path, json),
        BudgetCommand::Set {
            scope,
            id,
            limit,
            path,
        } => set(&home, scope, id, limit, &path),
        BudgetCommand::Reset { scope, id, path } => reset(&home, scope, id, &path),
        BudgetCommand::History { days, json } => history(&home, days, json),
    }
}

fn project_of(id: Option<String>, path: &Path) -> Result<String> {
    let p = id.map(PathBuf::from).unwrap_or_else(|| path.to_path_buf());
    Ok(p.canonicalize()
        .map_err(|e| anyhow::anyhow!("no such project {}: {e}", p.display()))?
        .to_string_lossy()
        .into_owned())
}

/// The executions of `project` that `budget status` shows: those with a budget of their own
/// and those still going. From the index; from the files when it cannot be opened.
fn executions_to_show(home: &Home, project: &Path) -> Result<Vec<store::ExecutionSummary>> {
    Ok(match store::Catalog::open(home, Some(project))? {
        Some(catalog) => catalog.live_of(project),
        None => store::executions_of(project)
            .iter()
            .map(store::summarize)
            .filter(store::ExecutionSummary::is_live)
            .collect(),
    })
}

/// USD held right now by live runners (their reservation files).
fn reserved(home: &Home) -> f64 {
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

fn money(sum: &Sum, counted: f64) -> String {
    usd_with_unknown(counted, sum.unknown > 0, sum.unknown as u32)
}

fn status(home: &Home, path: &Path, as_json: bool) -> Result<u8> {
    let budgets = Budgets::load(home)?;
    let totals = Ledger::new(home).totals();
    let month = this_month();
    let held = reserved(home);
    let mut rows: Vec<(String, String, Limit, Sum, f64)> = Vec::new();
    let g = totals.get(&global_key(&month));
    rows.push((
        "global".into(),
        month.clone(),
        budgets.global.clone(),
        g,
        budgets.global.counted(&month, g.usd),
    ));
    if let Ok(project) = project_of(None, path) {
        let limit = budgets.project(&project);
        let p = totals.get(&project_key(&month, &project));
        rows.push((
            format!("project {project}"),
            month.clone(),
            limit.clone(),
            p,
            limit.counted(&month, p.usd),
        ));
        for e in executions_to_show(home, Path::new(&project))? {
            let sum = totals.get(&execution_key(&e.id));
            let limit = Limit {
                limit: e.budget_limit,
                ..Limit::default()
            };
            rows.push((
                format!("execution {} ({})", short(&e.id), e.status),
                "whole run".into(),
                limit,
                sum,
                sum.usd,
            ));
        }
    }
    for (scope, period, limit, sum, spent) in rows {
        let left = limit.limit.map(|l| (l - spent - held).max(0.0));
        if as_json {
            println!(
                "{}",
                json!({"scope": scope, "period": period, "limit": limit.limit, "spent": spent, "reserved": held,
                       "left": left, "unknown_calls": sum.unknown, "calls": sum.calls})
            );
        } else {
            let lim = limit
                .limit
                .map_or("no limit".to_owned(), |l| format!("${l:.2}"));
            let left = left.map_or(String::new(), |l| format!(", left ${l:.4}"));
            println!(
                "{scope:<40} {period:<10} {} / {lim} (reserved ${held:.4}{left}), {} calls",
                money(&sum, spent),
                sum.calls
            );
        }
    }
    Ok(0)
}

fn set(home: &Home, scope: ScopeArg, id: Option<String>, limit: f64, path: &Path) -> Result<u8> {
    let value = (limit > 0.0).then_some(limit);
    match scope {
        ScopeArg::Execution => {
            let Some(id) = id else {
                bail!("--scope execution needs --id <execution id or prefix>")
            };
            let dir = store::find_execution(home, Some(path), &id)?;
            dir.edit_request(|r| r.budget_limit = value)?;
            store::note_changed(home, &dir);
            println!(
                "execution {} budget: {}",
                short(&dir.id()),
                value.map_or("no limit".into(), |v| format!("${v:.2}"))
            );
        }
        ScopeArg::Project | ScopeArg::Global => {
            let mut budgets = Budgets::load(home)?;
            let label = if scope == ScopeArg::Global {
                budgets.global.limit = value;
                "global".to_owned()
            } else {
                let project = project_of(id, path)?;
                budgets.projects.entry(project.clone()).or_default().limit = value;
                format!("project {project}")
            };
            budgets.save(home)?;
            println!(
                "{label} budget per month: {}",
                value.map_or("no limit".into(), |v| format!("${v:.2}"))
            );
        }
    }
    Ok(0)
}

fn reset(home: &Home, scope: ScopeArg, id: Option<String>, path: &Path) -> Result<u8> {
    let month = this_month();
    let totals = Ledger::new(home).totals();
    let mut budgets = Budgets::load(home)?;
    let (label, limit, raw) = match scope {
        ScopeArg::Execution => bail!(
            "execution budgets are not periodic: set a new limit with `budget set --scope execution`"
        ),
        ScopeArg::Global => (
            "global".to_owned(),
            &mut budgets.global,
            totals.get(&global_key(&month)).usd,
        ),
        ScopeArg::Project => {
            let project = project_of(id, path)?;
            let raw = totals.get(&project_key(&month, &project)).usd;
            (
                format!("project {project}"),
                budgets.projects.entry(project).or_default(),
                raw,
            )
        }
    };
    limit.reset_baseline = Some(raw);
    limit.reset_period = Some(month.clone());
    budgets.save(home)?;
    println!(
        "{label}: counting from $0 for the rest of {month} (${raw:.4} spent before the reset)"
    );
    Ok(0)
}

fn history(home: &Home, days: u32, as_json: bool) -> Result<u8> {
    let totals = Ledger::new(home).totals();
    let since = (chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
        .format("%Y-%m-%d")
        .to_string();
    let mut total = 0.0;
    let mut unknown = 0;
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
        total += sum.usd;
        unknown += sum.unknown;
        if as_json {
            println!(
                "{}",
                json!({"day": day, "provider": provider, "model": model, "calls": sum.calls, "usd": sum.usd,
                       "unknown_calls": sum.unknown, "tokens": sum.tokens})
            );
        } else {
            println!(
                "{day}  {provider:<18} {model:<32} {:>5} calls {:>9} in {:>8} out  {}",
                sum.calls,
                sum.tokens.input + sum.tokens.cached_input,
                sum.tokens.output,
                money(sum, sum.usd)
            );
        }
    }
    if !as_json {
        println!(
            "total over {days} days: {}",
            usd_with_unknown(total, unknown > 0, unknown as u32)
        );
    }
    Ok(0)
}
