//! `/api/workflow/artifacts` (seed §5.3): list an execution's artifacts, read, replace and
//! download one. Ids are the public ones (`<execution>.<iteration>.<phase>`) that
//! `workflow artifacts` prints. A replacement is checked like `artifact edit` (a JSON
//! artifact must pass its schema), written, and recorded as a hand edit, so the phases that
//! read it run again.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::engine::json_artifact;
use crate::spec::{
    Artifact, WorkflowExecution, parse_public_artifact_id, public_artifact_id, run_key,
};
use crate::store::{self, ExecutionDir, write_atomic};

/// The routes of this module.
pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/executions/{id}/artifacts", get(list))
        .route("/artifacts/{id}", get(show).put(update))
        .route("/artifacts/{id}/download", get(download))
}

/// An artifact as the API shows it (its public id, not the one inside `state.json`).
pub(super) fn artifact_json(execution_id: &str, a: &Artifact) -> Value {
    json!({
        "id": public_artifact_id(execution_id, a.iteration, &a.phase_id),
        "execution_id": execution_id,
        "phase_id": a.phase_id,
        "phase_execution_id": a.phase_execution_id,
        "artifact_type": a.artifact_type,
        "iteration": a.iteration,
        "file_path": a.file_path,
        "sha256": a.sha256,
        "is_edited": a.is_edited,
        "created_at": a.created_at,
    })
}

/// The execution and the artifact a public id names.
fn locate(
    state: &AppState,
    id: &str,
) -> Result<(ExecutionDir, WorkflowExecution, Artifact), ApiError> {
    let (execution, iteration, phase) = parse_public_artifact_id(id).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{id}` is not an artifact id (`<execution>.<iteration>.<phase>`, as `workflow artifacts` prints)"
        ))
    })?;
    let dir = state.find(&execution)?;
    let st = dir.read_state()?;
    let key = run_key(iteration, &phase);
    let artifact = st
        .artifacts
        .iter()
        .find(|a| a.id == key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no artifact `{id}`")))?;
    Ok((dir, st, artifact))
}

/// The phases that read `artifact` (their next run sees the new version).
fn readers(st: &WorkflowExecution, artifact: &Artifact) -> Vec<String> {
    let mut out: Vec<String> = st
        .phase_executions
        .iter()
        .filter(|r| r.input_artifact_ids.contains(&artifact.id))
        .map(|r| r.phase_id.clone())
        .collect();
    out.dedup();
    out
}

/// `GET /executions/{id}/artifacts`.
async fn list(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let dir = state.find(&id)?;
    let st = dir.read_state()?;
    let list: Vec<Value> = st
        .artifacts
        .iter()
        .map(|a| artifact_json(&st.id, a))
        .collect();
    Ok(Json(json!({"artifacts": list})))
}

/// `GET /artifacts/{id}`: the artifact and its content.
async fn show(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (dir, st, a) = locate(&state, &id)?;
    let content = dir.read_artifact(&a.file_path)?;
    let mut value = artifact_json(&st.id, &a);
    value["content"] = content.into();
    value["read_by"] = readers(&st, &a).into();
    Ok(Json(value))
}

/// `PUT /artifacts/{id}`: the body is the new content, raw.
async fn update(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (dir, st, a) = locate(&state, &id)?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the artifact must be UTF-8 text"))?;
    if a.artifact_type.is_json() {
        json_artifact(a.artifact_type, text.as_str()).map_err(ApiError::invalid)?;
    }
    let target = dir.artifact_path(&a.file_path)?;
    write_atomic(&target, text.as_bytes()).map_err(|e| store::StoreError::io(&target, e))?;
    // Recorded now, as `artifact edit` does; a live runner records it at its next safe point.
    if !store::runner_alive(&dir) {
        state.engine.record_hand_edits(&dir)?;
    }
    let after = dir.read_state()?;
    Ok(Json(json!({
        "saved": public_artifact_id(&st.id, a.iteration, &a.phase_id),
        "status": after.status.as_str(),
        "stale_phases": readers(&st, &a),
    })))
}

/// `GET /artifacts/{id}/download`: the file as an attachment.
async fn download(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (dir, _, a) = locate(&state, &id)?;
    let content = dir.read_artifact(&a.file_path)?;
    let kind = if a.artifact_type.is_json() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let name = format!(
        "{}-{}.{}",
        a.iteration,
        a.phase_id.replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
            "_"
        ),
        a.artifact_type.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        content,
    ))
}
