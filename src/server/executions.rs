//! `/api/workflow/executions` (seed §5.2): list, get, start, the control requests and delete.
//! Each is what the CLI command of the same name does: start creates the execution and hands
//! it to a detached runner; control requests write `execution.yaml` and start a runner when
//! none is live; get reads `execution.yaml` and `state.json`.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, reap};
use crate::engine::{Applier, Control, StartOptions, detached_runner, request_skip, submit};
use crate::spec::{PhaseRole, PhaseStatus, TriggerMode, WorkflowExecution, WorkflowStatus};
use crate::store::{self, ExecutionDir, ExecutionSummary};

/// The routes of this module.
pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/executions", get(list).post(start))
        .route("/executions/{id}", get(show).delete(delete))
        .route("/executions/{id}/skip-phase", post(skip_phase))
        .route("/executions/{id}/{action}", post(control))
}

/// The filters of the list.
#[derive(Debug, Deserialize)]
struct ListQuery {
    project: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

fn summary_json(s: &ExecutionSummary) -> Value {
    let dir = ExecutionDir::new(&s.dir);
    json!({
        "id": s.id,
        "status": store::shown_status(&s.status, &dir),
        "template": s.template,
        "task_description": s.task,
        "project_path": s.project,
        "created_at": s.created_at,
        "updated_at": updated_at(&dir),
        "total_cost_usd": s.cost_usd,
        "budget_limit": s.budget_limit,
    })
}

/// When `state.json` last changed (RFC 3339).
fn updated_at(dir: &ExecutionDir) -> Option<String> {
    let modified = std::fs::metadata(dir.state_path()).ok()?.modified().ok()?;
    Some(
        chrono::DateTime::<chrono::Utc>::from(modified)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// `GET /executions?project=&status=&limit=`: newest first, from the index (each row checked
/// against its files), limited to 50 unless asked.
async fn list(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    let project = match &q.project {
        Some(p) => Some(state.project(Some(p))?),
        None => None,
    };
    let served = state.projects()?;
    let keep = |s: &ExecutionSummary| {
        let p = Path::new(&s.project);
        project
            .as_deref()
            .map_or(served.iter().any(|x| x == p), |want| want == p)
    };
    let rows: Vec<ExecutionSummary> = match store::Catalog::open(&state.home, project.as_deref())? {
        Some(catalog) => take_shown(catalog.newest_first().filter(keep), limit, &q.status),
        None => {
            let mut all: Vec<ExecutionSummary> =
                store::all_executions(&state.home, project.as_deref())?
                    .iter()
                    .map(store::summarize)
                    .filter(keep)
                    .collect();
            all.sort_by(|a, b| b.created_at.cmp(&a.created_at));
            take_shown(all.into_iter(), limit, &q.status)
        }
    };
    Ok(Json(
        json!({"executions": rows.iter().map(summary_json).collect::<Vec<_>>()}),
    ))
}

/// The first `limit` rows whose shown status is `status` (`running` takes `interrupted` too).
fn take_shown(
    rows: impl Iterator<Item = ExecutionSummary>,
    limit: usize,
    status: &Option<String>,
) -> Vec<ExecutionSummary> {
    rows.filter(|s| {
        status.as_deref().is_none_or(|want| {
            let shown = store::shown_status(&s.status, &ExecutionDir::new(&s.dir));
            want == shown || (want == "running" && shown == "interrupted")
        })
    })
    .take(limit)
    .collect()
}

/// What the dashboard may offer for an execution in `status` (seed Appendix B).
fn actions(state: &WorkflowExecution, alive: bool) -> Vec<&'static str> {
    use WorkflowStatus as S;
    let running_phase = state
        .phase_executions
        .iter()
        .any(|r| r.iteration == state.iteration && r.status == PhaseStatus::Running);
    let mut out = Vec::new();
    match state.status {
        S::Running if alive => {
            out.push("pause");
            if running_phase {
                out.push("skip-phase");
            }
        }
        S::Running | S::Pending if !alive => out.push("resume"),
        S::Paused | S::BudgetExceeded => out.push("resume"),
        S::AwaitingApproval => out.extend(["approve", "reject"]),
        _ => {}
    }
    if !state.status.is_terminal() {
        out.push("cancel");
    }
    out
}

/// Everything the execution page shows.
pub(super) fn detail(dir: &ExecutionDir) -> Result<Value, ApiError> {
    let request = dir.read_request()?;
    let state = dir.read_state()?;
    let alive = store::runner_alive(dir);
    let phases: Vec<Value> = request
        .template
        .phases
        .iter()
        .map(|p| {
            // Its latest run: a phase that does not iterate keeps its first iteration's.
            let run = state
                .phase_executions
                .iter()
                .rev()
                .find(|r| r.phase_id == p.id && r.iteration <= state.iteration);
            json!({
                "id": p.id,
                "name": p.name,
                "role": p.role,
                "provider": p.provider_config.provider_type.as_str(),
                "model": p.provider_config.model_name,
                "order": p.order,
                "parallel_with": p.parallel_with,
                "can_skip": p.can_skip,
                "status": run.map_or(PhaseStatus::Pending, |r| r.status),
                "iteration": run.map(|r| r.iteration),
                "cost_usd": run.map(|r| r.cost_usd),
                "started_at": run.and_then(|r| r.started_at.clone()),
                "completed_at": run.and_then(|r| r.completed_at.clone()),
                "is_verifier": p.role == PhaseRole::Verifier,
            })
        })
        .collect();
    let artifacts: Vec<Value> = state
        .artifacts
        .iter()
        .map(|a| super::artifacts::artifact_json(&state.id, a))
        .collect();
    Ok(json!({
        "id": state.id,
        "status": store::shown_status(state.status.as_str(), dir),
        "runner_alive": alive,
        "message": state.message,
        "task_description": request.task_description,
        "project_path": request.project_path,
        "template": {"id": request.template.id, "name": request.template.name, "source": request.template_source},
        "trigger_mode": request.trigger_mode,
        "interactive_mode": request.interactive_mode,
        "iteration": state.iteration,
        "max_iterations": request.template.max_iterations,
        "iteration_behavior": request.iteration_behavior,
        "budget_limit": request.budget_limit,
        "total_cost_usd": state.total_cost_usd,
        "cost_incomplete": state.cost_incomplete,
        "total_tokens": state.total_tokens,
        "created_at": request.created_at,
        "started_at": state.started_at,
        "completed_at": state.completed_at,
        "current_phase_id": state.current_phase_id,
        "workspace": state.workspace,
        "phases": phases,
        "phase_executions": state.phase_executions,
        "artifacts": artifacts,
        "actions": actions(&state, alive),
        "control": request.control,
    }))
}

/// `GET /executions/{id}`.
async fn show(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(detail(&state.find(&id)?)?))
}

/// The body of `POST /executions` (seed §2.2's names).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    project_path: String,
    task_description: String,
    /// A template id or name, or a YAML file (absolute, or relative to the project).
    template_id: Option<String>,
    budget_limit: Option<f64>,
    #[serde(default)]
    interactive_mode: bool,
}

/// `POST /executions`: checked as `run` checks, created, and handed to a detached runner.
async fn start(
    State(state): State<Arc<AppState>>,
    body: Result<Json<StartBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if body.task_description.trim().is_empty() {
        return Err(ApiError::bad_request("task_description is empty"));
    }
    if body.budget_limit.is_some_and(|b| b.is_nan() || b <= 0.0) {
        return Err(ApiError::bad_request(
            "budget_limit must be a positive number of USD",
        ));
    }
    let project = state.project(Some(&body.project_path))?;
    let engine = &state.engine;
    let config = engine.project_config(&project)?;
    let found = engine.resolve_template(body.template_id.as_deref(), &project)?;
    engine.check_startable(&found.template, &project, false)?;
    let dir = engine.create(StartOptions {
        trigger: TriggerMode::ManualTask,
        project,
        task: body.task_description,
        template: found.template,
        template_source: found.source,
        budget: body.budget_limit.or(config.budget_limit),
        in_place: false,
        sandbox: None,
        include_uncommitted: false,
        no_verify: false,
        interactive: body.interactive_mode,
        github: None,
    })?;
    reap(detached_runner(&state.exe, &dir)?);
    Ok((StatusCode::CREATED, Json(detail(&dir)?)))
}

/// `POST /executions/{id}/pause|resume|cancel|approve|reject`: writes the request; starts a
/// runner when none is live to apply it.
async fn control(
    State(state): State<Arc<AppState>>,
    UrlPath((id, action)): UrlPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let what = Control::parse(&action)
        .ok_or_else(|| ApiError::not_found(format!("no action `{action}`")))?;
    let dir = state.find(&id)?;
    let (before, applier) = submit(&state.engine, &dir, what)?;
    if what == Control::Resume && before.status.is_terminal() {
        return Err(ApiError::conflict(format!(
            "execution {} is already {}",
            crate::engine::short(&before.id),
            before.status.as_str()
        )));
    }
    if applier == Applier::Caller {
        reap(detached_runner(&state.exe, &dir)?);
    }
    Ok(Json(
        json!({"requested": what.as_str(), "execution": detail(&dir)?}),
    ))
}

/// The body of `skip-phase`: a phase id or name; none skips what runs now.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SkipBody {
    phase: Option<String>,
}

/// `POST /executions/{id}/skip-phase`.
async fn skip_phase(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    body: Option<Json<SkipBody>>,
) -> Result<Json<Value>, ApiError> {
    let dir = state.find(&id)?;
    let body = body.map(|b| b.0).unwrap_or_default();
    let (phases, iteration) = request_skip(&dir, body.phase.as_deref())?;
    Ok(Json(
        json!({"requested": "skip-phase", "phases": phases, "iteration": iteration}),
    ))
}

/// Query of `DELETE`: `branch=true` deletes the result branch too.
#[derive(Debug, Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    branch: bool,
}

/// `DELETE /executions/{id}`: refused (409) while a runner works on it.
async fn delete(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<Json<Value>, ApiError> {
    let dir = state.find(&id)?;
    // Off the async workers: a run that has just ended is waited for while its runner
    // writes its last commit (`Engine::delete_execution`).
    let removed =
        tokio::task::spawn_blocking(move || state.engine.delete_execution(&dir, q.branch))
            .await
            .map_err(|e| ApiError::internal(format!("removing the execution stopped: {e}")))??;
    Ok(Json(
        json!({"deleted": removed.id, "branch": removed.branch}),
    ))
}
