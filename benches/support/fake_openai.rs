//! A zero-latency fake OpenAI chat-completions server for the benchmarks: it answers every
//! request at once with an SSE stream chosen by the request's model name, and adds up the time
//! it spends on requests, so a run's own overhead is its wall time minus that, and the instant
//! it starts writing each answer's first event, for the latency from wire to progress event.
//!
//! Models: `analysis` (a task list), `plan`, `done`, `approve` (a passing review), `big-N` (N MB
//! of text, then a task list).

// Shared by both benchmark binaries; each uses a part of it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The running server.
pub struct FakeOpenAi {
    addr: std::net::SocketAddr,
    busy: Arc<Mutex<Duration>>,
    first_byte: Arc<Mutex<Option<Instant>>>,
}

impl FakeOpenAi {
    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    /// Time spent on requests since the last reset.
    pub fn busy(&self) -> Duration {
        *self.busy.lock().expect("lock")
    }
    /// When the latest answer's first event began to be written.
    pub fn last_first_byte(&self) -> Option<Instant> {
        *self.first_byte.lock().expect("lock")
    }
    /// Starts counting again.
    pub fn reset(&self) {
        *self.busy.lock().expect("lock") = Duration::ZERO;
    }
}

/// Starts the server on a free port.
pub async fn start() -> FakeOpenAi {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let busy = Arc::new(Mutex::new(Duration::ZERO));
    let first_byte = Arc::new(Mutex::new(None));
    let (total, stamp) = (busy.clone(), first_byte.clone());
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (total, stamp) = (total.clone(), stamp.clone());
            tokio::spawn(async move {
                if let Some(spent) = answer(sock, &stamp).await {
                    *total.lock().expect("lock") += spent;
                }
            });
        }
    });
    FakeOpenAi {
        addr,
        busy,
        first_byte,
    }
}

const TASKS: &str = "```json\n{\"summary\": \"s\", \"tasks\": []}\n```\n/done";
const APPROVE: &str = "```json\n{\"approved\": true, \"summary\": \"ok\"}\n```\n/done";

fn chunk(content: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"model": "m", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    )
}

/// Reads one request and streams its answer; the time from its first byte to the last.
async fn answer(
    mut sock: tokio::net::TcpStream,
    first_byte: &Mutex<Option<Instant>>,
) -> Option<Duration> {
    let mut buf = Vec::new();
    let mut piece = [0u8; 16384];
    let mut started = None;
    let body_start = loop {
        let n = sock.read(&mut piece).await.ok()?;
        if n == 0 {
            return None;
        }
        started.get_or_insert_with(Instant::now);
        buf.extend_from_slice(&piece[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break end + 4;
            }
        }
    };
    let body: serde_json::Value = serde_json::from_slice(&buf[body_start..]).ok()?;
    let model = body["model"].as_str().unwrap_or("done").to_owned();
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    sock.write_all(head.as_bytes()).await.ok()?;
    *first_byte.lock().expect("lock") = Some(Instant::now());
    let text = match model.as_str() {
        "analysis" => TASKS.to_owned(),
        "plan" => "plan /done".to_owned(),
        "approve" => APPROVE.to_owned(),
        m if m.starts_with("big-") => {
            let mb: usize = m[4..].parse().unwrap_or(1);
            let line = "x".repeat(1023) + "\n";
            let piece = chunk(&line.repeat(64));
            for _ in 0..mb * 16 {
                sock.write_all(piece.as_bytes()).await.ok()?;
            }
            TASKS.to_owned()
        }
        _ => "/done".to_owned(),
    };
    let rest = format!(
        "{}data: {}\n\ndata: [DONE]\n\n",
        chunk(&text),
        serde_json::json!({"model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
    );
    sock.write_all(rest.as_bytes()).await.ok()?;
    let _ = sock.shutdown().await;
    started.map(|s| s.elapsed())
}
