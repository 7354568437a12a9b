//! The runner's writes of `state.json`, made by a thread of their own in the order they were
//! asked for, so that the runner does not wait on the disk: a write's own work overlaps what
//! the runner does next (the next step's prompts, its sandbox, its worktree reset), and a state
//! transition's sync (two flushes: the file, then its folder) overlaps the next step itself,
//! made by the sync thread ([`super::syncer`]) while this one writes on. The first sync also
//! syncs what creating the execution left unsynced (`execution.yaml`).
//! The phase commits on the execution's ref are handed on to the commit thread
//! ([`crate::git::Committer`]) once the state they record is written.
//!
//! Order is what keeps a kill at any instant harmless: each write is an atomic replace (a new
//! file renamed over the old one), a state asked for later never lands before an earlier one, and a
//! state is on disk before the commit that records it. Of several states queued in a row only
//! the newest is written (synced if any of them asked to be): the ones it replaces would be
//! overwritten at once. A kill loses at most the writes still queued, and the runner lets no
//! record of work done stay queued across a model call: it waits until those are in place
//! ([`Recorder::flush_work`]) before a phase calls a model or starts a command, so a phase
//! that completed is never called again; their sync, and the states queued after them, go on
//! during the call. It waits for every state ([`Recorder::flush`]) where someone else may look
//! next: a status change that ends, pauses or interrupts the pass (a follower reads the state
//! when its event arrives), a commit of the whole folder; and the end of the pass also waits
//! for every sync.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::EngineError;
use super::syncer::Syncer;
use crate::git::{CommitJob, Committer};
use crate::spec::WorkflowExecution;
use crate::store::{ExecutionDir, StateEncoder, StoreError};

/// One write for the thread.
#[derive(Debug)]
enum Job {
    /// `state.json`'s new bytes and their number (1, 2, … in the order asked); `durable`
    /// (work done) owes a sync once they are in place.
    State {
        bytes: Vec<u8>,
        durable: bool,
        number: u64,
    },
    /// History files (`(iteration, bytes)`), written durably before the state naming them.
    History(Vec<(u32, Vec<u8>)>),
    /// A phase's commit on the execution's ref.
    Commit(CommitJob),
}

type Worker = (Sender<Job>, JoinHandle<Result<(), EngineError>>);

/// How far the thread has got, for [`Recorder::flush`]: the number of the newest state in
/// place, and whether the thread has stopped (at its end or at a failure).
#[derive(Debug, Default)]
struct Progress {
    placed: u64,
    stopped: bool,
}

/// [`Progress`], shared with the thread, and the signal of its every change.
#[derive(Debug, Default)]
struct Shared {
    progress: Mutex<Progress>,
    moved: Condvar,
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.progress.lock().unwrap_or_else(PoisonError::into_inner));
        self.moved.notify_all();
    }

    /// Waits until state `number` is in place (true) or the thread has stopped short of it.
    fn wait_for(&self, number: u64) -> bool {
        let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if progress.placed >= number {
                return true;
            }
            if progress.stopped {
                return false;
            }
            progress = self
                .moved
                .wait(progress)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Marks the thread stopped when it ends, however it ends: no flush waits for it then.
struct StopOnDrop<'a>(&'a Shared);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.update(|p| p.stopped = true);
    }
}

/// The state thread of one reconcile pass: started at the first write, stopped by
/// [`Recorder::finish`] (or when dropped) after the writes and commits queued before.
#[derive(Debug)]
pub struct Recorder {
    dir: ExecutionDir,
    worker: Mutex<Option<Worker>>,
    /// The number of the newest state asked for (given out under `worker`'s lock).
    asked: AtomicU64,
    /// The number of the newest state asked for `durable`: one that records work done.
    asked_durable: AtomicU64,
    shared: Arc<Shared>,
}

impl Recorder {
    /// A recorder for the execution in `dir`, with no thread yet.
    pub fn new(dir: &ExecutionDir) -> Self {
        Self {
            dir: dir.clone(),
            worker: Mutex::new(None),
            asked: AtomicU64::new(0),
            asked_durable: AtomicU64::new(0),
            shared: Arc::default(),
        }
    }

    /// Encodes `state` with `encoder` and queues its write, `durable` or not, after the
    /// history files that changed; returns the bytes of `state.json` (for the commit that
    /// records them).
    pub fn write(
        &self,
        encoder: &mut StateEncoder,
        state: &mut WorkflowExecution,
        durable: bool,
    ) -> Result<Vec<u8>, EngineError> {
        let encoded = encoder.encode(state).map_err(|source| StoreError::Json {
            path: self.dir.state_path(),
            source,
        })?;
        if !encoded.history.is_empty() {
            self.send(Job::History(encoded.history))?;
        }
        self.state(encoded.state.clone(), durable)?;
        Ok(encoded.state)
    }

    /// Queues `bytes` as the next `state.json`; synced to the disk when `durable`.
    fn state(&self, bytes: Vec<u8>, durable: bool) -> Result<(), EngineError> {
        self.send(Job::State {
            bytes,
            durable,
            number: 0,
        })
    }

    /// Queues a commit on the execution's ref: made by the commit thread once the states
    /// queued before it are written.
    pub fn commit(&self, job: CommitJob) -> Result<(), EngineError> {
        self.send(Job::Commit(job))
    }

    /// Waits until every state queued so far is in place — what a reader or a kill finds from
    /// then on — without waiting for its sync or for the commits; the first failure, if any
    /// (the thread stops at it, and nothing queued after it is written).
    pub fn flush(&self) -> Result<(), EngineError> {
        self.wait_until_placed(self.asked.load(Ordering::SeqCst))
    }

    /// Waits until every state queued `durable` so far — each records work done — is in
    /// place, and no longer: the states queued after it (a phase just started) and the sync
    /// the thread makes next may still be on their way. What a phase waits for before it
    /// spends money.
    pub fn flush_work(&self) -> Result<(), EngineError> {
        self.wait_until_placed(self.asked_durable.load(Ordering::SeqCst))
    }

    fn wait_until_placed(&self, asked: u64) -> Result<(), EngineError> {
        let running = self.lock().is_some();
        if !running || self.shared.wait_for(asked) {
            return Ok(());
        }
        // The thread stopped at a failure: that failure is the answer.
        self.finish()
    }

    /// Waits until everything queued is written, synced and committed and stops the threads;
    /// the first failure, if any. A later write starts a new thread.
    pub fn finish(&self) -> Result<(), EngineError> {
        let Some((jobs, handle)) = self.lock().take() else {
            return Ok(());
        };
        drop(jobs);
        handle.join().unwrap_or(Err(EngineError::RecordThread))
    }

    /// Hands `job` to the thread (started if need be), a state with its number. Where no
    /// thread can be started, writes here and now.
    fn send(&self, mut job: Job) -> Result<(), EngineError> {
        let mut worker = self.lock();
        if let Job::State {
            number, durable, ..
        } = &mut job
        {
            *number = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
            if *durable {
                self.asked_durable.store(*number, Ordering::SeqCst);
            }
        }
        if worker.is_none() {
            let (tx, rx) = channel::<Job>();
            let dir = self.dir.clone();
            let shared = Arc::clone(&self.shared);
            shared.update(|p| p.stopped = false);
            let spawned = std::thread::Builder::new()
                .name("autowrkers-record".into())
                .spawn(move || work(&rx, &dir, &shared));
            match spawned {
                Ok(handle) => *worker = Some((tx, handle)),
                Err(_) => return run_here(job, &self.dir, &self.shared),
            }
        }
        let Some((tx, _)) = worker.as_ref() else {
            return run_here(job, &self.dir, &self.shared);
        };
        if tx.send(job).is_ok() {
            return Ok(());
        }
        drop(worker);
        self.finish()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Worker>> {
        self.worker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Recorder {
    /// No record thread outlives its pass: what was queued is written first (a commit that
    /// fails here is found missing, and made, by the next reconcile).
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The thread: each job in turn, a run of queued states written once as the newest of them;
/// then the commits it handed on, waited for.
fn work(jobs: &Receiver<Job>, dir: &ExecutionDir, shared: &Shared) -> Result<(), EngineError> {
    let _stop = StopOnDrop(shared);
    let committer = Committer::new();
    let mut syncer = Syncer::new(dir);
    let written = write_states(jobs, dir, shared, &committer, &mut syncer);
    let synced = syncer.finish();
    let committed = committer.finish();
    written?;
    synced?;
    Ok(committed?)
}

fn write_states(
    jobs: &Receiver<Job>,
    dir: &ExecutionDir,
    shared: &Shared,
    committer: &Committer,
    syncer: &mut Syncer,
) -> Result<(), EngineError> {
    // A crash test counts the state writes a run makes: each is an instant it stops at.
    let merge = !crate::store::crash_points_armed();
    let mut next = jobs.recv().ok();
    while let Some(job) = next.take() {
        match job {
            Job::State {
                mut bytes,
                mut durable,
                mut number,
            } => {
                while merge && next.is_none() {
                    match jobs.try_recv() {
                        Ok(Job::State {
                            bytes: newer,
                            durable: sync,
                            number: newer_number,
                        }) => {
                            bytes = newer;
                            durable |= sync;
                            number = newer_number;
                        }
                        Ok(other) => next = Some(other),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                place_state(dir, shared, &bytes, number)?;
                if durable {
                    syncer.ask()?;
                }
            }
            Job::History(files) => dir.write_history(&files)?,
            Job::Commit(commit) => committer.commit(commit)?,
        }
        if next.is_none() {
            next = jobs.recv().ok();
        }
    }
    Ok(())
}

/// Writes state `number` and lets the flushes waiting for it go.
fn place_state(
    dir: &ExecutionDir,
    shared: &Shared,
    bytes: &[u8],
    number: u64,
) -> Result<(), EngineError> {
    let replaced = dir.record_state_text(bytes)?;
    shared.update(|p| p.placed = p.placed.max(number));
    // Freed once the runner waiting for this state is on its way.
    replaced.remove();
    Ok(())
}

/// A job done in the caller's thread, where no thread could be started.
fn run_here(job: Job, dir: &ExecutionDir, shared: &Shared) -> Result<(), EngineError> {
    match job {
        Job::State {
            bytes,
            durable,
            number,
        } => {
            place_state(dir, shared, &bytes, number)?;
            if durable {
                dir.sync_state(true)?;
            }
        }
        Job::History(files) => dir.write_history(&files)?,
        Job::Commit(commit) => commit.run()?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::test_support::{job as commit, messages, repo};

    fn recorder(project: &std::path::Path, id: &str) -> (Recorder, ExecutionDir) {
        let dir = ExecutionDir::new(project.join(".autowrkers/executions").join(id));
        std::fs::create_dir_all(dir.root()).unwrap();
        (Recorder::new(&dir), dir)
    }

    #[test]
    fn queued_states_and_commits_land_in_order() {
        let dir = repo();
        let (recorder, exec) = recorder(dir.path(), "e1");
        for (n, m) in ["one", "two", "three"].iter().enumerate() {
            recorder
                .state(format!("{{\"n\":{n}}}").into_bytes(), n == 1)
                .unwrap();
            recorder.commit(commit(dir.path(), "e1", m)).unwrap();
        }
        recorder.state(b"{\"n\":9}".to_vec(), false).unwrap();
        recorder.flush().unwrap();
        assert_eq!(std::fs::read(exec.state_path()).unwrap(), b"{\"n\":9}");
        recorder.finish().unwrap();
        assert_eq!(messages(dir.path(), "e1"), ["three", "two", "one"]);
    }

    #[test]
    fn the_newest_of_states_queued_in_a_row_is_on_disk_after_a_flush() {
        let dir = repo();
        let (recorder, exec) = recorder(dir.path(), "e4");
        for n in 0..200 {
            recorder
                .state(format!("{{\"n\":{n}}}").into_bytes(), n % 7 == 0)
                .unwrap();
        }
        recorder.flush().unwrap();
        assert_eq!(std::fs::read(exec.state_path()).unwrap(), b"{\"n\":199}");
        // The thread goes on after a flush.
        recorder.state(b"{\"n\":200}".to_vec(), true).unwrap();
        drop(recorder);
        assert_eq!(std::fs::read(exec.state_path()).unwrap(), b"{\"n\":200}");
    }

    #[test]
    fn a_flush_for_work_done_returns_once_the_newest_record_of_work_is_in_place() {
        let dir = repo();
        let (recorder, exec) = recorder(dir.path(), "e6");
        // Nothing recorded yet: nothing to wait for.
        recorder.state(b"{\"n\":0}".to_vec(), false).unwrap();
        recorder.flush_work().unwrap();
        recorder.state(b"{\"n\":1}".to_vec(), true).unwrap();
        recorder.state(b"{\"n\":2}".to_vec(), false).unwrap();
        recorder.flush_work().unwrap();
        // The phase's end, or the start after it (written together when queued in a row).
        let now = std::fs::read(exec.state_path()).unwrap();
        assert!(
            now == b"{\"n\":1}" || now == b"{\"n\":2}",
            "{}",
            String::from_utf8_lossy(&now)
        );
        recorder.finish().unwrap();
        assert_eq!(std::fs::read(exec.state_path()).unwrap(), b"{\"n\":2}");
    }

    #[test]
    fn a_failed_write_is_reported_and_nothing_queued_after_it_is_written() {
        let dir = repo();
        // The execution's folder cannot be made: a file holds its place.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, "").unwrap();
        let recorder = Recorder::new(&ExecutionDir::new(blocked.join("e5")));
        recorder.state(b"{}".to_vec(), true).unwrap();
        // Queued behind the failure, or refused once the thread has stopped at it.
        let later = recorder.commit(commit(dir.path(), "e5", "after"));
        let flushed = recorder.flush();
        assert!(
            later.is_err() || flushed.is_err(),
            "the failure is reported"
        );
        let repo = git2::Repository::open(dir.path()).unwrap();
        assert!(
            repo.find_reference("refs/autowrkers/executions/e5")
                .is_err(),
            "no commit is made after a failed write"
        );
    }
}
