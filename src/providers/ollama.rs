//! Ollama's native chat API (`ollama`): `POST /api/chat`, newline-delimited JSON.
//!
//! Protocol facts that matter: always send `options.num_ctx` (Ollama's small default silently
//! cuts the start of long prompts); the last line has `done: true` with `prompt_eval_count` and
//! `eval_count`; tool calls arrive whole, with arguments as an object.

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::http::HttpClient;
use super::types::{
    BoxFuture, ChatProvider, ChatRequest, ChatResponse, DeltaSink, Message, ProviderError, Role,
    ToolCall,
};
use crate::spec::TokenUsage;

/// An Ollama server.
pub struct OllamaChat {
    http: HttpClient,
    base_url: String,
    num_ctx: u32,
}

impl OllamaChat {
    /// A client for `base_url` (e.g. `http://localhost:11434`) with a context window of `num_ctx`.
    pub fn new(http: HttpClient, base_url: &str, num_ctx: u32) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            num_ctx,
        }
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let mut body = json!({
            "model": request.model,
            "messages": request.messages.iter().map(|m| wire_message(m, &request.messages)).collect::<Vec<_>>(),
            "stream": true,
            "options": {"temperature": request.temperature, "num_ctx": self.num_ctx},
        });
        if let Some(max) = request.max_tokens {
            body["options"]["num_predict"] = json!(max);
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect();
        }
        body
    }

    async fn call(
        &self,
        request: &ChatRequest,
        on_delta: DeltaSink<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let url = format!("{}/api/chat", self.base_url);
        let response = self.http.post_json(&url, &[], &self.body(request)).await?;
        let mut lines = std::pin::pin!(self.http.ndjson(response));
        let mut out = ChatResponse::default();
        while let Some(line) = lines.next().await {
            let line = line.map_err(|e| ProviderError::StreamCut {
                message: e.to_string(),
                partial: out.usage,
            })?;
            if let Some(err) = line["error"].as_str() {
                return Err(ProviderError::Server {
                    status: 500,
                    message: err.to_owned(),
                });
            }
            if let Some(model) = line["model"].as_str() {
                out.served_model = Some(model.to_owned());
            }
            let message = &line["message"];
            if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
                out.text.push_str(text);
                on_delta(text);
            }
            for call in message["tool_calls"].as_array().into_iter().flatten() {
                let index = out.tool_calls.len();
                out.tool_calls.push(ToolCall {
                    id: format!("call_{index}"),
                    name: call["function"]["name"].as_str().unwrap_or("").to_owned(),
                    arguments: call["function"]["arguments"].to_string(),
                    signature: None,
                });
            }
            if line["done"].as_bool() == Some(true) {
                out.usage = TokenUsage {
                    input: line["prompt_eval_count"].as_u64().unwrap_or(0),
                    output: line["eval_count"].as_u64().unwrap_or(0),
                    ..TokenUsage::default()
                };
                return Ok(out);
            }
        }
        Err(ProviderError::StreamCut {
            message: "stream ended before done: true".to_owned(),
            partial: out.usage,
        })
    }
}

impl ChatProvider for OllamaChat {
    fn name(&self) -> &str {
        "ollama"
    }
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        on_delta: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(self.call(request, on_delta))
    }
}

fn wire_message(m: &Message, all: &[Message]) -> Value {
    match m.role {
        Role::System => json!({"role": "system", "content": m.content}),
        Role::User => json!({"role": "user", "content": m.content}),
        Role::Tool => {
            let id = m.tool_call_id.as_deref().unwrap_or("");
            let name = all
                .iter()
                .flat_map(|x| x.tool_calls.iter())
                .find(|c| c.id == id)
                .map(|c| c.name.clone());
            json!({"role": "tool", "content": m.content, "tool_name": name})
        }
        Role::Assistant => {
            let mut v = json!({"role": "assistant", "content": m.content});
            if !m.tool_calls.is_empty() {
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"function": {"name": c.name, "arguments": c.arguments_object()}}))
                    .collect();
            }
            v
        }
    }
}
