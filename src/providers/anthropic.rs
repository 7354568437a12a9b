//! Anthropic Messages API with SSE streaming (`anthropic`).
//!
//! Protocol facts that matter: input tokens arrive in `message_start`, the output count in
//! `message_delta` is cumulative (keep the last), cache reads and writes are counted apart from
//! `input_tokens`, and tool input arrives as `input_json_delta` pieces. The stable prefix (the
//! system prompt and tools) and the conversation so far carry `cache_control`, so later turns
//! and iterations bill cached input.

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::http::{Header, HttpClient};
use super::types::{
    BoxFuture, ChatProvider, ChatRequest, ChatResponse, DeltaSink, Message, ProviderError, Role,
    ToolCall,
};
use crate::secret::Secret;
use crate::spec::TokenUsage;

const API_VERSION: &str = "2023-06-01";
const DEFAULT_MAX_TOKENS: u32 = 8192;

/// A Messages endpoint.
pub struct AnthropicMessages {
    http: HttpClient,
    base_url: String,
    key: Option<Secret>,
}

impl AnthropicMessages {
    /// A client for `base_url` (without `/v1`).
    pub fn new(http: HttpClient, base_url: &str, key: Option<Secret>) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            key,
        }
    }

    fn body(request: &ChatRequest) -> Value {
        let cache = json!({"type": "ephemeral"});
        let system: String = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        let mut messages = wire_messages(&request.messages);
        // Cache the conversation so far: the next turn re-reads it at the cached price.
        if let Some(last) = messages
            .last_mut()
            .and_then(|m| m["content"].as_array_mut())
            .and_then(|c| c.last_mut())
        {
            last["cache_control"] = cache.clone();
        }
        let mut body = json!({
            "model": request.model,
            "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            "messages": messages,
            "stream": true,
            "temperature": request.temperature,
        });
        if !system.is_empty() {
            body["system"] = json!([{"type": "text", "text": system, "cache_control": cache}]);
        }
        if !request.tools.is_empty() {
            let mut tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
                .collect();
            if let Some(last) = tools.last_mut() {
                last["cache_control"] = cache;
            }
            body["tools"] = json!(tools);
        }
        body
    }

    async fn call(
        &self,
        request: &ChatRequest,
        on_delta: DeltaSink<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let mut headers = vec![Header::Plain("anthropic-version", API_VERSION.to_owned())];
        if let Some(key) = &self.key {
            headers.push(Header::Secret(
                "x-api-key",
                key.expose().to_owned(),
                key.clone(),
            ));
        }
        let url = format!("{}/v1/messages", self.base_url);
        let response = self
            .http
            .post_json(&url, &headers, &Self::body(request))
            .await?;
        let mut events = std::pin::pin!(self.http.sse(response));
        let mut acc = Accumulator::default();
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| acc.cut(e))?;
            if event.data.trim().is_empty() {
                continue;
            }
            let data: Value = serde_json::from_str(&event.data).map_err(|e| {
                acc.cut(ProviderError::Protocol(format!("event is not JSON ({e})")))
            })?;
            if acc.absorb(&data, on_delta)? {
                return acc.finish();
            }
        }
        Err(acc.cut(ProviderError::Transport(
            "stream ended before message_stop".to_owned(),
        )))
    }
}

impl ChatProvider for AnthropicMessages {
    fn name(&self) -> &str {
        "anthropic"
    }
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        on_delta: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(self.call(request, on_delta))
    }
}

/// Our conversation as Messages: tool results become `tool_result` blocks of a user message,
/// consecutive ones merged, as the API requires alternating roles.
fn wire_messages(messages: &[Message]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for m in messages {
        let (role, block) = match m.role {
            Role::System => continue,
            Role::User => ("user", vec![json!({"type": "text", "text": m.content})]),
            Role::Tool => (
                "user",
                vec![
                    json!({"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}),
                ],
            ),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for c in &m.tool_calls {
                    blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments_object()}));
                }
                if blocks.is_empty() {
                    blocks.push(json!({"type": "text", "text": "(no text)"}));
                }
                ("assistant", blocks)
            }
        };
        super::wire::push_turn(&mut out, role, "content", block);
    }
    out
}

#[derive(Default)]
struct Accumulator {
    response: ChatResponse,
    /// Tool calls by content-block index, with their JSON input text.
    calls: Vec<(u64, ToolCall)>,
}

impl Accumulator {
    fn cut(&self, e: ProviderError) -> ProviderError {
        e.mid_stream(self.response.usage)
    }

    /// Applies one event; true at `message_stop`.
    fn absorb(&mut self, data: &Value, on_delta: DeltaSink<'_>) -> Result<bool, ProviderError> {
        let count = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
        match data["type"].as_str().unwrap_or("") {
            "message_start" => {
                let message = &data["message"];
                if let Some(model) = message["model"].as_str() {
                    self.response.served_model = Some(model.to_owned());
                }
                let u = &message["usage"];
                self.response.usage = TokenUsage {
                    input: count(u, "input_tokens").unwrap_or(0),
                    output: count(u, "output_tokens").unwrap_or(0),
                    cached_input: count(u, "cache_read_input_tokens").unwrap_or(0),
                    cache_write: count(u, "cache_creation_input_tokens").unwrap_or(0),
                };
            }
            "content_block_start" => {
                let block = &data["content_block"];
                if block["type"] == "tool_use" {
                    let call = ToolCall {
                        id: block["id"].as_str().unwrap_or("").to_owned(),
                        name: block["name"].as_str().unwrap_or("").to_owned(),
                        arguments: String::new(),
                        signature: None,
                    };
                    self.calls.push((data["index"].as_u64().unwrap_or(0), call));
                }
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        let text = delta["text"].as_str().unwrap_or("");
                        self.response.text.push_str(text);
                        on_delta(text);
                    }
                    Some("input_json_delta") => {
                        let index = data["index"].as_u64().unwrap_or(0);
                        if let Some((_, call)) = self.calls.iter_mut().find(|(i, _)| *i == index) {
                            call.arguments
                                .push_str(delta["partial_json"].as_str().unwrap_or(""));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                // Cumulative: the last value is the total.
                if let Some(out) = count(&data["usage"], "output_tokens") {
                    self.response.usage.output = out;
                }
            }
            "message_stop" => return Ok(true),
            "error" => {
                let message = data["error"]["message"]
                    .as_str()
                    .unwrap_or("error event")
                    .to_owned();
                return Err(match data["error"]["type"].as_str() {
                    Some("overloaded_error") | Some("api_error") => ProviderError::Server {
                        status: 529,
                        message,
                    },
                    Some("rate_limit_error") => ProviderError::RateLimited {
                        retry_after: None,
                        message,
                    },
                    _ => ProviderError::BadRequest {
                        status: 400,
                        message,
                    },
                });
            }
            _ => {}
        }
        Ok(false)
    }

    fn finish(mut self) -> Result<ChatResponse, ProviderError> {
        self.response.tool_calls = self.calls.into_iter().map(|(_, c)| c).collect();
        Ok(self.response)
    }
}
