//! `/api/workflow/budget` (seed §5.5): every scope's status, one scope's status and limit, the
//! ledger's history, and the cost estimate of a template and task — the same numbers as
//! `budget status`, `budget set`, `budget history` and `run --dry-run`.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::budget::report::{self, Scope};

/// The routes of this module.
pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/budget", get(status))
        .route("/budget/history", get(history))
        .route("/budget/{scope}/{id}", get(one).put(set))
        .route("/cost-estimate", get(estimate))
}

#[derive(Debug, Default, Deserialize)]
struct ProjectQuery {
    project: Option<String>,
}

/// `GET /budget?project=`: the global month, the project's month and its live executions.
async fn status(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ProjectQuery>,
) -> Result<Json<Value>, ApiError> {
    let project = state.project(q.project.as_deref()).ok();
    let rows = report::status(&state.home, project.as_deref())?;
    Ok(Json(json!({"budgets": rows})))
}

fn scope(s: &str) -> Result<Scope, ApiError> {
    Scope::parse(s).ok_or_else(|| {
        ApiError::not_found(format!(
            "no budget scope `{s}`: global, project or execution"
        ))
    })
}

/// `GET /budget/{scope}/{id}`: `global/current`, `project/<path, URL-encoded>`,
/// `execution/<id or prefix>`.
async fn one(
    State(state): State<Arc<AppState>>,
    UrlPath((s, id)): UrlPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let row = match scope(&s)? {
        Scope::Execution => report::execution_status(&state.home, &state.find(&id)?)?,
        Scope::Global => report::status(&state.home, None)?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::internal("no global row"))?,
        Scope::Project => {
            let project = state.project(Some(&id))?;
            report::status(&state.home, Some(&project))?
                .into_iter()
                .nth(1)
                .ok_or_else(|| ApiError::internal("no project row"))?
        }
    };
    Ok(Json(json!(row)))
}

/// The body of `PUT /budget/{scope}/{id}`: a limit in USD; `null` or 0 removes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    limit: Option<f64>,
}

/// `PUT /budget/{scope}/{id}`.
async fn set(
    State(state): State<Arc<AppState>>,
    UrlPath((s, id)): UrlPath<(String, String)>,
    body: Result<Json<SetBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if body.limit.is_some_and(|l| l < 0.0 || !l.is_finite()) {
        return Err(ApiError::bad_request(
            "limit must be a positive number of USD (0 or null removes it)",
        ));
    }
    let value = body.limit.filter(|l| *l > 0.0);
    match scope(&s)? {
        Scope::Execution => {
            let dir = state.find(&id)?;
            report::set_execution(&state.home, &dir, value)?;
        }
        Scope::Global => report::set_monthly(&state.home, None, value)?,
        Scope::Project => {
            let project = state.project(Some(&id))?;
            report::set_monthly(&state.home, Some(&project.to_string_lossy()), value)?;
        }
    }
    one(State(state), UrlPath((s, id))).await
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    days: Option<u32>,
}

/// `GET /budget/history?days=30`: spending per day, provider and model.
async fn history(State(state): State<Arc<AppState>>, Query(q): Query<HistoryQuery>) -> Json<Value> {
    Json(json!({"history": report::history(&state.home, q.days.unwrap_or(30))}))
}

#[derive(Debug, Deserialize)]
struct EstimateQuery {
    template: Option<String>,
    task: String,
    project: Option<String>,
}

/// `GET /cost-estimate?template=&task=&project=`: one worst-case call per phase run, as
/// `run --dry-run` prices it (prompts rendered, nothing called).
async fn estimate(
    State(state): State<Arc<AppState>>,
    Query(q): Query<EstimateQuery>,
) -> Result<Json<Value>, ApiError> {
    let project = state.project(q.project.as_deref())?;
    let engine = &state.engine;
    let found = engine.resolve_template(q.template.as_deref(), &project)?;
    let estimates = engine.estimate(&found.template, Path::new(&project), &q.task)?;
    let mut total = 0.0;
    let mut unknown = Vec::new();
    let phases: Vec<Value> = estimates
        .iter()
        .map(|e| {
            match e.per_call_usd {
                Some(c) => total += c * f64::from(e.runs),
                None => unknown.push(e.name.clone()),
            }
            json!({
                "phase_id": e.phase_id, "name": e.name, "provider": e.provider,
                "prompt_tokens": e.prompt_tokens, "output_cap": e.output_cap,
                "per_call_usd": e.per_call_usd, "runs": e.runs,
                "subtotal_usd": e.per_call_usd.map(|c| c * f64::from(e.runs)),
            })
        })
        .collect();
    Ok(Json(json!({
        "template": found.template.id,
        "max_iterations": found.template.max_iterations,
        "phases": phases,
        "total_usd": total,
        "unknown_cost_phases": unknown,
    })))
}
