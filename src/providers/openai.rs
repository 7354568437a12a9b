//! OpenAI chat completions with SSE streaming: `openai`, `openrouter`, `lm_studio` and any
//! `openai_compatible` server (Ollama's `/v1`, vLLM, …). The vendors differ only in data
//! (base URL, key, headers), given by [`super::registry`].

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::http::{Header, HttpClient};
use super::types::{
    BoxFuture, ChatProvider, ChatRequest, ChatResponse, DeltaSink, Message, ProviderError, Role,
    ToolCall,
};
use crate::secret::Secret;

/// A chat-completions endpoint.
pub struct OpenAiChat {
    http: HttpClient,
    name: String,
    base_url: String,
    key: Option<Secret>,
    extra_headers: Vec<(&'static str, String)>,
}

impl OpenAiChat {
    /// A client for `base_url` (ending before `/chat/completions`).
    pub fn new(
        http: HttpClient,
        name: &str,
        base_url: &str,
        key: Option<Secret>,
        extra_headers: Vec<(&'static str, String)>,
    ) -> Self {
        Self {
            http,
            name: name.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            key,
            extra_headers,
        }
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let mut body = json!({
            "model": request.model,
            "messages": request.messages.iter().map(wire_message).collect::<Vec<_>>(),
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": request.temperature,
        });
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect();
        }
        if let Some(max) = request.max_tokens {
            // OpenAI's own API takes `max_completion_tokens` for every chat model (its
            // reasoning models refuse `max_tokens`); compatible servers know `max_tokens`.
            let field = if self.name == "openai" {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            body[field] = json!(max);
        }
        body
    }

    async fn call(
        &self,
        request: &ChatRequest,
        on_delta: DeltaSink<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let mut headers: Vec<Header> = self
            .extra_headers
            .iter()
            .map(|(k, v)| Header::Plain(k, v.clone()))
            .collect();
        if let Some(key) = &self.key {
            headers.push(Header::Secret(
                "authorization",
                format!("Bearer {}", key.expose()),
                key.clone(),
            ));
        }
        let url = format!("{}/chat/completions", self.base_url);
        let response = self
            .http
            .post_json(&url, &headers, &self.body(request))
            .await?;
        let mut events = std::pin::pin!(self.http.sse(response));
        let mut acc = Accumulator::default();
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| acc.cut(e))?;
            if event.data.trim() == "[DONE]" {
                acc.finished = true;
                break;
            }
            let chunk: Value = serde_json::from_str(&event.data).map_err(|e| {
                acc.cut(ProviderError::Protocol(format!(
                    "chunk is not JSON ({e}): {}",
                    event.data
                )))
            })?;
            acc.absorb(&chunk, on_delta)?;
        }
        acc.finish()
    }
}

impl ChatProvider for OpenAiChat {
    fn name(&self) -> &str {
        &self.name
    }
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        on_delta: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(self.call(request, on_delta))
    }
}

fn wire_message(m: &Message) -> Value {
    match m.role {
        Role::Tool => json!({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}),
        Role::Assistant if !m.tool_calls.is_empty() => json!({
            "role": "assistant",
            "content": if m.content.is_empty() { Value::Null } else { json!(m.content) },
            "tool_calls": m.tool_calls.iter().map(|c| json!({
                "id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}
            })).collect::<Vec<_>>(),
        }),
        Role::Assistant => json!({"role": "assistant", "content": m.content}),
        Role::User => json!({"role": "user", "content": m.content}),
        Role::System => json!({"role": "system", "content": m.content}),
    }
}

/// Builds one answer from streamed chunks; tool-call arguments arrive in pieces keyed by index.
#[derive(Default)]
struct Accumulator {
    response: ChatResponse,
    calls: Vec<ToolCall>,
    finished: bool,
}

impl Accumulator {
    fn absorb(&mut self, chunk: &Value, on_delta: DeltaSink<'_>) -> Result<(), ProviderError> {
        if let Some(err) = chunk.get("error") {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error in stream")
                .to_owned();
            return Err(ProviderError::Server {
                status: 500,
                message,
            });
        }
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            self.response.served_model = Some(model.to_owned());
        }
        for choice in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let delta = &choice["delta"];
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                self.response.text.push_str(text);
                on_delta(text);
            }
            for piece in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = piece
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(self.calls.len() as u64) as usize;
                while self.calls.len() <= index {
                    self.calls.push(ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                        signature: None,
                    });
                }
                let call = &mut self.calls[index];
                if let Some(id) = piece.get("id").and_then(Value::as_str) {
                    call.id = id.to_owned();
                }
                if let Some(name) = piece.pointer("/function/name").and_then(Value::as_str) {
                    call.name.push_str(name);
                }
                if let Some(args) = piece.pointer("/function/arguments").and_then(Value::as_str) {
                    call.arguments.push_str(args);
                }
            }
            if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
                self.finished = true;
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            let count = |ptr: &str| usage.pointer(ptr).and_then(Value::as_u64).unwrap_or(0);
            let cached = count("/prompt_tokens_details/cached_tokens");
            let u = &mut self.response.usage;
            u.cached_input = cached;
            u.input = count("/prompt_tokens").saturating_sub(cached);
            u.output = count("/completion_tokens");
            u.cache_write = count("/prompt_tokens_details/cache_write_tokens");
            self.response.reported_cost_usd = usage.get("cost").and_then(Value::as_f64);
        }
        Ok(())
    }

    /// A stream error, keeping the usage already reported.
    fn cut(&self, e: ProviderError) -> ProviderError {
        e.mid_stream(self.response.usage)
    }

    fn finish(mut self) -> Result<ChatResponse, ProviderError> {
        if !self.finished {
            return Err(self.cut(ProviderError::Transport(
                "stream ended before the answer was finished".to_owned(),
            )));
        }
        for (i, call) in self.calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                call.id = format!("call_{i}");
            }
        }
        self.response.tool_calls = self.calls;
        Ok(self.response)
    }
}
