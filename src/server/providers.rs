//! `/api/workflow/providers` (seed §5.4): the chat providers with where their key and URL come
//! from, their cached or detected models, and the key store. A key's value is accepted, saved
//! into the age-encrypted store and never returned: status says only whether a key is set and
//! where from.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::keys::{self, Keys};
use crate::providers::{self, CHAT_PROVIDERS, models};
use crate::spec::{ProviderConfig, ProviderType};

/// The routes of this module.
pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/providers", get(list))
        .route("/providers/keys", post(set_keys))
        .route("/providers/keys/status", get(keys_status))
        .route("/providers/{provider}/models", get(models_of))
        .route("/providers/{provider}/detect", post(detect))
}

fn kind(name: &str) -> Result<ProviderType, ApiError> {
    providers::chat_kind(name).map_err(ApiError::not_found)
}

/// Whether each chat provider's key is set, and where from (never the value).
fn key_rows(keys: &Keys) -> Vec<Value> {
    CHAT_PROVIDERS
        .iter()
        .filter_map(|k| providers::info(*k))
        .map(|info| {
            let found = providers::key(&info, None, keys);
            json!({
                "provider": info.kind.as_str(),
                "key_name": info.key_name,
                "key_envs": info.key_envs,
                "key_required": info.key_required,
                "set": found.is_some(),
                "source": found.map(|(_, source)| source.to_string()),
            })
        })
        .collect()
}

/// `GET /providers`: each chat provider, its key status and base URL.
async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    let keys = Keys::new(&state.home);
    let rows: Vec<Value> = key_rows(&keys)
        .into_iter()
        .zip(CHAT_PROVIDERS.iter().filter_map(|k| providers::info(*k)))
        .map(|(mut row, info)| {
            let (url, source) = providers::base_url(&info, None);
            row["base_url"] = url.into();
            row["base_url_source"] = source.to_string().into();
            row["detectable"] = models::detectable(info.kind).into();
            row
        })
        .collect();
    Json(json!({"providers": rows, "key_store_error": keys.store_error()}))
}

/// `GET /providers/keys/status`.
async fn keys_status(State(state): State<Arc<AppState>>) -> Json<Value> {
    let keys = Keys::new(&state.home);
    Json(json!({"keys": key_rows(&keys), "key_store_error": keys.store_error()}))
}

/// `POST /providers/keys`: `{"<provider>": "<key>", …}`; an empty value removes the key.
async fn set_keys(
    State(state): State<Arc<AppState>>,
    body: Result<Json<BTreeMap<String, String>>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(wanted) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if wanted.is_empty() {
        return Err(ApiError::bad_request("no keys given: {\"openai\": \"…\"}"));
    }
    let mut store = keys::load(&state.home).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut changed = Vec::new();
    for (provider, key) in &wanted {
        let name = providers::info(kind(provider)?)
            .and_then(|i| i.key_name)
            .ok_or_else(|| ApiError::bad_request(format!("{provider} takes no key")))?;
        if key.trim().is_empty() {
            store.remove(name);
        } else {
            store.insert(name.to_owned(), key.trim().to_owned());
        }
        changed.push(name);
    }
    keys::save(&state.home, &store).map_err(|e| ApiError::internal(e.to_string()))?;
    let keys = Keys::new(&state.home);
    Ok(Json(json!({"changed": changed, "keys": key_rows(&keys)})))
}

/// `GET /providers/{provider}/models`: the models last detected (none detected: empty).
async fn models_of(
    State(state): State<Arc<AppState>>,
    UrlPath(provider): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let kind = kind(&provider)?;
    let list = models::cached(&state.home, kind.as_str());
    Ok(Json(json!({
        "provider": kind.as_str(),
        "detected_at": list.as_ref().map(|l| l.detected_at.clone()),
        "url": list.as_ref().map(|l| l.url.clone()),
        "models": list.map(|l| l.models).unwrap_or_default(),
    })))
}

/// The body of `detect`: the server's URL, when not the provider's default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectBody {
    url: Option<String>,
}

/// `POST /providers/{provider}/detect`: asks the server for its models and caches them.
async fn detect(
    State(state): State<Arc<AppState>>,
    UrlPath(provider): UrlPath<String>,
    body: Option<Json<DetectBody>>,
) -> Result<Json<Value>, ApiError> {
    let kind = kind(&provider)?;
    let info = providers::info(kind)
        .filter(|_| models::detectable(kind))
        .ok_or_else(|| ApiError::bad_request(format!("{provider} has no model detection")))?;
    let url = body.and_then(|b| b.0.url);
    let config = url.map(|u| ProviderConfig::bare(kind, None, Some(u)));
    let (base, _) = providers::base_url(&info, config.as_ref());
    let list = models::detect_and_save(&state.home, kind, &base, state.engine.http())
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "unreachable",
                format!("asking {base} for its models: {e} (is the server running?)"),
            )
        })?;
    Ok(Json(
        serde_json::to_value(&list).map_err(|e| ApiError::internal(e.to_string()))?,
    ))
}
