//! The project's fake LLM server: real TCP on 127.0.0.1, speaking OpenAI chat completions with
//! SSE streaming, usage chunks and tool calls. Replies are scripted statelessly: a rule matches
//! by model, by the number of assistant turns already in the conversation and by text the
//! request contains — never by a request counter, so retries and resumes stay in step.
//! Faults: latency before the first byte, an error status, and "hold" (never answer; tells the
//! test it arrived, so a test can kill the client mid-call).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::fake_wire::{
    anthropic_events, gemini_events, ollama_lines, responses_events, sse_events,
};

/// One scripted answer.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub text: String,
    pub tool_calls: Vec<(String, Value)>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub delay: Duration,
    pub cache_write_tokens: u64,
    /// USD the server reports in its usage (OpenRouter's `usage.cost`).
    pub cost: Option<f64>,
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    /// The error body repeats the key the request carried (a leak trap).
    pub echo_key: bool,
    /// The error body is OpenAI's for an exhausted quota (`insufficient_quota`).
    pub quota: bool,
    /// Send this many events, then reset the connection.
    pub cut_after: Option<usize>,
    /// Send this many events, then end the body cleanly (a truncated stream).
    pub truncate_after: Option<usize>,
    /// Send an event whose data is not JSON.
    pub garbage: bool,
    pub hold: bool,
    pub served_model: Option<String>,
}

impl Reply {
    pub fn text(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            prompt_tokens: 100,
            completion_tokens: 20,
            ..Self::default()
        }
    }
    pub fn tool(name: &str, args: Value) -> Self {
        Self {
            tool_calls: vec![(name.to_owned(), args)],
            prompt_tokens: 100,
            completion_tokens: 10,
            ..Self::default()
        }
    }
    pub fn tools(calls: Vec<(&str, Value)>) -> Self {
        Self {
            tool_calls: calls.into_iter().map(|(n, a)| (n.to_owned(), a)).collect(),
            prompt_tokens: 100,
            completion_tokens: 10,
            ..Self::default()
        }
    }
    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
    pub fn held(mut self) -> Self {
        self.hold = true;
        self
    }
    /// 429 with OpenAI's `insufficient_quota` body: the account's credit is gone.
    pub fn quota() -> Self {
        Self {
            status: Some(429),
            quota: true,
            ..Self::default()
        }
    }
    pub fn status(code: u16) -> Self {
        Self {
            status: Some(code),
            ..Self::default()
        }
    }
}

/// When a reply applies.
#[derive(Clone, Debug)]
pub struct Rule {
    pub model: String,
    pub turn: Option<usize>,
    pub contains: Option<String>,
    pub reply: Reply,
    /// Fault injection only: the rule applies to its first N matches, then steps aside.
    pub times: Option<usize>,
    /// Matches by the number of tool results in the conversation (agent CLIs add assistant
    /// messages of their own, so their turns are counted this way).
    pub tool_results: Option<usize>,
}

impl Rule {
    pub fn new(model: &str, turn: Option<usize>, reply: Reply) -> Self {
        Self {
            model: model.to_owned(),
            turn,
            contains: None,
            reply,
            times: None,
            tool_results: None,
        }
    }
    pub fn after_tool_results(model: &str, n: usize, reply: Reply) -> Self {
        Self {
            tool_results: Some(n),
            ..Self::new(model, None, reply)
        }
    }
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }
}

/// Which vendor protocol a request spoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    OpenAi,
    Anthropic,
    Gemini,
    Ollama,
    Responses,
}

/// What the server saw.
#[derive(Clone, Debug)]
pub struct Record {
    pub protocol: Protocol,
    pub path: String,
    pub model: String,
    pub body: Value,
    pub started: Instant,
    pub finished: Option<Instant>,
    /// The key the request carried, in whichever header its protocol uses.
    pub authorization: Option<String>,
    /// (prompt tokens without cached, completion tokens, cached tokens) sent back.
    pub usage: (u64, u64, u64),
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    used: Vec<usize>,
    log: Vec<Record>,
    release_holds: bool,
    /// At most this many requests a second, told in OpenAI's rate-limit headers.
    rate: Option<RateWindow>,
}

/// A per-second request limit, OpenAI style.
#[derive(Debug, Clone, Copy)]
struct RateWindow {
    per_second: u64,
    started: Instant,
    count: u64,
    /// Requests refused with 429.
    refused: u64,
}

/// A running fake server.
#[derive(Clone)]
pub struct FakeLlm {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    held_tx: mpsc::UnboundedSender<String>,
    release: Arc<tokio::sync::Notify>,
}

impl FakeLlm {
    /// Starts the server on an ephemeral port; returns it and a receiver told the model of
    /// every held request.
    pub async fn start(rules: Vec<Rule>) -> (Self, mpsc::UnboundedReceiver<String>) {
        let (held_tx, held_rx) = mpsc::unbounded_channel();
        let used = vec![0; rules.len()];
        let shared = Arc::new(Mutex::new(Shared {
            rules,
            used,
            ..Shared::default()
        }));
        let server = Self {
            addr: "127.0.0.1:0".parse().expect("addr"),
            shared,
            held_tx,
            release: Arc::new(tokio::sync::Notify::new()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = Self { addr, ..server };
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .route("/v1/responses", post(responses))
            .route("/v1beta/models/{action}", post(gemini))
            .route("/api/chat", post(ollama))
            .route("/api/tags", get(ollama_tags))
            .route("/api/show", post(ollama_show))
            .route("/v1/models", get(openai_models))
            .route("/repos/{owner}/{repo}/issues/{number}", get(github_issue))
            .route(
                "/repos/{owner}/{repo}/issues/{number}/comments",
                get(|| async { axum::Json(json!([])) }),
            )
            .with_state(server.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (server, held_rx)
    }

    /// Base URL for `api_url`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Record> {
        self.shared.lock().expect("lock").log.clone()
    }

    /// Requests for one model.
    pub fn calls(&self, model: &str) -> Vec<Record> {
        self.log()
            .into_iter()
            .filter(|r| r.model == model)
            .collect()
    }

    /// From now on at most `n` requests a second are answered (OpenAI's
    /// `x-ratelimit-*-requests` headers tell the window); the others get 429 with
    /// `Retry-After`.
    pub fn limit_rate(&self, n: u64) {
        self.shared.lock().expect("lock").rate = Some(RateWindow {
            per_second: n,
            started: Instant::now(),
            count: 0,
            refused: 0,
        });
    }

    /// How many requests the rate limit refused.
    pub fn refused(&self) -> u64 {
        self.shared
            .lock()
            .expect("lock")
            .rate
            .map_or(0, |r| r.refused)
    }

    /// Held requests are answered now; later ones are still held by their rules.
    pub fn release_held_now(&self) {
        self.release.notify_waiters();
    }

    /// Held requests are answered now, and later ones are not held.
    pub fn release_holds(&self) {
        self.shared.lock().expect("lock").release_holds = true;
        self.release.notify_waiters();
    }
}

/// Tool results already in the conversation: how agent CLIs' turns are told apart (they add
/// assistant messages of their own, so counting those would desynchronise).
fn tool_results_of(body: &Value, protocol: Protocol) -> usize {
    let items = |list: &str| body[list].as_array().cloned().unwrap_or_default();
    let blocks = |m: &Value, key: &str| m[key].as_array().cloned().unwrap_or_default();
    match protocol {
        Protocol::Anthropic => items("messages")
            .iter()
            .flat_map(|m| blocks(m, "content"))
            .filter(|b| b["type"] == "tool_result")
            .count(),
        Protocol::Gemini => items("contents")
            .iter()
            .flat_map(|c| blocks(c, "parts"))
            .filter(|p| p.get("functionResponse").is_some())
            .count(),
        Protocol::Responses => items("input")
            .iter()
            .filter(|i| i["type"] == "function_call_output")
            .count(),
        Protocol::OpenAi | Protocol::Ollama => items("messages")
            .iter()
            .filter(|m| m["role"] == "tool")
            .count(),
    }
}

fn turn_of(body: &Value, protocol: Protocol) -> usize {
    let count = |list: &str, pred: &dyn Fn(&Value) -> bool| {
        body[list]
            .as_array()
            .map_or(0, |m| m.iter().filter(|x| pred(x)).count())
    };
    match protocol {
        Protocol::Gemini => count("contents", &|m| m["role"] == "model"),
        Protocol::Responses => count("input", &|m| m["type"] == "function_call_output"),
        _ => count("messages", &|m| m["role"] == "assistant"),
    }
}

async fn responses(State(server): State<FakeLlm>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("").to_owned();
    answer(
        server,
        Protocol::Responses,
        "/v1/responses".into(),
        model,
        &headers,
        body,
    )
    .await
}

async fn openai(State(server): State<FakeLlm>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("").to_owned();
    answer(
        server,
        Protocol::OpenAi,
        "/v1/chat/completions".into(),
        model,
        &headers,
        body,
    )
    .await
}

async fn anthropic(State(server): State<FakeLlm>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("").to_owned();
    answer(
        server,
        Protocol::Anthropic,
        "/v1/messages".into(),
        model,
        &headers,
        body,
    )
    .await
}

async fn gemini(
    State(server): State<FakeLlm>,
    Path(action): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = action.split(':').next().unwrap_or("").to_owned();
    let path = format!("/v1beta/models/{action}?{}", uri.query().unwrap_or(""));
    answer(server, Protocol::Gemini, path, model, &headers, body).await
}

async fn ollama(State(server): State<FakeLlm>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("").to_owned();
    answer(
        server,
        Protocol::Ollama,
        "/api/chat".into(),
        model,
        &headers,
        body,
    )
    .await
}

async fn ollama_tags() -> axum::Json<Value> {
    axum::Json(json!({"models": [
        {"name": "qwen2.5-coder:7b", "model": "qwen2.5-coder:7b", "size": 4683087332u64},
        {"name": "llama3.2:3b", "model": "llama3.2:3b", "size": 2019393189u64}
    ]}))
}

async fn ollama_show(body: Bytes) -> axum::Json<Value> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ctx = if body["model"] == "qwen2.5-coder:7b" {
        32768
    } else {
        131072
    };
    axum::Json(
        json!({"model_info": {"general.architecture": "qwen2", "qwen2.context_length": ctx}}),
    )
}

async fn github_issue(
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> axum::Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    axum::Json(
        json!({"number": number, "title": format!("Crash in {owner}/{repo} on empty input"),
        "body": format!("Steps: run with no arguments. (auth: {auth})")}),
    )
}

async fn openai_models() -> axum::Json<Value> {
    axum::Json(json!({"object": "list", "data": [
        {"id": "qwen2.5-7b-instruct", "object": "model"},
        {"id": "text-embedding-nomic", "object": "model"}
    ]}))
}

fn key_of(headers: &HeaderMap) -> Option<String> {
    ["authorization", "x-api-key", "x-goog-api-key"]
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn answer(
    server: FakeLlm,
    protocol: Protocol,
    path: String,
    model: String,
    headers: &HeaderMap,
    body: Value,
) -> Response {
    // The rate limit first: a refused request is not a call of any rule.
    let window = {
        let mut shared = server.shared.lock().expect("lock");
        shared.rate.as_mut().map(|r| {
            let elapsed = r.started.elapsed();
            if elapsed >= Duration::from_secs(1) {
                r.started = Instant::now();
                r.count = 0;
            }
            let left_ms = 1000u64.saturating_sub(r.started.elapsed().as_millis() as u64);
            r.count += 1;
            let over = r.count > r.per_second;
            if over {
                r.refused += 1;
            }
            (
                over,
                r.per_second,
                r.per_second.saturating_sub(r.count),
                left_ms,
            )
        })
    };
    if let Some((true, _, _, left_ms)) = window {
        return Response::builder()
            .status(429)
            .header("retry-after", format!("{:.3}", left_ms as f64 / 1000.0))
            .body(Body::from(
                json!({"error": {"message": "Rate limit reached for requests"}}).to_string(),
            ))
            .expect("response");
    }
    let turn = turn_of(&body, protocol);
    let results = tool_results_of(&body, protocol);
    let text = body.to_string();
    let authorization = key_of(headers);
    let (index, reply, release) = {
        let mut shared = server.shared.lock().expect("lock");
        let Shared { rules, used, .. } = &mut *shared;
        let hit = rules.iter().enumerate().position(|(i, r)| {
            (r.model == "*" || r.model == model)
                && r.turn.is_none_or(|t| t == turn)
                && r.tool_results.is_none_or(|n| n == results)
                && r.contains
                    .as_ref()
                    .is_none_or(|c| text.contains(c.as_str()))
                && r.times.is_none_or(|n| used[i] < n)
        });
        let reply = hit.map(|i| {
            used[i] += 1;
            rules[i].reply.clone()
        });
        shared.log.push(Record {
            protocol,
            path,
            model: model.clone(),
            body: body.clone(),
            started: Instant::now(),
            finished: None,
            authorization: authorization.clone(),
            usage: reply
                .as_ref()
                .filter(|r| r.status.is_none())
                .map_or((0, 0, 0), |r| {
                    (r.prompt_tokens, r.completion_tokens, r.cached_tokens)
                }),
        });
        (shared.log.len() - 1, reply, shared.release_holds)
    };
    let Some(reply) = reply else {
        return Response::builder()
            .status(500)
            .body(Body::from(format!(
                "fake server: no rule for model {model} turn {turn}"
            )))
            .expect("response");
    };
    if reply.hold && !release {
        // Registered before the test hears of the request, so its release cannot be missed.
        let mut released = std::pin::pin!(server.release.notified());
        released.as_mut().enable();
        let _ = server.held_tx.send(model.clone());
        released.await;
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if let Some(status) = reply.status {
        mark_finished(&server, index);
        let mut message = format!("injected failure {status}");
        if reply.echo_key {
            message.push_str(&format!(
                ": invalid key {}",
                authorization.unwrap_or_default()
            ));
        }
        let body = if reply.quota {
            json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota", "code": "insufficient_quota"}})
        } else {
            json!({"error": {"message": message}})
        };
        let mut builder = Response::builder().status(StatusCode::from_u16(status).expect("status"));
        if let Some(after) = reply.retry_after {
            builder = builder.header("retry-after", after.to_string());
        }
        return builder
            .body(Body::from(body.to_string()))
            .expect("response");
    }
    let (content_type, mut events) = match protocol {
        Protocol::OpenAi => ("text/event-stream", sse_events(&reply, &model)),
        Protocol::Anthropic => ("text/event-stream", anthropic_events(&reply, &model)),
        Protocol::Gemini => ("text/event-stream", gemini_events(&reply, &model)),
        Protocol::Ollama => ("application/x-ndjson", ollama_lines(&reply, &model)),
        Protocol::Responses => ("text/event-stream", responses_events(&reply, &model)),
    };
    if reply.garbage {
        events.insert(1, "data: {this is not json\n\n".to_owned());
    }
    if let Some(n) = reply.truncate_after {
        events.truncate(n);
    }
    mark_finished(&server, index);
    let cut = reply.cut_after;
    use futures_util::StreamExt;
    let body = match cut {
        Some(n) => {
            let sent: Vec<Result<String, std::io::Error>> =
                events.into_iter().take(n).map(Ok).collect();
            // Pause before the reset so what was sent is flushed to the client first.
            let reset = futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Err::<String, _>(std::io::Error::other("connection reset by fake server"))
            });
            Body::from_stream(futures_util::stream::iter(sent).chain(reset))
        }
        None => Body::from_stream(futures_util::stream::iter(
            events.into_iter().map(Ok::<_, std::io::Error>),
        )),
    };
    let mut response = Response::builder().header("content-type", content_type);
    if let Some((_, limit, remaining, left_ms)) = window {
        response = response
            .header("x-ratelimit-limit-requests", limit.to_string())
            .header("x-ratelimit-remaining-requests", remaining.to_string())
            .header("x-ratelimit-reset-requests", format!("{left_ms}ms"));
    }
    response.body(body).expect("response")
}

fn mark_finished(server: &FakeLlm, index: usize) {
    if let Some(r) = server.shared.lock().expect("lock").log.get_mut(index) {
        r.finished = Some(Instant::now());
    }
}
