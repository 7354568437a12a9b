//! Runners for many executions at once, at most `cap` at a time (`max_parallel_executions`):
//! `reconcile` and `watch` hand executions here; each runs in its own detached
//! `autowrkers resume` process, exactly as the live view starts one, and its end is reported
//! as an event (a thread waits on each child), never found by polling.

use std::collections::VecDeque;
use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::engine::detached_runner;
use crate::store::{ExecutionDir, StoreError};

/// A runner that ended.
#[derive(Debug)]
pub struct Finished {
    /// Its execution.
    pub dir: ExecutionDir,
    /// The runner's exit code (`None` when killed by a signal); DESIGN §8's codes.
    pub code: Option<i32>,
}

/// Runners in flight and executions waiting for a free slot.
pub struct RunnerPool {
    exe: PathBuf,
    cap: usize,
    running: Vec<ExecutionDir>,
    queue: VecDeque<ExecutionDir>,
    tx: mpsc::UnboundedSender<(ExecutionDir, Option<i32>)>,
}

/// The ends of a pool's runners, as they happen; hand each to `RunnerPool::ended`.
pub struct Endings(mpsc::UnboundedReceiver<(ExecutionDir, Option<i32>)>);

impl Endings {
    /// The next runner to end: its execution and exit code.
    pub async fn next(&mut self) -> Option<(ExecutionDir, Option<i32>)> {
        self.0.recv().await
    }
}

impl RunnerPool {
    /// A pool running `exe resume` for at most `cap` executions at once (at least one), and
    /// the stream of its runners' ends.
    pub fn new(exe: PathBuf, cap: usize) -> (Self, Endings) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pool = Self {
            exe,
            cap: cap.max(1),
            running: Vec::new(),
            queue: VecDeque::new(),
            tx,
        };
        (pool, Endings(rx))
    }

    /// Runs `dir` now when a slot is free, else when one frees up. An execution already
    /// running or queued here is not added twice.
    pub fn submit(&mut self, dir: ExecutionDir) -> Result<(), StoreError> {
        if self.holds(&dir.id()) {
            return Ok(());
        }
        if self.running.len() < self.cap {
            self.start(dir)
        } else {
            self.queue.push_back(dir);
            Ok(())
        }
    }

    fn start(&mut self, dir: ExecutionDir) -> Result<(), StoreError> {
        let mut child = detached_runner(&self.exe, &dir)?;
        let tx = self.tx.clone();
        let done = dir.clone();
        std::thread::spawn(move || {
            let code = child.wait().ok().and_then(|s| s.code());
            let _ = tx.send((done, code));
        });
        self.running.push(dir);
        Ok(())
    }

    /// True when the execution `id` runs or waits here.
    pub fn holds(&self, id: &str) -> bool {
        self.running.iter().chain(&self.queue).any(|d| d.id() == id)
    }

    /// True when nothing runs or waits.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.queue.is_empty()
    }

    /// How many runners are in flight.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Records that the runner of `dir` ended (as `Endings` said) and starts the next queued
    /// execution in its slot.
    pub fn ended(&mut self, dir: ExecutionDir, code: Option<i32>) -> Finished {
        self.running.retain(|d| d.id() != dir.id());
        while self.running.len() < self.cap
            && let Some(next) = self.queue.pop_front()
        {
            // A runner that cannot start is reported as ended with no code.
            if self.start(next.clone()).is_err() {
                let _ = self.tx.send((next, None));
            }
        }
        Finished { dir, code }
    }

    /// Waits for the next runner to end (`None` when nothing runs) and fills its slot.
    pub async fn next_finished(&mut self, endings: &mut Endings) -> Option<Finished> {
        if self.running.is_empty() {
            return None;
        }
        let (dir, code) = endings.next().await?;
        Some(self.ended(dir, code))
    }
}
