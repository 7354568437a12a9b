//! Where a phase's output goes: its log file, and progress events for the views. Streamed text
//! is cut into lines; the files written by the implementer are remembered for non-git diffs.

use std::io::Write;
use std::sync::Mutex;

use super::events::{EventBus, EventKind};
use super::phase::{PhaseEnv, PhaseJob};
use crate::agent::Observer;

/// Streams a phase's output to its log file and as progress events, one line at a time.
pub(super) struct PhaseObserver<'a> {
    bus: &'a EventBus,
    phase_id: String,
    iteration: u32,
    log: Mutex<Option<std::fs::File>>,
    line: Mutex<String>,
    pub touched: Mutex<Vec<String>>,
}

impl<'a> PhaseObserver<'a> {
    pub fn new(env: &PhaseEnv<'a>, job: &PhaseJob<'_>) -> Self {
        let _ = std::fs::create_dir_all(env.log_dir);
        let path = env
            .log_dir
            .join(format!("{}.{}.log", job.phase.id, job.iteration));
        Self {
            bus: env.bus,
            phase_id: job.phase.id.clone(),
            iteration: job.iteration,
            log: Mutex::new(std::fs::File::create(path).ok()),
            line: Mutex::new(String::new()),
            touched: Mutex::new(Vec::new()),
        }
    }

    pub fn log(&self, text: &str) {
        if let Ok(mut log) = self.log.lock()
            && let Some(f) = log.as_mut()
        {
            let _ = f.write_all(text.as_bytes());
        }
    }

    pub fn progress(&self, text: &str) {
        let text = text.trim_end();
        if text.trim().is_empty() {
            return;
        }
        self.bus.emit(EventKind::PhaseProgress {
            phase_id: self.phase_id.clone(),
            iteration: self.iteration,
            text: text.to_owned(),
        });
    }

    pub fn flush(&self) {
        let rest = self
            .line
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        self.progress(&rest);
    }

    pub fn note(&self, text: &str) {
        self.flush();
        self.log(&format!("\n{text}\n"));
        self.progress(text);
    }
}

impl Observer for PhaseObserver<'_> {
    fn text(&self, delta: &str) {
        self.log(delta);
        let lines: Vec<String> = match self.line.lock() {
            Ok(mut buf) => {
                buf.push_str(delta);
                let mut done = Vec::new();
                while let Some(n) = buf.find('\n') {
                    done.push(buf[..n].to_owned());
                    buf.drain(..=n);
                }
                done
            }
            Err(_) => Vec::new(),
        };
        for line in lines {
            self.progress(&line);
        }
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
