//! `GET /api/workflow/ws` (seed §5.6): the events of one execution as the same JSON objects as
//! its `events.ndjson`, each with an added `offset` (where its line starts in that file, rising);
//! `since=N` starts with the event at offset N, so a page that reconnects misses nothing.
//! Events come from following the file (woken by the filesystem, not by polling), so a run
//! started from the CLI is live in the browser too. Without `execution_id` the socket says
//! `executions:changed` whenever an execution's status changes (the notes runners leave for
//! the index), for a live list.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use notify::{RecursiveMode, Watcher};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::AppState;
use super::error::ApiError;
use crate::store::{self, EventTail};

/// The query of the WebSocket (the token is checked by the guard).
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    execution_id: Option<String>,
    since: Option<u64>,
}

/// Upgrades to a WebSocket that follows one execution, or the list.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    match q.execution_id {
        Some(id) => {
            let dir = state.find(&id)?;
            let since = line_start(&dir.events_path(), q.since.unwrap_or(0));
            let tail = EventTail::at(&dir, since);
            Ok(ws.on_upgrade(move |socket| follow_execution(socket, dir, tail)))
        }
        None => {
            let notes = state.home.index().join("changed");
            std::fs::create_dir_all(&notes).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(ws.on_upgrade(move |socket| follow_list(socket, notes)))
        }
    }
}

/// The start of the first line at or after byte `since` of the file: `since` itself when a
/// line starts there, else the next line's start (so `since = last offset + 1` continues after
/// the last event seen).
fn line_start(path: &std::path::Path, since: u64) -> u64 {
    use std::io::{BufRead, Seek, SeekFrom};
    if since == 0 {
        return 0;
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return since;
    };
    if f.seek(SeekFrom::Start(since - 1)).is_err() {
        return since;
    }
    let mut rest = Vec::new();
    match std::io::BufReader::new(f).read_until(b'\n', &mut rest) {
        // The byte before `since` ends a line: a line starts at `since`.
        Ok(n) if n > 0 && rest.first() == Some(&b'\n') => since,
        Ok(n) if rest.last() == Some(&b'\n') => since - 1 + n as u64,
        // No complete line after `since` yet: start where the next one will.
        Ok(n) => since - 1 + n as u64,
        Err(_) => since,
    }
}

/// A watcher of `path` (not recursive) that sends on `tx` for every change.
fn watch(
    path: &std::path::Path,
    tx: mpsc::UnboundedSender<Option<String>>,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && store::is_change(&event)
        {
            for p in &event.paths {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                let _ = tx.send(name);
            }
        }
    })?;
    watcher.watch(path, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Sends the events from the tail's offset on, then each one appended, until the client goes.
async fn follow_execution(mut socket: WebSocket, dir: store::ExecutionDir, mut tail: EventTail) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Watching starts before the first read: a line appended in between is not missed.
    let Ok(_watcher) = watch(dir.root(), tx) else {
        let _ = socket.send(Message::Close(None)).await;
        return;
    };
    while let Ok(lines) = tail.read_new() {
        for (offset, line) in lines {
            let Ok(mut event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let Some(map) = event.as_object_mut() {
                map.insert("offset".into(), offset.into());
            }
            if socket
                .send(Message::Text(event.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
        tokio::select! {
            change = rx.recv() => if change.is_none() { break },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
        }
    }
}

/// Says `executions:changed` (with the id) whenever a runner notes a status change.
async fn follow_list(mut socket: WebSocket, notes: std::path::PathBuf) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let Ok(_watcher) = watch(&notes, tx) else {
        let _ = socket.send(Message::Close(None)).await;
        return;
    };
    loop {
        tokio::select! {
            change = rx.recv() => {
                let Some(name) = change else { break };
                let id = name.map(|n| n.trim_start_matches('.').trim_end_matches(".tmp").to_owned());
                let event = serde_json::json!({"type": "executions:changed", "execution_id": id});
                if socket.send(Message::Text(event.to_string().into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
        }
    }
}
