//! Auto-detecting local models (seed §6.4): Ollama's `/api/tags` (with `/api/show` for the
//! context length) and LM Studio's `/v1/models`. Results are cached in
//! `~/.autowrkers/models/<provider>.json` (the truth) and the sled index (the fast copy).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::HttpClient;
use super::types::ProviderError;
use crate::spec::ProviderType;
use crate::store::{Home, write_atomic};

/// One model a local server offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The id to put in `model_name`.
    pub id: String,
    /// Context window in tokens, when the server reports it.
    #[serde(default)]
    pub context_length: Option<u64>,
}

/// The models of a provider as last detected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// Provider type name.
    pub provider: String,
    /// Base URL asked.
    pub url: String,
    /// When (RFC 3339).
    pub detected_at: String,
    /// The models.
    pub models: Vec<ModelInfo>,
}

/// Asks the server at `url` which models it has and caches the answer for `provider models`
/// and the dashboard; returns it.
pub async fn detect_and_save(
    home: &Home,
    kind: ProviderType,
    url: &str,
    http: &HttpClient,
) -> Result<ModelList, ProviderError> {
    let models = detect(kind, url, http).await?;
    let list = ModelList {
        provider: kind.as_str().to_owned(),
        url: url.to_owned(),
        detected_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        models,
    };
    save(home, &list)
        .map_err(|e| ProviderError::Protocol(format!("cannot cache the models: {e}")))?;
    Ok(list)
}

/// Asks the server at `url` which models it has.
pub async fn detect(
    kind: ProviderType,
    url: &str,
    http: &HttpClient,
) -> Result<Vec<ModelInfo>, ProviderError> {
    let url = url.trim_end_matches('/');
    match kind {
        ProviderType::Ollama => {
            let tags = http.get_json(&format!("{url}/api/tags")).await?;
            let mut out = Vec::new();
            for m in tags["models"].as_array().into_iter().flatten() {
                let id = m["name"].as_str().unwrap_or("").to_owned();
                let show = http
                    .post_for_json(&format!("{url}/api/show"), &json!({"model": id}))
                    .await
                    .ok();
                let context_length = show.as_ref().and_then(context_from_show);
                out.push(ModelInfo { id, context_length });
            }
            Ok(out)
        }
        ProviderType::LmStudio | ProviderType::OpenaiCompatible => {
            let list = http.get_json(&format!("{url}/models")).await?;
            Ok(list["data"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| ModelInfo {
                    id: m["id"].as_str().unwrap_or("").to_owned(),
                    context_length: m["max_context_length"]
                        .as_u64()
                        .or_else(|| m["context_length"].as_u64()),
                })
                .collect())
        }
        other => Err(ProviderError::NotConfigured(format!(
            "`{}` has no model detection; detect works for ollama and lm_studio",
            other.as_str()
        ))),
    }
}

/// True for the providers whose installed models `provider detect` can list.
pub fn detectable(kind: ProviderType) -> bool {
    matches!(kind, ProviderType::Ollama | ProviderType::LmStudio)
}

/// `/api/show` reports the context length as `model_info["<architecture>.context_length"]`.
fn context_from_show(show: &Value) -> Option<u64> {
    show["model_info"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.ends_with(".context_length"))
        .and_then(|(_, v)| v.as_u64())
}

fn cache_file(home: &Home, provider: &str) -> std::path::PathBuf {
    home.root().join("models").join(format!("{provider}.json"))
}

/// Saves a detected list to the JSON file and the index.
pub fn save(home: &Home, list: &ModelList) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(list).map_err(std::io::Error::other)?;
    write_atomic(&cache_file(home, &list.provider), &text)?;
    if let Ok(index) = crate::store::Index::open_in(home) {
        let _ = index.put_raw(&format!("models:{}", list.provider), &text);
    }
    Ok(())
}

/// The cached list of `provider`: from the index, else the JSON file.
pub fn cached(home: &Home, provider: &str) -> Option<ModelList> {
    let from_index = crate::store::Index::open_in(home)
        .ok()
        .and_then(|i| i.get_raw(&format!("models:{provider}")))
        .and_then(|b| serde_json::from_slice(&b).ok());
    from_index.or_else(|| {
        let text = std::fs::read(cache_file(home, provider)).ok()?;
        serde_json::from_slice(&text).ok()
    })
}
