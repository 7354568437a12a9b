//! `cargo bench --bench serve`: the figures of `autowrkers serve` on the release binary.
//!
//! - the list page's data (`GET /api/workflow/executions?limit=100`, what the dashboard asks)
//!   with 10 000 executions in the served project (and every one of them, for comparison);
//! - an event appended to `events.ndjson` reaching a WebSocket client;
//! - the CPU an idle server uses over two seconds with a list socket open.
//!
//! The fixture is one real execution (a 1-phase run against the fake OpenAI server) copied
//! 10 000 times, as the scale bench does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/fake_openai.rs"]
mod fake_openai;
#[path = "support/project.rs"]
mod project;

use std::io::{BufRead, Write};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use project::{copy_executions, cpu_ms, median, one_phase, project};

const BIN: &str = env!("CARGO_BIN_EXE_autowrkers");
const EXECUTIONS: usize = 10_000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(fake_openai::start());
    let tmp = tempfile::tempdir().expect("tmp");
    let home = tmp.path().join("home");
    let source = tmp.path().join("one");
    std::fs::create_dir_all(&source).expect("mkdir");
    project(&source, &[("one.yaml", one_phase(&server.url()))]);
    let ok = Command::new(BIN)
        .args([
            "run",
            "--task",
            "bench",
            "--template",
            "one.yaml",
            "--no-realtime",
        ])
        .env("AUTOWRKERS_HOME", &home)
        .current_dir(&source)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run")
        .success();
    assert!(ok, "the fixture's run failed");
    let big = tmp.path().join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    project(&big, &[]);
    let ids = copy_executions(&source, &big, EXECUTIONS);

    let mut child = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--path"])
        .arg(&big)
        .env("AUTOWRKERS_HOME", &home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address");
    let url = line
        .trim()
        .trim_start_matches("autowrkers serve: ")
        .to_owned();
    let (base, token) = url.split_once("/?token=").expect("token");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .tls_certs_only([])
        .build()
        .expect("client");
    let get = |path: String| {
        let req = http
            .get(format!("{base}/api/workflow{path}"))
            .bearer_auth(token);
        async move {
            let started = Instant::now();
            let res = req.send().await.expect("request");
            assert!(res.status().is_success());
            let body = res.bytes().await.expect("body");
            (started.elapsed(), body.len())
        }
    };
    // The first request builds the index from the files (as the first CLI command would).
    let (first, _) = rt.block_on(get("/executions?limit=100".into()));
    println!("(first request, index built from {EXECUTIONS} executions' files: {first:.2?})");
    let list: Vec<Duration> = (0..15)
        .map(|_| rt.block_on(get("/executions?limit=100".into())).0)
        .collect();
    let all: Vec<(Duration, usize)> = (0..5)
        .map(|_| rt.block_on(get(format!("/executions?limit={EXECUTIONS}"))))
        .collect();
    let all_bytes = all[0].1;

    // Event latency: append a line, time until the socket delivers it.
    let dir = big
        .join(".autowrkers/executions")
        .join(&ids[EXECUTIONS / 2]);
    let events = dir.join("events.ndjson");
    let latencies: Vec<Duration> = rt.block_on(async {
        let since = std::fs::metadata(&events).expect("events").len();
        let ws_url = format!(
            "ws://{}/api/workflow/ws?token={token}&execution_id={}&since={since}",
            base.trim_start_matches("http://"),
            ids[EXECUTIONS / 2]
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("ws");
        let mut out = Vec::new();
        for n in 0..20 {
            let line = format!(
                "{{\"ts\":\"2026-01-01T00:00:00Z\",\"execution_id\":\"{}\",\"type\":\"workflow:phase_progress\",\"phase_id\":\"a\",\"iteration\":1,\"text\":\"line {n}\"}}\n",
                ids[EXECUTIONS / 2]
            );
            let started = Instant::now();
            let mut f = std::fs::OpenOptions::new().append(true).open(&events).expect("open");
            f.write_all(line.as_bytes()).expect("append");
            drop(f);
            let msg = ws.next().await.expect("open").expect("frame");
            out.push(started.elapsed());
            assert!(msg.to_string().contains(&format!("line {n}")), "{msg}");
        }
        out
    });

    // Idle: a list socket open, nothing changing, for two seconds.
    let pid = child.id();
    let idle = rt.block_on(async {
        let ws_url = format!(
            "ws://{}/api/workflow/ws?token={token}",
            base.trim_start_matches("http://")
        );
        let (_ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("ws");
        let before = cpu_ms(pid);
        // A measurement window, not a wait for an event: the question is what happens in it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        cpu_ms(pid) - before
    });
    let _ = child.kill();
    let _ = child.wait();
    println!("\n| measure | ours | goal |\n|---|---|---|");
    println!(
        "| list page's data (newest 100), {EXECUTIONS} executions | {:.2?} | ≤ 100 ms |",
        median(list)
    );
    println!(
        "| every execution ({EXECUTIONS}, {} kB of JSON) | {:.2?} | — |",
        all_bytes / 1024,
        median(all.into_iter().map(|(d, _)| d).collect())
    );
    println!(
        "| an appended event reaches a WebSocket client | {:.2?} | ≤ 100 ms |",
        median(latencies)
    );
    println!(
        "| CPU of an idle server over 2 s (a list socket open) | {} ms | ~0 |",
        idle
    );
}
