//! Google Gemini API with SSE streaming (`gemini_sdk`):
//! `POST /v1beta/models/<model>:streamGenerateContent?alt=sse`, key in `x-goog-api-key`.
//!
//! Protocol facts that matter: `usageMetadata` is repeated in every chunk (take the last);
//! function calls have no ids (we make them); a part's `thoughtSignature` must be sent back
//! unchanged with the call in later turns; function responses name the function, not a call id.

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::http::{Header, HttpClient};
use super::types::{
    BoxFuture, ChatProvider, ChatRequest, ChatResponse, DeltaSink, Message, ProviderError, Role,
    ToolCall,
};
use crate::secret::Secret;
use crate::spec::TokenUsage;

/// A Gemini endpoint.
pub struct GeminiGenerate {
    http: HttpClient,
    base_url: String,
    key: Option<Secret>,
}

impl GeminiGenerate {
    /// A client for `base_url` (without `/v1beta`).
    pub fn new(http: HttpClient, base_url: &str, key: Option<Secret>) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            key,
        }
    }

    fn body(request: &ChatRequest) -> Value {
        let system: Vec<Value> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| json!({"text": m.content}))
            .collect();
        let mut body = json!({
            "contents": wire_contents(&request.messages),
            "generationConfig": {"temperature": request.temperature},
        });
        if let Some(max) = request.max_tokens {
            body["generationConfig"]["maxOutputTokens"] = json!(max);
        }
        if !system.is_empty() {
            body["systemInstruction"] = json!({"parts": system});
        }
        if !request.tools.is_empty() {
            let declarations: Vec<Value> = request
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
                .collect();
            body["tools"] = json!([{"functionDeclarations": declarations}]);
        }
        body
    }

    async fn call(
        &self,
        request: &ChatRequest,
        on_delta: DeltaSink<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let mut headers = Vec::new();
        if let Some(key) = &self.key {
            headers.push(Header::Secret(
                "x-goog-api-key",
                key.expose().to_owned(),
                key.clone(),
            ));
        }
        let model = request.model.trim_start_matches("models/");
        let url = format!(
            "{}/v1beta/models/{model}:streamGenerateContent?alt=sse",
            self.base_url
        );
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
            let chunk: Value = serde_json::from_str(&event.data).map_err(|e| {
                acc.cut(ProviderError::Protocol(format!("chunk is not JSON ({e})")))
            })?;
            acc.absorb(&chunk, on_delta)?;
        }
        acc.finish()
    }
}

impl ChatProvider for GeminiGenerate {
    fn name(&self) -> &str {
        "gemini_sdk"
    }
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        on_delta: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(self.call(request, on_delta))
    }
}

/// Our conversation as Gemini `contents`: roles `user` and `model`; tool results are
/// `functionResponse` parts of a user turn, naming the function they answer.
fn wire_contents(messages: &[Message]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let name_of = |id: &str| {
        messages
            .iter()
            .flat_map(|m| m.tool_calls.iter())
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    };
    for m in messages {
        let (role, parts) = match m.role {
            Role::System => continue,
            Role::User => ("user", vec![json!({"text": m.content})]),
            Role::Tool => {
                let id = m.tool_call_id.as_deref().unwrap_or("");
                (
                    "user",
                    vec![
                        json!({"functionResponse": {"name": name_of(id), "response": {"result": m.content}}}),
                    ],
                )
            }
            Role::Assistant => {
                let mut parts = Vec::new();
                if !m.content.is_empty() {
                    parts.push(json!({"text": m.content}));
                }
                for c in &m.tool_calls {
                    let mut part =
                        json!({"functionCall": {"name": c.name, "args": c.arguments_object()}});
                    if let Some(sig) = &c.signature {
                        part["thoughtSignature"] = json!(sig);
                    }
                    parts.push(part);
                }
                ("model", parts)
            }
        };
        super::wire::push_turn(&mut out, role, "parts", parts);
    }
    out
}

#[derive(Default)]
struct Accumulator {
    response: ChatResponse,
    finished: bool,
}

impl Accumulator {
    fn cut(&self, e: ProviderError) -> ProviderError {
        e.mid_stream(self.response.usage)
    }

    fn absorb(&mut self, chunk: &Value, on_delta: DeltaSink<'_>) -> Result<(), ProviderError> {
        if let Some(err) = chunk.get("error") {
            let message = err["message"]
                .as_str()
                .unwrap_or("error in stream")
                .to_owned();
            return Err(ProviderError::Server {
                status: err["code"].as_u64().unwrap_or(500) as u16,
                message,
            });
        }
        if let Some(model) = chunk["modelVersion"].as_str() {
            self.response.served_model = Some(model.to_owned());
        }
        for candidate in chunk["candidates"].as_array().into_iter().flatten() {
            for part in candidate["content"]["parts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if part["thought"].as_bool() == Some(true) {
                    continue;
                }
                if let Some(text) = part["text"].as_str() {
                    self.response.text.push_str(text);
                    on_delta(text);
                }
                if let Some(call) = part.get("functionCall") {
                    let index = self.response.tool_calls.len();
                    self.response.tool_calls.push(ToolCall {
                        id: call["id"]
                            .as_str()
                            .map_or_else(|| format!("call_{index}"), str::to_owned),
                        name: call["name"].as_str().unwrap_or("").to_owned(),
                        arguments: call
                            .get("args")
                            .map_or_else(|| "{}".to_owned(), Value::to_string),
                        signature: part["thoughtSignature"].as_str().map(str::to_owned),
                    });
                }
            }
            if candidate.get("finishReason").is_some_and(|r| !r.is_null()) {
                self.finished = true;
            }
        }
        if let Some(u) = chunk.get("usageMetadata") {
            let count = |k: &str| u[k].as_u64().unwrap_or(0);
            let cached = count("cachedContentTokenCount");
            // Repeated in every chunk: the last one is the total.
            self.response.usage = TokenUsage {
                input: count("promptTokenCount").saturating_sub(cached),
                output: count("candidatesTokenCount") + count("thoughtsTokenCount"),
                cached_input: cached,
                cache_write: 0,
            };
        }
        Ok(())
    }

    fn finish(self) -> Result<ChatResponse, ProviderError> {
        if !self.finished {
            return Err(self.cut(ProviderError::Transport(
                "stream ended without a finishReason".to_owned(),
            )));
        }
        Ok(self.response)
    }
}
