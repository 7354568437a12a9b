//! The vendor-neutral conversation a chat provider is given and the answer it returns.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::reply::ReplyText;
use crate::spec::TokenUsage;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Standing instructions.
    System,
    /// The runner speaking for the user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call, echoed back with the result.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as the JSON text the model wrote (it may be invalid).
    pub arguments: String,
    /// Opaque data the vendor needs back with the result (Gemini's `thoughtSignature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Speaker.
    pub role: Role,
    /// Text.
    pub content: String,
    /// Calls made in an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For tool messages: the call answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with text only.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool offered to the model, with a JSON Schema for its arguments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// Name.
    pub name: &'static str,
    /// What it does, for the model.
    pub description: &'static str,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// One call to a chat model.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// Model to request.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Sampling temperature.
    pub temperature: f64,
    /// Cap on output tokens, when set.
    pub max_tokens: Option<u32>,
    /// The phase asking (the scripted provider answers by it).
    pub phase_id: String,
    /// The iteration asking.
    pub iteration: u32,
}

/// The model's whole answer to one call.
#[derive(Debug, Default, PartialEq)]
pub struct ChatResponse {
    /// Text, in a file once it is long ([`ReplyText`]).
    pub text: ReplyText,
    /// Tool calls, complete.
    pub tool_calls: Vec<ToolCall>,
    /// Usage as the provider reported it.
    pub usage: TokenUsage,
    /// The model the provider says answered.
    pub served_model: Option<String>,
    /// USD when the provider reports its own cost (OpenRouter).
    pub reported_cost_usd: Option<f64>,
}

/// Why a call failed, phrased by what the caller should do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// Slow down; try again after the delay when one was given.
    #[error("rate limited: {message}")]
    RateLimited {
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
        /// The server's words.
        message: String,
    },
    /// The key is missing, wrong or not allowed: fix the key, do not retry.
    #[error(
        "authentication failed ({status}): {message}; check the key (`autowrkers provider list` shows where it comes from)"
    )]
    Auth {
        /// 401 or 403.
        status: u16,
        /// The server's words.
        message: String,
    },
    /// The request was refused as malformed: do not retry.
    #[error(
        "bad request ({status}): {message}; check the model name and the provider settings of the phase"
    )]
    BadRequest {
        /// The status.
        status: u16,
        /// The server's words.
        message: String,
    },
    /// The account's quota or credit is used up: waiting will not help (OpenAI
    /// `insufficient_quota`, HTTP 402, Anthropic's credit balance, Gemini's daily quota). Not
    /// retried: the phase moves to its fallback provider at once.
    #[error(
        "quota or credit exhausted ({status}): {message}; the phase moves to its fallback provider (top up the account, or wait for the quota to reset)"
    )]
    QuotaExhausted {
        /// The status (0 when a runner marked the key exhausted earlier).
        status: u16,
        /// The server's words.
        message: String,
    },
    /// The server failed: retry.
    #[error("server error ({status}): {message}")]
    Server {
        /// The status.
        status: u16,
        /// The server's words.
        message: String,
    },
    /// The connection failed: retry the whole call.
    #[error("transport: {0}")]
    Transport(String),
    /// The answer stopped mid-stream: retry the whole call; the tokens already streamed are
    /// still billed, so they are kept.
    #[error("stream cut: {message}")]
    StreamCut {
        /// What happened.
        message: String,
        /// Usage reported before the cut.
        partial: TokenUsage,
    },
    /// The answer did not follow the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The provider cannot be used as configured: say what to set.
    #[error("{0}")]
    NotConfigured(String),
    /// An agent CLI run failed: the CLI's own message.
    #[error("{cli}: {message}")]
    AgentCli {
        /// The provider type of the CLI.
        cli: &'static str,
        /// What it said.
        message: String,
    },
    /// Setting up is needed before the provider can run (a key, a URL, a CLI to install):
    /// the message says how. `autowrkers run` adds the setup hint for these.
    #[error("{0}")]
    NeedsSetup(String),
}

impl ProviderError {
    /// An error met mid-stream: transport and protocol failures become [`Self::StreamCut`],
    /// keeping the usage reported so far (it is billed even though the call is repeated).
    pub fn mid_stream(self, partial: TokenUsage) -> Self {
        match self {
            Self::Transport(message) | Self::Protocol(message) => {
                Self::StreamCut { message, partial }
            }
            other => other,
        }
    }

    /// True when the account behind the key can take no more calls for now: a quota error,
    /// or an agent CLI saying its usage limit is reached.
    pub fn is_quota_exhausted(&self) -> bool {
        match self {
            Self::QuotaExhausted { .. } => true,
            Self::AgentCli { message, .. } => quota_words(message),
            _ => false,
        }
    }

    /// Whether repeating the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Transport(_)
                | Self::StreamCut { .. }
        )
    }
}

/// A boxed future, so providers can sit behind `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Receives streamed text as it arrives (for `workflow:phase_progress`).
pub type DeltaSink<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// A chat model behind some vendor's protocol. Streaming first: text pieces go to `on_delta` as
/// they arrive; the returned answer is complete.
pub trait ChatProvider: Send + Sync {
    /// Provider type name, for records.
    fn name(&self) -> &str;
    /// Makes one call.
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        on_delta: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>>;
}

impl ToolCall {
    /// The arguments as a JSON object, for vendors that send objects rather than text; text
    /// that is not a JSON object becomes `{}` (the tool then reports what is missing).
    pub fn arguments_object(&self) -> serde_json::Value {
        match serde_json::from_str::<serde_json::Value>(&self.arguments) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => serde_json::json!({}),
        }
    }
}

/// True when the provider served another model than the one requested. Dated or versioned
/// variants (`gpt-4o` → `gpt-4o-2024-08-06`, `gemini-1.5-pro` → `gemini-1.5-pro-002`) and
/// OpenRouter's vendor prefixes are the same model, not a mismatch.
pub fn model_mismatch(requested: &str, served: &str) -> bool {
    let norm = |m: &str| m.trim().trim_start_matches("models/").to_ascii_lowercase();
    let (requested, served) = (norm(requested), norm(served));
    if requested.is_empty() || served.is_empty() || served.starts_with(&requested) {
        return false;
    }
    let bare = |m: &str| m.rsplit('/').next().unwrap_or(m).to_owned();
    !bare(&served).starts_with(&bare(&requested))
}

/// Words vendors use when an account's quota or credit (not its rate) is used up.
pub fn quota_words(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    let per_minute = m.contains("per minute") || m.contains("perminute");
    m.contains("insufficient_quota")
        || m.contains("exceeded your current quota")
        || m.contains("credit balance is too low")
        || m.contains("usage limit")
        || m.contains("out of credits")
        || ((m.contains("resource_exhausted") || m.contains("quota exceeded")) && !per_minute)
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_exhausted_quota_is_told_from_a_rate_limit() {
        use super::quota_words;
        assert!(quota_words(
            "You exceeded your current quota, please check your plan and billing details."
        ));
        assert!(quota_words("{\"error\":{\"type\":\"insufficient_quota\"}}"));
        assert!(quota_words(
            "Your credit balance is too low to access the Anthropic API."
        ));
        assert!(quota_words(
            "RESOURCE_EXHAUSTED: Quota exceeded for quota metric 'Generate requests' per day"
        ));
        assert!(quota_words("Claude AI usage limit reached|1735689600"));
        assert!(!quota_words(
            "RESOURCE_EXHAUSTED: Quota exceeded for quota metric 'Generate requests' per minute"
        ));
        assert!(!quota_words(
            "Rate limit reached for gpt-4o in organization org-x on requests per min"
        ));
    }
    use super::model_mismatch;

    #[test]
    fn versions_and_prefixes_are_not_mismatches() {
        assert!(!model_mismatch("gpt-4o", "gpt-4o-2024-08-06"));
        assert!(!model_mismatch(
            "gemini-1.5-pro",
            "models/gemini-1.5-pro-002"
        ));
        assert!(!model_mismatch(
            "openai/gpt-4-turbo",
            "gpt-4-turbo-2024-04-09"
        ));
        assert!(!model_mismatch("", "anything"));
        assert!(model_mismatch("gpt-4o", "gpt-3.5-turbo"));
        assert!(model_mismatch(
            "openai/gpt-4-turbo",
            "mistralai/mixtral-8x7b"
        ));
    }
}
