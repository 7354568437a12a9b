//! Providers (DESIGN §6): the vendor-neutral chat types, the shared HTTP/streaming layer, each
//! vendor's client, retries, the registry that builds one from a phase's `provider_config`, and
//! the agent CLIs. [`answerer`] is the one seam: what answers a phase, chat model or CLI.

pub mod agent_cli;
mod anthropic;
pub mod exhausted;
mod gemini;
pub mod http;
pub mod models;
mod ollama;
mod openai;
pub mod ratelimit;
mod registry;
mod reply;
mod retry;
mod scripted;
mod types;
mod wire;

pub use crate::secret::Secret;
pub use anthropic::AnthropicMessages;
pub use gemini::GeminiGenerate;
pub use http::HttpClient;
pub use ollama::OllamaChat;
pub use openai::OpenAiChat;
pub use registry::{CHAT_PROVIDERS, ProviderInfo, base_url, build, chat_kind, info, key};
pub use reply::ReplyText;
pub use retry::{RetryPolicy, Retrying};
pub use scripted::{Scripted, ScriptedCall, ScriptedReply};
pub use types::{
    BoxFuture, ChatProvider, ChatRequest, ChatResponse, DeltaSink, Message, ProviderError, Role,
    ToolCall, ToolSpec, model_mismatch,
};

/// What answers a phase: a chat model driven by our agent loop, or an agent CLI that runs its
/// own (checked to be installed).
pub enum Answerer {
    /// A chat model, built and ready.
    Chat(std::sync::Arc<dyn ChatProvider>),
    /// An agent CLI: started per run by [`agent_cli::run`].
    Cli,
}

/// The answerer of `config`, or why it cannot run here (a key, a URL, a CLI to install…).
pub fn answerer(
    config: &crate::spec::ProviderConfig,
    project: &std::path::Path,
    http: &HttpClient,
    keys: &crate::keys::Keys,
) -> Result<Answerer, ProviderError> {
    if config.provider_type.is_agent_cli() {
        agent_cli::check(config)?;
        Ok(Answerer::Cli)
    } else {
        build(config, project, http, keys).map(Answerer::Chat)
    }
}
