//! From a phase's `provider_config` to a ready provider: which protocol, base URL, key and
//! headers. Vendors that share a protocol differ only in the data of [`info`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::anthropic::AnthropicMessages;
use super::exhausted::QuotaGuard;
use super::gemini::GeminiGenerate;
use super::http::HttpClient;
use super::ollama::OllamaChat;
use super::openai::OpenAiChat;
use super::retry::{RetryPolicy, Retrying};
use super::scripted::Scripted;
use super::types::{ChatProvider, ProviderError};
use crate::keys::{KeySource, Keys};
use crate::secret::Secret;
use crate::spec::{ProviderConfig, ProviderType};

/// How a chat provider is reached: the data that tells vendors apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The provider type.
    pub kind: ProviderType,
    /// Entry name in the key store; None when no key is used.
    pub key_name: Option<&'static str>,
    /// Environment variables holding the key, in order of preference.
    pub key_envs: &'static [&'static str],
    /// Whether a call without a key is pointless (hosted APIs).
    pub key_required: bool,
    /// Environment variables overriding the base URL.
    pub url_envs: &'static [&'static str],
    /// Base URL when nothing overrides it; empty when `api_url` is required.
    pub default_url: &'static str,
}

/// The chat provider type named `name`, or an error listing the known names.
pub fn chat_kind(name: &str) -> Result<ProviderType, String> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| {
        format!(
            "unknown provider `{name}`; known: {}",
            CHAT_PROVIDERS
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Every chat provider type, for `provider list`.
pub const CHAT_PROVIDERS: [ProviderType; 8] = [
    ProviderType::Openai,
    ProviderType::Openrouter,
    ProviderType::GeminiOpenrouter,
    ProviderType::Anthropic,
    ProviderType::GeminiSdk,
    ProviderType::Ollama,
    ProviderType::LmStudio,
    ProviderType::OpenaiCompatible,
];

/// The data of a chat provider type; None for agent CLIs, `scripted` and `none`.
pub fn info(kind: ProviderType) -> Option<ProviderInfo> {
    use ProviderType as P;
    let i = |key_name, key_envs, key_required, url_envs, default_url| {
        Some(ProviderInfo {
            kind,
            key_name,
            key_envs,
            key_required,
            url_envs,
            default_url,
        })
    };
    match kind {
        P::Openai => i(
            Some("openai"),
            &["OPENAI_API_KEY"],
            true,
            &["OPENAI_BASE_URL"],
            "https://api.openai.com/v1",
        ),
        P::Openrouter | P::GeminiOpenrouter => i(
            Some("openrouter"),
            &["OPENROUTER_API_KEY"],
            true,
            &["OPENROUTER_BASE_URL"],
            "https://openrouter.ai/api/v1",
        ),
        P::Anthropic => i(
            Some("anthropic"),
            &["ANTHROPIC_API_KEY"],
            true,
            &["ANTHROPIC_BASE_URL"],
            "https://api.anthropic.com",
        ),
        P::GeminiSdk => i(
            Some("gemini"),
            &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
            true,
            &["GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"],
            "https://generativelanguage.googleapis.com",
        ),
        P::Ollama => i(None, &[], false, &["OLLAMA_HOST"], "http://localhost:11434"),
        P::LmStudio => i(
            None,
            &[],
            false,
            &["LM_STUDIO_URL"],
            "http://localhost:1234/v1",
        ),
        P::OpenaiCompatible => i(
            Some("openai_compatible"),
            &["OPENAI_COMPATIBLE_API_KEY"],
            false,
            &["OPENAI_COMPATIBLE_BASE_URL"],
            "",
        ),
        P::ClaudeCode | P::Codex | P::GeminiCli | P::QwenCode | P::Scripted | P::None => None,
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The base URL of `info` for `config`, and where it came from.
/// Where a base URL came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// The template's `api_url`.
    Template,
    /// An environment variable (its name).
    Env(&'static str),
    /// The vendor's default.
    Default,
}

impl std::fmt::Display for UrlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Template => f.write_str("template api_url"),
            Self::Env(var) => write!(f, "env {var}"),
            Self::Default => f.write_str("default"),
        }
    }
}

/// The base URL for `config`, and where it came from.
pub fn base_url(info: &ProviderInfo, config: Option<&ProviderConfig>) -> (String, UrlSource) {
    if let Some(url) = config.and_then(|c| c.api_url.clone()) {
        return (url, UrlSource::Template);
    }
    for var in info.url_envs {
        if let Some(url) = env(var) {
            // OLLAMA_HOST is often given as host:port.
            let url = if url.contains("://") {
                url
            } else {
                format!("http://{url}")
            };
            return (url, UrlSource::Env(var));
        }
    }
    (info.default_url.to_owned(), UrlSource::Default)
}

/// The key for `config`, and where it came from.
pub fn key(
    info: &ProviderInfo,
    config: Option<&ProviderConfig>,
    keys: &Keys,
) -> Option<(Secret, KeySource)> {
    let custom = config.and_then(|c| c.extra_params.api_key_env.as_deref());
    let envs: Vec<&str> = custom
        .into_iter()
        .chain(info.key_envs.iter().copied())
        .collect();
    keys.get(info.key_name.unwrap_or(""), &envs)
}

fn retry_policy(config: &ProviderConfig) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    if let Some(ms) = env("AUTOWRKERS_RETRY_BASE_MS").and_then(|v| v.parse().ok()) {
        policy.base = Duration::from_millis(ms);
    }
    if let Some(n) = config.extra_params.retries {
        policy.retries = n;
    }
    if let Some(ms) = config.extra_params.retry_base_ms {
        policy.base = Duration::from_millis(ms);
    }
    policy
}

/// Builds the provider for `config`, wrapped in retries. `project` resolves relative paths
/// (scripted replies).
pub fn build(
    config: &ProviderConfig,
    project: &Path,
    http: &HttpClient,
    keys: &Keys,
) -> Result<Arc<dyn ChatProvider>, ProviderError> {
    let raw = build_raw(config, project, http, keys)?;
    if config.provider_type == ProviderType::Scripted {
        return Ok(raw);
    }
    let retrying: Arc<dyn ChatProvider> = Arc::new(Retrying::new(raw, retry_policy(config)));
    // A key whose quota is gone is not called again (by any runner) for a while.
    let (url, key) = match info(config.provider_type) {
        Some(info) => (
            base_url(&info, Some(config)).0,
            key(&info, Some(config), keys).map(|(k, _)| k),
        ),
        None => (String::new(), None),
    };
    Ok(Arc::new(QuotaGuard::new(
        retrying,
        keys.home(),
        config.provider_type.as_str(),
        key.as_ref().map(|k| k.expose()),
        &url,
    )))
}

fn build_raw(
    config: &ProviderConfig,
    project: &Path,
    http: &HttpClient,
    keys: &Keys,
) -> Result<Arc<dyn ChatProvider>, ProviderError> {
    let kind = config.provider_type;
    if kind == ProviderType::Scripted {
        let script = config
            .extra_params
            .script
            .clone()
            .or_else(|| env("AUTOWRKERS_SCRIPT"))
            .ok_or_else(|| {
                ProviderError::NotConfigured(
                    "scripted provider: set extra_params.script to a replies file".to_owned(),
                )
            })?;
        return Ok(Arc::new(Scripted::load(&project.join(script))?));
    }
    if kind.is_agent_cli() {
        return Err(ProviderError::NotConfigured(format!(
            "`{}` is an agent CLI: it runs as a subprocess, not through a chat client",
            kind.as_str()
        )));
    }
    let Some(info) = info(kind) else {
        return Err(ProviderError::NotConfigured(format!(
            "provider_type `{}` is not available in this version; use a chat provider ({})",
            kind.as_str(),
            CHAT_PROVIDERS
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let (url, url_source) = base_url(&info, Some(config));
    if url.is_empty() {
        return Err(ProviderError::NeedsSetup(format!(
            "provider_type `{}` needs api_url (or {}), e.g. http://localhost:11434/v1 for Ollama",
            kind.as_str(),
            info.url_envs.join(" or ")
        )));
    }
    let key = key(&info, Some(config), keys).map(|(k, _)| k);
    if info.key_required && key.is_none() && url_source == UrlSource::Default {
        let store_note = keys
            .store_error()
            .map(|e| format!(" (key store: {e})"))
            .unwrap_or_default();
        return Err(ProviderError::NeedsSetup(format!(
            "provider_type `{}` needs an API key: export {} or run `autowrkers provider setup {}`{store_note}",
            kind.as_str(),
            info.key_envs.join(" or "),
            kind.as_str()
        )));
    }
    Ok(match kind {
        ProviderType::Anthropic => Arc::new(AnthropicMessages::new(http.clone(), &url, key)),
        ProviderType::GeminiSdk => Arc::new(GeminiGenerate::new(http.clone(), &url, key)),
        ProviderType::Ollama => {
            Arc::new(OllamaChat::new(http.clone(), &url, config.context_length))
        }
        ProviderType::Openrouter | ProviderType::GeminiOpenrouter => Arc::new(OpenAiChat::new(
            http.clone(),
            kind.as_str(),
            &url,
            key,
            // OpenRouter names the calling app from this header in its dashboard.
            vec![("x-title", "autowrkers".to_owned())],
        )),
        _ => Arc::new(OpenAiChat::new(
            http.clone(),
            kind.as_str(),
            &url,
            key,
            Vec::new(),
        )),
    })
}
