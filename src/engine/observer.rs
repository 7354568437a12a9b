//! Where a phase's output goes: its log file, and progress events for the views. Streamed text
//! is gathered into one event per `coalesce_ms` (the first line at once), each event's text is
//! capped at `event_bytes` and the log at `log_bytes`, with a marker where text was dropped, so
//! a runaway reply cannot flood the event log, the terminal or the disk. The files written by
//! the implementer are remembered for non-git diffs.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::events::{EventBus, EventKind};
use super::job::{PhaseEnv, PhaseJob};
use crate::agent::Observer;
use crate::spec::OutputLimits;

/// The log file and how much of it is written.
struct Log {
    file: Option<std::fs::File>,
    written: u64,
    dropped: u64,
}

/// Streamed text not yet sent as an event.
struct Pending {
    text: String,
    dropped: u64,
    last_emit: Option<Instant>,
}

/// Streams a phase's output to its log file and as progress events.
pub(super) struct PhaseObserver<'a> {
    bus: &'a EventBus,
    phase_id: String,
    iteration: u32,
    limits: OutputLimits,
    log: Mutex<Log>,
    pending: Mutex<Pending>,
    pub touched: Mutex<Vec<String>>,
}

impl<'a> PhaseObserver<'a> {
    pub fn new(env: &PhaseEnv<'a>, job: &PhaseJob<'_>) -> Self {
        let _ = std::fs::create_dir_all(env.execution.logs_dir());
        let path = env.execution.log_path(&job.phase.id, job.iteration);
        Self {
            bus: env.bus,
            phase_id: job.phase.id.clone(),
            iteration: job.iteration,
            limits: *env.limits,
            log: Mutex::new(Log {
                file: std::fs::File::create(path).ok(),
                written: 0,
                dropped: 0,
            }),
            pending: Mutex::new(Pending {
                text: String::new(),
                dropped: 0,
                last_emit: None,
            }),
            touched: Mutex::new(Vec::new()),
        }
    }

    /// Appends to the log, up to `log_bytes`.
    pub fn log(&self, text: &str) {
        let Ok(mut log) = self.log.lock() else {
            return;
        };
        let room = self.limits.log_bytes.saturating_sub(log.written) as usize;
        let take = floor_char_boundary(text, room.min(text.len()));
        if let Some(f) = log.file.as_mut() {
            let _ = f.write_all(&text.as_bytes()[..take]);
        }
        log.written += take as u64;
        log.dropped += (text.len() - take) as u64;
    }

    /// Sends `text` as one progress event, its end kept within `event_bytes`.
    fn emit(&self, text: &str, dropped: u64) {
        let text = text.trim_end();
        if text.trim().is_empty() && dropped == 0 {
            return;
        }
        let cap = self.limits.event_bytes as usize;
        let cut = text.len().saturating_sub(cap);
        let start = ceil_char_boundary(text, cut);
        let dropped = dropped + start as u64;
        let text = if dropped > 0 {
            format!(
                "[… {dropped} bytes not shown; the phase log has them]\n{}",
                &text[start..]
            )
        } else {
            text.to_owned()
        };
        self.bus.emit(EventKind::PhaseProgress {
            phase_id: self.phase_id.clone(),
            iteration: self.iteration,
            text,
        });
    }

    /// Sends every pending line now; `all` also sends an unfinished last line.
    fn send_pending(&self, all: bool) {
        let (text, dropped) = {
            let Ok(mut p) = self.pending.lock() else {
                return;
            };
            let end = if all {
                p.text.len()
            } else {
                p.text.rfind('\n').map_or(0, |n| n + 1)
            };
            if end == 0 && p.dropped == 0 {
                return;
            }
            let text: String = p.text.drain(..end).collect();
            p.last_emit = Some(Instant::now());
            (text, std::mem::take(&mut p.dropped))
        };
        self.emit(&text, dropped);
    }

    /// Sends what is pending, the unfinished line included.
    pub fn flush(&self) {
        self.send_pending(true);
        if let Ok(mut log) = self.log.lock()
            && log.dropped > 0
        {
            let marker = format!(
                "\n[log cut at {} bytes: {} bytes not written (output_limits.log_bytes)]\n",
                log.written, log.dropped
            );
            log.dropped = 0;
            if let Some(f) = log.file.as_mut() {
                let _ = f.write_all(marker.as_bytes());
            }
        }
    }

    /// A line of its own (a tool call, a command, a notice): sent at once.
    pub fn note(&self, text: &str) {
        self.send_pending(true);
        self.log(&format!("\n{text}\n"));
        self.emit(text, 0);
    }
}

impl Observer for PhaseObserver<'_> {
    fn text(&self, delta: &str) {
        self.log(delta);
        let due = {
            let Ok(mut p) = self.pending.lock() else {
                return;
            };
            p.text.push_str(delta);
            // Only the end of a burst can be shown: keep at most two events' worth.
            let keep = 2 * self.limits.event_bytes as usize;
            if p.text.len() > keep {
                let cut = ceil_char_boundary(&p.text, p.text.len() - keep);
                p.dropped += cut as u64;
                p.text.drain(..cut);
            }
            let window = Duration::from_millis(self.limits.coalesce_ms);
            p.text.contains('\n') && p.last_emit.is_none_or(|t| t.elapsed() >= window)
        };
        if due {
            self.send_pending(false);
        }
    }

    fn reply_limit(&self) -> Option<u64> {
        Some(self.limits.artifact_bytes)
    }

    fn tool(&self, name: &str, arguments: &str, result: &Result<String, String>) {
        let args: serde_json::Value = serde_json::from_str(arguments).unwrap_or_default();
        let target = ["path", "command", "pattern"]
            .iter()
            .find_map(|k| args.get(*k).and_then(|v| v.as_str()))
            .unwrap_or("");
        if matches!(name, "write_file" | "edit_file")
            && result.is_ok()
            && let Ok(mut t) = self.touched.lock()
        {
            t.push(target.to_owned());
        }
        let verdict = match result {
            Ok(_) => String::new(),
            Err(e) => format!(" — refused: {e}"),
        };
        self.note(&format!("> {name} {target}{verdict}"));
    }
}

/// The largest char boundary of `s` at or below `i`.
fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary of `s` at or above `i`.
fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}
