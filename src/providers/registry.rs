//! From a phase's `provider_config` to a ready provider: base URL, key and headers per vendor.
//! OpenAI-compatible vendors are data here, not code.

use std::path::Path;
use std::sync::Arc;

use super::http::HttpClient;
use super::openai::OpenAiChat;
use super::scripted::Scripted;
use super::secret::Secret;
use super::types::{ChatProvider, ProviderError};
use crate::spec::{ProviderConfig, ProviderType};

/// How an OpenAI-compatible vendor is reached.
struct Vendor {
    default_url: &'static str,
    /// Environment variable overriding the base URL.
    url_env: &'static str,
    /// Environment variable holding the key.
    key_env: Option<&'static str>,
    key_required: bool,
}

fn vendor(kind: ProviderType) -> Option<Vendor> {
    let v = |default_url, url_env, key_env, key_required| {
        Some(Vendor {
            default_url,
            url_env,
            key_env,
            key_required,
        })
    };
    match kind {
        ProviderType::Openai => v(
            "https://api.openai.com/v1",
            "OPENAI_BASE_URL",
            Some("OPENAI_API_KEY"),
            true,
        ),
        ProviderType::Openrouter => v(
            "https://openrouter.ai/api/v1",
            "OPENROUTER_BASE_URL",
            Some("OPENROUTER_API_KEY"),
            true,
        ),
        ProviderType::LmStudio => v("http://localhost:1234/v1", "LM_STUDIO_URL", None, false),
        ProviderType::OpenaiCompatible => v(
            "",
            "OPENAI_COMPATIBLE_BASE_URL",
            Some("OPENAI_COMPATIBLE_API_KEY"),
            false,
        ),
        _ => None,
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Builds the provider for `config`. `project` resolves relative paths (scripted replies).
pub fn build(
    config: &ProviderConfig,
    project: &Path,
    http: &HttpClient,
) -> Result<Arc<dyn ChatProvider>, ProviderError> {
    let kind = config.provider_type;
    if kind == ProviderType::Scripted {
        let script = config
            .extra_params
            .get("script")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .or_else(|| env("AUTOWRKERS_SCRIPT"))
            .ok_or_else(|| {
                ProviderError::NotConfigured(
                    "scripted provider: set extra_params.script to a replies file".to_owned(),
                )
            })?;
        return Ok(Arc::new(Scripted::load(&project.join(script))?));
    }
    let Some(v) = vendor(kind) else {
        return Err(ProviderError::NotConfigured(format!(
            "provider_type `{}` is not available in this version; use openai, openrouter, lm_studio, openai_compatible or scripted",
            kind.as_str()
        )));
    };
    let base_url = config
        .api_url
        .clone()
        .or_else(|| env(v.url_env))
        .unwrap_or_else(|| v.default_url.to_owned());
    if base_url.is_empty() {
        return Err(ProviderError::NotConfigured(format!(
            "provider_type `{}` needs api_url (or {}), e.g. http://localhost:11434/v1 for Ollama",
            kind.as_str(),
            v.url_env
        )));
    }
    let key_env = config
        .extra_params
        .get("api_key_env")
        .and_then(|k| k.as_str())
        .map(str::to_owned)
        .or(v.key_env.map(str::to_owned));
    let key = key_env.as_deref().and_then(env).map(Secret::new);
    if v.key_required && key.is_none() && config.api_url.is_none() && env(v.url_env).is_none() {
        return Err(ProviderError::NotConfigured(format!(
            "provider_type `{}` needs an API key: export {}",
            kind.as_str(),
            key_env.unwrap_or_default()
        )));
    }
    let headers = match kind {
        ProviderType::Openrouter => vec![
            // OpenRouter names the calling app from this header in its dashboard.
            ("x-title", "autowrkers".to_owned()),
        ],
        _ => Vec::new(),
    };
    Ok(Arc::new(OpenAiChat::new(
        http.clone(),
        kind.as_str(),
        &base_url,
        key,
        headers,
    )))
}
