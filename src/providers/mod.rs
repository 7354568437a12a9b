//! Providers (DESIGN §6): the vendor-neutral chat types, the shared HTTP/SSE layer, each
//! vendor's client, and the registry that builds one from a phase's `provider_config`.

pub mod http;
mod openai;
mod registry;
mod scripted;
mod secret;
mod types;

pub use http::HttpClient;
pub use openai::OpenAiChat;
pub use registry::build;
pub use scripted::{Scripted, ScriptedCall, ScriptedReply};
pub use secret::Secret;
pub use types::{
    BoxFuture, ChatProvider, ChatRequest, ChatResponse, DeltaSink, Message, ProviderError, Role,
    ToolCall, ToolSpec,
};
