//! Providers (DESIGN §6): the vendor-neutral chat types, the shared HTTP/streaming layer, each
//! vendor's client, retries, and the registry that builds one from a phase's `provider_config`.

pub mod agent_cli;
mod anthropic;
mod gemini;
pub mod http;
pub mod models;
mod ollama;
mod openai;
mod registry;
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
pub use registry::{CHAT_PROVIDERS, ProviderInfo, base_url, build, info, key};
pub use retry::{RetryPolicy, Retrying};
pub use scripted::{Scripted, ScriptedCall, ScriptedReply};
pub use types::{
    BoxFuture, ChatProvider, ChatRequest, ChatResponse, DeltaSink, Message, ProviderError, Role,
    ToolCall, ToolSpec, model_mismatch,
};
