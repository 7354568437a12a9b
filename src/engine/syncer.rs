//! The thread that makes the runner's states durable. The record thread ([`super::recorder`])
//! asks it for a sync each time it has put a state that records work done in place; the syncer
//! flushes `state.json` as it is then (the newest, which holds every earlier state) and its
//! folder. Writing the next states, and a status change the pass waits for, never wait behind
//! the disk; the pass's end waits for every sync asked.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::store::{ExecutionDir, StoreError};

/// What was asked of the thread and what it has done.
#[derive(Debug, Default)]
struct Owed {
    /// Syncs asked for so far.
    asked: u64,
    /// Of them, those made (one sync answers every ask before it).
    done: u64,
    /// No more asks: the thread ends once it has caught up.
    closing: bool,
    /// The sync that failed, for the next ask or the finish to report; the thread stops.
    failed: Option<StoreError>,
}

#[derive(Debug, Default)]
struct Shared {
    owed: Mutex<Owed>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Owed> {
        self.owed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sync thread of one record thread: started at the first ask.
#[derive(Debug)]
pub(super) struct Syncer {
    dir: ExecutionDir,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Whether the first sync (which also syncs what the execution's creation left unsynced)
    /// has been made, or handed to the thread.
    synced_once: bool,
}

impl Syncer {
    /// A syncer for the execution in `dir`, with no thread yet.
    pub fn new(dir: &ExecutionDir) -> Self {
        Self {
            dir: dir.clone(),
            shared: Arc::default(),
            thread: None,
            synced_once: false,
        }
    }

    /// Asks for `state.json` as it is now to be synced; the failure of an earlier sync, if
    /// any. Where no thread can be started, syncs here and now.
    pub fn ask(&mut self) -> Result<(), StoreError> {
        if self.thread.is_none() {
            // Whoever makes the first sync also syncs what the creation left unsynced.
            let created = !std::mem::replace(&mut self.synced_once, true);
            let (dir, shared) = (self.dir.clone(), Arc::clone(&self.shared));
            match std::thread::Builder::new()
                .name("autowrkers-sync".into())
                .spawn(move || run(&dir, &shared, created))
            {
                Ok(handle) => self.thread = Some(handle),
                Err(_) => return self.dir.sync_state(created),
            }
        }
        let mut owed = self.shared.lock();
        if let Some(e) = owed.failed.take() {
            return Err(e);
        }
        owed.asked += 1;
        drop(owed);
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Waits for every sync asked and stops the thread; the first failure, if any.
    pub fn finish(mut self) -> Result<(), StoreError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
        let _ = thread.join();
        match self.shared.lock().failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The thread: waits for asks and answers all those made before each sync with that sync;
/// `created`: its first sync also syncs what the execution's creation left unsynced.
fn run(dir: &ExecutionDir, shared: &Shared, mut created: bool) {
    loop {
        let mut owed = shared.lock();
        while owed.asked == owed.done && !owed.closing {
            owed = shared
                .changed
                .wait(owed)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if owed.asked == owed.done {
            return;
        }
        let target = owed.asked;
        drop(owed);
        let synced = dir.sync_state(created);
        created = false;
        let mut owed = shared.lock();
        owed.done = target;
        if let Err(e) = synced {
            owed.failed = Some(e);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sync_asked_is_made_before_the_finish_and_a_failure_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ExecutionDir::new(tmp.path().join("e1"));
        std::fs::create_dir_all(dir.root()).unwrap();
        dir.record_state_text(b"{}").unwrap().remove();
        let mut syncer = Syncer::new(&dir);
        for _ in 0..20 {
            syncer.ask().unwrap();
        }
        syncer.finish().unwrap();
        // A state that is gone cannot be synced: the failure comes back.
        let mut syncer = Syncer::new(&dir);
        std::fs::remove_file(dir.state_path()).unwrap();
        let asked = syncer.ask();
        let finished = syncer.finish();
        assert!(
            asked.is_err() || finished.is_err(),
            "the failed sync is reported"
        );
    }
}
