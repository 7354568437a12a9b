//! The budget watchdog of an agent CLI run: a small HTTP proxy on 127.0.0.1 between the CLI and
//! its API. Codex, Gemini CLI and Qwen Code take no dollar cap of their own, and some report
//! usage only when their whole run ends; the watchdog sees every model call as it is made.
//! Before forwarding a call it checks that the call's worst case (prompt bytes / 3 tokens in,
//! the request's output cap out) fits what the run may still spend; a call that does not fit
//! is refused with 402 and the run is stopped. After each response it adds the usage the API
//! reported (conservatively: cached tokens at the full input price), and keeps the model that
//! served, which Codex's own stream never names.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;

use crate::budget::{CallEstimate, Price, Pricing, output_cap};
use crate::spec::TokenUsage;

/// Why the watchdog stopped a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Stopped {
    /// USD the run had spent.
    pub spent: f64,
    /// USD it could spend.
    pub cap: f64,
    /// The worst case of the refused call.
    pub needed: f64,
}

/// What the watchdog measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Tokens over every answered call.
    pub usage: TokenUsage,
    /// Calls answered.
    pub calls: u32,
    /// The model the API said served the last call.
    pub served_model: Option<String>,
}

struct Shared {
    upstream: reqwest::Url,
    client: reqwest::Client,
    price: Price,
    cap: f64,
    spent: Mutex<f64>,
    measured: Mutex<Measured>,
    stopped: Mutex<Option<Stopped>>,
    stop: Notify,
}

/// A running watchdog; dropping it stops the proxy.
pub struct Watchdog {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Watchdog {
    /// Starts a proxy to `upstream` (the API's base URL) that lets a run spend at most `cap`
    /// USD at `price`.
    pub async fn start(
        upstream: &str,
        client: reqwest::Client,
        price: Price,
        cap: f64,
    ) -> std::io::Result<Self> {
        let upstream = reqwest::Url::parse(upstream).map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            upstream,
            client,
            price,
            cap,
            spent: Mutex::new(0.0),
            measured: Mutex::new(Measured::default()),
            stopped: Mutex::new(None),
            stop: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            shared,
            addr,
            server,
        })
    }

    /// The base URL the CLI is given: `upstream` with its origin replaced by the proxy's.
    pub fn base_url(&self, upstream: &str) -> String {
        let path = reqwest::Url::parse(upstream)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        format!("http://{}{path}", self.addr)
    }

    /// The proxy's port, the only one the sandboxed CLI may connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Resolves when a call was refused for the budget.
    pub async fn stopped(&self) -> Stopped {
        loop {
            let notified = self.shared.stop.notified();
            if let Some(s) = self.stop_reason() {
                return s;
            }
            notified.await;
        }
    }

    /// Why the run was stopped, if it was.
    pub fn stop_reason(&self) -> Option<Stopped> {
        self.shared.stopped.lock().ok().and_then(|s| s.clone())
    }

    /// What the answered calls used.
    pub fn measured(&self) -> Measured {
        self.shared
            .measured
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Headers not forwarded: hop-by-hop ones, the length (the body is re-framed), and the
/// encoding (the watchdog reads the answer, so it asks for it uncompressed).
fn forwarded(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "accept-encoding"
            | "content-encoding"
            | "keep-alive"
    )
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"error": {"message": message, "type": "budget_exceeded"}});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

async fn forward(State(s): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return refuse(StatusCode::BAD_REQUEST, "request body too large");
    };
    let needed = worst_case(&s.price, &bytes);
    {
        let spent = s.spent.lock().map(|g| *g).unwrap_or(f64::MAX);
        if spent + needed > s.cap + 1e-12 {
            if let Ok(mut stopped) = s.stopped.lock() {
                stopped.get_or_insert(Stopped {
                    spent,
                    cap: s.cap,
                    needed,
                });
            }
            s.stop.notify_waiters();
            return refuse(
                StatusCode::PAYMENT_REQUIRED,
                "autowrkers: this call would pass the remaining budget",
            );
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(url) = s.upstream.join(path) else {
        return refuse(StatusCode::BAD_GATEWAY, "bad upstream path");
    };
    let mut upstream = s.client.request(parts.method.clone(), url).body(bytes);
    for (name, value) in parts.headers.iter().filter(|(n, _)| forwarded(n)) {
        upstream = upstream.header(name, value);
    }
    let answer = match upstream.send().await {
        Ok(a) => a,
        Err(e) => return refuse(StatusCode::BAD_GATEWAY, &format!("upstream: {e}")),
    };
    let mut builder = Response::builder().status(answer.status());
    for (name, value) in answer.headers().iter().filter(|(n, _)| forwarded(n)) {
        builder = builder.header(name, value);
    }
    let sniff = Arc::new(Mutex::new(Sniff::default()));
    let fed = sniff.clone();
    let done = s.clone();
    let stream = answer
        .bytes_stream()
        .map(move |chunk| {
            if let (Ok(bytes), Ok(mut sn)) = (&chunk, fed.lock()) {
                sn.feed(bytes);
            }
            chunk
        })
        .chain(futures_util::stream::once(async move {
            if let Ok(mut sn) = sniff.lock() {
                sn.finish();
                account(&done, &sn);
            }
            Ok(Bytes::new())
        }));
    builder.body(Body::from_stream(stream)).unwrap_or_default()
}

/// A call's worst case, as the guard reckons it: the request body as the prompt, and the
/// output cap the request sets in whichever vendor's field.
fn worst_case(price: &Price, body: &[u8]) -> f64 {
    let json: Value = serde_json::from_slice(body).unwrap_or_default();
    let call = CallEstimate {
        model: String::new(),
        prompt_chars: body.len(),
        max_output: [
            &json["max_tokens"],
            &json["max_output_tokens"],
            &json["max_completion_tokens"],
            &json["generationConfig"]["maxOutputTokens"],
        ]
        .iter()
        .find_map(|v| v.as_u64()),
    };
    price.cost(&TokenUsage {
        input: call.prompt_tokens(),
        output: output_cap(&Pricing::Table(*price), call.max_output),
        ..TokenUsage::default()
    })
}

fn account(s: &Shared, sniff: &Sniff) {
    let usage = TokenUsage {
        input: sniff.input,
        output: sniff.output,
        ..TokenUsage::default()
    };
    if let Ok(mut spent) = s.spent.lock() {
        *spent += s.price.cost(&usage);
    }
    if let Ok(mut m) = s.measured.lock() {
        m.usage.add(&usage);
        m.calls += 1;
        if sniff.model.is_some() {
            m.served_model = sniff.model.clone();
        }
    }
}

/// Reads the usage and model out of an answer in any of the four vendors' formats, SSE or a
/// whole JSON body; the last figure seen for each field wins (Anthropic's output count and
/// Gemini's usage are cumulative).
#[derive(Default)]
struct Sniff {
    pending: Vec<u8>,
    input: u64,
    output: u64,
    model: Option<String>,
}

impl Sniff {
    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(n) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=n).collect();
            self.line(&line);
        }
        // A non-streamed body is one JSON value without newlines: keep it bounded.
        if self.pending.len() > (8 << 20) {
            self.pending.clear();
        }
    }

    fn finish(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        self.line(&rest);
    }

    fn line(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        let data = text.strip_prefix("data:").unwrap_or(text).trim();
        if let Ok(v) = serde_json::from_str::<Value>(data) {
            self.read(&v);
        }
    }

    fn read(&mut self, v: &Value) {
        let pick = |paths: &[&[&str]]| {
            paths.iter().find_map(|path| {
                path.iter()
                    .try_fold(v, |node, key| node.get(*key))
                    .and_then(Value::as_u64)
            })
        };
        if let Some(n) = pick(&[
            &["usage", "prompt_tokens"],
            &["usage", "input_tokens"],
            &["response", "usage", "input_tokens"],
            &["message", "usage", "input_tokens"],
            &["usageMetadata", "promptTokenCount"],
        ]) {
            self.input = n;
        }
        if let Some(n) = pick(&[
            &["usage", "completion_tokens"],
            &["usage", "output_tokens"],
            &["response", "usage", "output_tokens"],
            &["usageMetadata", "candidatesTokenCount"],
        ]) {
            self.output = n;
        }
        let model = [
            &v["model"],
            &v["response"]["model"],
            &v["message"]["model"],
            &v["modelVersion"],
        ]
        .into_iter()
        .find_map(|m| m.as_str().filter(|s| !s.is_empty()));
        if let Some(m) = model {
            self.model = Some(m.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_model_are_read_from_every_vendor_format() {
        let mut s = Sniff::default();
        s.feed(b"data: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-x\",\"usage\":{\"input_tokens\":120,\"output_tokens\":30}}}\n\n");
        s.finish();
        assert_eq!(
            (s.input, s.output, s.model.as_deref()),
            (120, 30, Some("gpt-x"))
        );
        let mut s = Sniff::default();
        s.feed(b"data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":50}}}\n");
        s.feed(b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n");
        s.finish();
        assert_eq!((s.input, s.output), (50, 7));
        let mut s = Sniff::default();
        s.feed(b"{\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":4},\"modelVersion\":\"gemini-x\"}");
        s.finish();
        assert_eq!(
            (s.input, s.output, s.model.as_deref()),
            (9, 4, Some("gemini-x"))
        );
    }

    #[test]
    fn the_worst_case_uses_the_requested_output_cap() {
        let price = Price {
            input: 1_000_000.0,
            output: 1_000_000.0,
            cached_input: None,
            cache_write: None,
            max_output: Some(100),
        };
        // 29 bytes → 9 prompt tokens; max_output_tokens 5 → $14 at $1 a token.
        let body = br#"{"max_output_tokens":5,"x":1}"#;
        assert_eq!(body.len(), 29);
        assert!((worst_case(&price, body) - (9.0 + 5.0)).abs() < 1e-9);
        assert!((worst_case(&price, b"{}") - 100.0).abs() < 1e-9);
    }
}
