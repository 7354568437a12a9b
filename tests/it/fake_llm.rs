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
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One scripted answer.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub text: String,
    pub tool_calls: Vec<(String, Value)>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub delay: Duration,
    pub status: Option<u16>,
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
}

/// When a reply applies.
#[derive(Clone, Debug)]
pub struct Rule {
    pub model: String,
    pub turn: Option<usize>,
    pub contains: Option<String>,
    pub reply: Reply,
}

/// What the server saw.
#[derive(Clone, Debug)]
pub struct Record {
    pub model: String,
    pub body: Value,
    pub started: Instant,
    pub finished: Option<Instant>,
    pub authorization: Option<String>,
    /// (prompt tokens without cached, completion tokens, cached tokens) sent back.
    pub usage: (u64, u64, u64),
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    log: Vec<Record>,
    release_holds: bool,
}

/// A running fake server.
#[derive(Clone)]
pub struct FakeLlm {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    held_tx: mpsc::UnboundedSender<String>,
}

impl FakeLlm {
    /// Starts the server on an ephemeral port; returns it and a receiver told the model of
    /// every held request.
    pub async fn start(rules: Vec<Rule>) -> (Self, mpsc::UnboundedReceiver<String>) {
        let (held_tx, held_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(Shared {
            rules,
            ..Shared::default()
        }));
        let server = Self {
            addr: "127.0.0.1:0".parse().expect("addr"),
            shared,
            held_tx,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = Self { addr, ..server };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
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

    /// From now on, held replies are answered normally.
    pub fn release_holds(&self) {
        self.shared.lock().expect("lock").release_holds = true;
    }
}

fn turn_of(body: &Value) -> usize {
    body["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "assistant").count())
        .unwrap_or(0)
}

async fn chat(
    State(server): State<FakeLlm>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let turn = turn_of(&body);
    let text = body.to_string();
    let (index, reply, release) = {
        let mut shared = server.shared.lock().expect("lock");
        let reply = shared
            .rules
            .iter()
            .find(|r| {
                r.model == model
                    && r.turn.is_none_or(|t| t == turn)
                    && r.contains
                        .as_ref()
                        .is_none_or(|c| text.contains(c.as_str()))
            })
            .map(|r| r.reply.clone());
        shared.log.push(Record {
            model: model.clone(),
            body: body.clone(),
            started: Instant::now(),
            finished: None,
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
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
        let _ = server.held_tx.send(model.clone());
        std::future::pending::<()>().await;
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if let Some(status) = reply.status {
        mark_finished(&server, index);
        return Response::builder()
            .status(StatusCode::from_u16(status).expect("status"))
            .body(Body::from(
                json!({"error": {"message": "injected failure"}}).to_string(),
            ))
            .expect("response");
    }
    let events = sse_events(&reply, &model);
    let stream = futures_util::stream::iter(events.into_iter().map(Ok::<_, std::io::Error>));
    mark_finished(&server, index);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("response")
}

fn mark_finished(server: &FakeLlm, index: usize) {
    if let Some(r) = server.shared.lock().expect("lock").log.get_mut(index) {
        r.finished = Some(Instant::now());
    }
}

/// The SSE chunks OpenAI sends: role, content pieces, tool-call pieces, finish, usage, [DONE].
pub fn sse_events(reply: &Reply, model: &str) -> Vec<String> {
    let served = reply
        .served_model
        .clone()
        .unwrap_or_else(|| model.to_owned());
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": served,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let chars: Vec<char> = reply.text.chars().collect();
    for piece in chars.chunks(16) {
        events.push(chunk(
            json!({"content": piece.iter().collect::<String>()}),
            Value::Null,
        ));
    }
    for (i, (name, args)) in reply.tool_calls.iter().enumerate() {
        let args = args.to_string();
        let (a, b) = args.split_at(args.len() / 2);
        events.push(chunk(
            json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": a}}]}),
            Value::Null,
        ));
        events.push(chunk(
            json!({"tool_calls": [{"index": i, "function": {"arguments": b}}]}),
            Value::Null,
        ));
    }
    let finish = if reply.tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    events.push(chunk(json!({}), json!(finish)));
    events.push(json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": served, "choices": [],
        "usage": {"prompt_tokens": reply.prompt_tokens + reply.cached_tokens, "completion_tokens": reply.completion_tokens,
                  "prompt_tokens_details": {"cached_tokens": reply.cached_tokens}}}));
    let mut out: Vec<String> = events
        .into_iter()
        .map(|e| format!("data: {e}\n\n"))
        .collect();
    out.push("data: [DONE]\n\n".to_owned());
    out
}
