//! `budget status|set|reset|history` (seed §6.5): limits in `~/.autowrkers/budgets.yaml` and
//! `execution.yaml`, spending from the ledger.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::json;

use super::args::{BudgetCommand, ScopeArg};
use super::output::usd_with_unknown;
use autowrkers::budget::ledger::{global_key, project_key};
use autowrkers::budget::report;
use autowrkers::budget::{Budgets, Ledger, this_month};
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

fn status(home: &Home, path: &Path, as_json: bool) -> Result<u8> {
    let project = project_of(None, path).ok();
    for row in report::status(home, project.as_deref().map(Path::new))? {
        if as_json {
            println!(
                "{}",
                json!({"scope": row.label, "period": row.period, "limit": row.limit, "spent": row.spent,
                       "reserved": row.reserved, "left": row.left, "unknown_calls": row.unknown_calls, "calls": row.calls})
            );
        } else {
            let lim = row
                .limit
                .map_or("no limit".to_owned(), |l| format!("${l:.2}"));
            let left = row
                .left
                .map_or(String::new(), |l| format!(", left ${l:.4}"));
            println!(
                "{:<40} {:<10} {} / {lim} (reserved ${:.4}{left}), {} calls",
                row.label,
                row.period,
                usd_with_unknown(row.spent, row.unknown_calls > 0, row.unknown_calls as u32),
                row.reserved,
                row.calls
            );
        }
    }
    Ok(0)
}

fn set(home: &Home, scope: ScopeArg, id: Option<String>, limit: f64, path: &Path) -> Result<u8> {
    let value = (limit > 0.0).then_some(limit);
    let shown = value.map_or("no limit".into(), |v| format!("${v:.2}"));
    match scope {
        ScopeArg::Execution => {
            let Some(id) = id else {
                bail!("--scope execution needs --id <execution id or prefix>")
            };
            let dir = store::find_execution(home, Some(path), &id)?;
            report::set_execution(home, &dir, value)?;
            println!("execution {} budget: {shown}", short(&dir.id()));
        }
        ScopeArg::Global => {
            report::set_monthly(home, None, value)?;
            println!("global budget per month: {shown}");
        }
        ScopeArg::Project => {
            let project = project_of(id, path)?;
            report::set_monthly(home, Some(&project), value)?;
            println!("project {project} budget per month: {shown}");
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
    let mut total = 0.0;
    let mut unknown = 0;
    for d in report::history(home, days) {
        let sum = d.sum;
        total += sum.usd;
        unknown += sum.unknown;
        if as_json {
            println!(
                "{}",
                json!({"day": d.day, "provider": d.provider, "model": d.model, "calls": sum.calls, "usd": sum.usd,
                       "unknown_calls": sum.unknown, "tokens": sum.tokens})
            );
        } else {
            println!(
                "{}  {:<18} {:<32} {:>5} calls {:>9} in {:>8} out  {}",
                d.day,
                d.provider,
                d.model,
                sum.calls,
                sum.tokens.input + sum.tokens.cached_input,
                sum.tokens.output,
                usd_with_unknown(sum.usd, sum.unknown > 0, sum.unknown as u32)
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
