//! `/api/workflow/templates` (seed §5.1): list, get, create, update, delete, duplicate, import,
//! export, and set-default. Templates are files: these routes go through the same
//! `templates` functions as the CLI, every template is checked before it is written, and a
//! refused one is answered 422 with its file, line and column.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::spec;
use crate::templates::{self, Found};

/// The routes of this module.
pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/templates", get(list).post(create))
        .route("/templates/import", post(import))
        .route("/templates/{id}", get(show).put(update).delete(delete))
        .route("/templates/{id}/duplicate", post(duplicate))
        .route("/templates/{id}/export", get(export))
        .route("/templates/{id}/default", post(set_default))
}

/// Which project's templates (`project`, a path), and for writes whether the global folder.
#[derive(Debug, Default, Deserialize)]
struct Where {
    project: Option<String>,
    #[serde(default)]
    global: bool,
}

fn text(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body must be UTF-8 YAML"))
}

fn summary(f: &Found, default: Option<&str>) -> Value {
    json!({
        "id": f.template.id,
        "name": f.template.name,
        "description": f.template.description,
        "scope": f.scope,
        "source": f.source,
        "phases": f.template.phases.len(),
        "max_iterations": f.template.max_iterations,
        "is_default": default.map_or(f.template.is_default, |d| d == f.template.id),
        "editable": f.scope != "built-in",
    })
}

/// `GET /templates?project=`: the valid templates, and the invalid files with their errors.
async fn list(
    State(state): State<Arc<AppState>>,
    Query(w): Query<Where>,
) -> Result<Json<Value>, ApiError> {
    let project = state.project(w.project.as_deref())?;
    let default = state.engine.configured_default(&project)?;
    let (found, errors) = templates::list(&project, &state.home);
    Ok(Json(json!({
        "templates": found.iter().map(|f| summary(f, default.as_deref())).collect::<Vec<_>>(),
        "errors": errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })))
}

fn resolve(state: &AppState, project: &Path, id: &str) -> Result<Found, ApiError> {
    Ok(templates::resolve(Some(id), project, &state.home, None)?)
}

/// `GET /templates/{id}`: the template (as JSON and as its YAML) and where it lives.
async fn show(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(w): Query<Where>,
) -> Result<Json<Value>, ApiError> {
    let project = state.project(w.project.as_deref())?;
    let found = resolve(&state, &project, &id)?;
    let yaml = match found.scope {
        "project" | "global" | "file" => std::fs::read_to_string(&found.source)
            .map_err(|e| ApiError::internal(format!("{}: {e}", found.source)))?,
        _ => spec::to_yaml(&found.template)?,
    };
    let default = state.engine.configured_default(&project)?;
    Ok(Json(json!({
        "template": found.template,
        "yaml": yaml,
        "summary": summary(&found, default.as_deref()),
    })))
}

/// The body of `POST /templates` and `duplicate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    /// The template copied (default: the built-in default).
    from: Option<String>,
    #[serde(default)]
    global: bool,
}

fn created(template: &spec::WorkflowTemplate, file: &Path) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({"id": template.id, "name": template.name, "source": file})),
    )
}

fn body<T: serde::de::DeserializeOwned>(
    b: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// `POST /templates`: a copy of `from` named `name`.
async fn create(
    State(state): State<Arc<AppState>>,
    Query(w): Query<Where>,
    b: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b = body(b)?;
    let project = state.project(w.project.as_deref())?;
    let from = b.from.as_deref().unwrap_or("default");
    let (t, file) = templates::create_from(&state.home, &project, from, &b.name, b.global)?;
    Ok(created(&t, &file))
}

/// `POST /templates/{id}/duplicate`.
async fn duplicate(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(w): Query<Where>,
    b: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b = body(b)?;
    let project = state.project(w.project.as_deref())?;
    let (t, file) = templates::create_from(&state.home, &project, &id, &b.name, b.global)?;
    Ok(created(&t, &file))
}

/// `PUT /templates/{id}`: the body is the new YAML; a project or global template only.
async fn update(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(w): Query<Where>,
    b: Bytes,
) -> Result<Json<Value>, ApiError> {
    let project = state.project(w.project.as_deref())?;
    let file = PathBuf::from(templates::editable(&state.home, &project, &id)?.source);
    let t = templates::replace(&file, text(&b)?)?;
    Ok(Json(json!({"id": t.id, "name": t.name, "source": file})))
}

/// `DELETE /templates/{id}`.
async fn delete(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(w): Query<Where>,
) -> Result<Json<Value>, ApiError> {
    let project = state.project(w.project.as_deref())?;
    let file = templates::delete(&state.home, &project, &id)?;
    Ok(Json(json!({"deleted": id, "source": file})))
}

/// `POST /templates/import`: the body is a template's YAML, saved as a new file.
async fn import(
    State(state): State<Arc<AppState>>,
    Query(w): Query<Where>,
    b: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let project = state.project(w.project.as_deref())?;
    let origin = Path::new("<import>.yaml");
    let (t, file) = templates::import(&state.home, &project, text(&b)?, origin, w.global)?;
    Ok(created(&t, &file))
}

/// `GET /templates/{id}/export`: the template as YAML.
async fn export(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(w): Query<Where>,
) -> Result<impl IntoResponse, ApiError> {
    let project = state.project(w.project.as_deref())?;
    let found = resolve(&state, &project, &id)?;
    let yaml = spec::to_yaml(&found.template)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/yaml".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.yaml\"", found.template.id),
            ),
        ],
        yaml,
    ))
}

/// `POST /templates/{id}/default`: the project's (or, `global`, every project's) default.
async fn set_default(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(w): Query<Where>,
) -> Result<Json<Value>, ApiError> {
    let project = state.project(w.project.as_deref())?;
    let (id, config) = templates::set_default(&state.home, &project, &id, w.global)?;
    Ok(Json(json!({"default_template": id, "config": config})))
}
