//! The sled index: a cache of execution summaries that answers `workflow list`, id lookups and
//! `budget status` without opening every execution's files.
//!
//! It is never the only copy of anything (DESIGN §2): every entry is derived from an
//! execution's files and carries a stamp of them, so a reader can tell a stale entry and
//! repair it (see `catalog`); a missing or damaged index is rebuilt from the known projects.
//!
//! Keys: `time:<created_at>\0<id>` → the summary (JSON), so the newest executions come first
//! in one pass without reading the rest; `exec:<id>` → its `time:` key, for lookups by id; `proj:<project>` → the stamp of the
//! project's `executions/` folder when the index last matched it; `live:<id>` → its `time:`
//! key, for the executions `budget status` lists.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::StoreError;

/// What `workflow list`, lookups and `budget status` need of an execution, without its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSummary {
    /// The id.
    pub id: String,
    /// The execution folder.
    pub dir: String,
    /// The project.
    pub project: String,
    /// Status as written in state.json.
    pub status: String,
    /// The task.
    pub task: String,
    /// Template name.
    pub template: String,
    /// Creation time (RFC 3339), for sorting.
    pub created_at: String,
    /// USD so far.
    pub cost_usd: f64,
    /// The execution's own budget, when it has one.
    #[serde(default)]
    pub budget_limit: Option<f64>,
    /// The stamp of `execution.yaml` and `state.json` this summary was read from; another
    /// stamp on disk means the files changed since.
    #[serde(default)]
    pub stamp: String,
}

impl ExecutionSummary {
    /// True for an execution `budget status` shows: one not ended, or one with a budget of its
    /// own. The index keeps these apart (`live:<id>`), so the others are never read for it.
    pub fn is_live(&self) -> bool {
        let ended = crate::spec::WorkflowStatus::ALL
            .iter()
            .any(|s| s.as_str() == self.status && s.is_terminal());
        self.status != super::DAMAGED && (self.budget_limit.is_some() || !ended)
    }
}

/// Handle on the sled database under `~/.autowrkers/index/main`. sled allows one process at a
/// time, so commands open it briefly and drop it as soon as they are done.
pub struct Index {
    db: sled::Db,
    /// Whether this handle changed the database: its end must then reach the disk.
    wrote: AtomicBool,
}

/// The layout of the keys below; another value means another layout, rebuilt.
const FORMAT: &str = "4";
const FORMAT_KEY: &str = "meta:format";

/// How long an open waits for another process to let go of the index.
const BUSY_WAIT: Duration = Duration::from_secs(2);

impl Index {
    /// Tree `name` of this index's database, for a cache another module keeps beside the
    /// summaries (the ledger's sums, for `budget status`), so a command needs one open.
    pub fn tree(&self, name: &str) -> Result<KvTree, StoreError> {
        // The tree may be written through: its changes must reach the disk too.
        self.mark_written();
        Ok(KvTree {
            tree: self.db.open_tree(name)?,
            db: self.db.clone(),
        })
    }

    /// Opens the main index of `home` (`index/main`; the ledger sums live in `index/ledger`),
    /// waiting a moment when another process has it open, and starting afresh when the files
    /// are damaged (the index is rebuilt from the executions' files).
    pub fn open_in(home: &super::Home) -> Result<Self, StoreError> {
        let dir = home.index().join("main");
        let started = std::time::Instant::now();
        loop {
            match open_db(&dir) {
                Ok(db) => return Self::new(db).current(),
                Err(e) if is_busy(&e) && started.elapsed() < BUSY_WAIT => {
                    std::thread::sleep(Duration::from_millis(3));
                }
                Err(e) if is_busy(&e) => return Err(e.into()),
                Err(_) => {
                    // A damaged cache: the files are the truth, so start an empty one.
                    let _ = std::fs::remove_dir_all(&dir);
                    return Self::new(open_db(&dir)?).current();
                }
            }
        }
    }

    fn new(db: sled::Db) -> Self {
        Self {
            db,
            wrote: AtomicBool::new(false),
        }
    }

    /// Notes that this handle changed the database.
    fn mark_written(&self) {
        self.wrote.store(true, Ordering::Relaxed);
    }

    /// Lets go of the index at the end of a command that does not open it again before it
    /// exits. sled's drop appends a record to its log and syncs the file, and with it the zeros
    /// its open wrote over every free segment: 1.2–1.8 ms of a `workflow list` on ext4. A handle
    /// that changed nothing needs none of that — the open left the log consistent, and the
    /// exit closes the file and lets go of its lock — so it is not dropped; one that wrote is,
    /// and its changes reach the disk as always.
    pub fn leave(self) {
        if self.wrote.load(Ordering::Relaxed) {
            drop(self);
        } else {
            std::mem::forget(self);
        }
    }

    /// The index, emptied first when an older version of the program wrote it in another
    /// layout: it is rebuilt from the files as commands need it.
    fn current(self) -> Result<Self, StoreError> {
        if self.db.get(FORMAT_KEY)?.as_deref() != Some(FORMAT.as_bytes()) {
            self.mark_written();
            self.db.clear()?;
            self.db.insert(FORMAT_KEY, FORMAT.as_bytes())?;
        }
        Ok(self)
    }

    /// The same entries in a freshly written database that takes this one's place: after a
    /// rebuild, sled's log holds mostly garbage, which it zeroes and syncs at every open.
    /// Another process that opened the old files meanwhile keeps them until it exits. On any
    /// failure the index stays as it was.
    pub fn compacted(self, home: &super::Home) -> Result<Self, StoreError> {
        let dir = home.index().join("main");
        let fresh_dir = home.index().join("main.compacting");
        let old_dir = home.index().join("main.old");
        let _ = std::fs::remove_dir_all(&fresh_dir);
        let copied = open_db(&fresh_dir).and_then(|fresh| {
            // sled's import panics on an I/O error instead of returning it.
            let export = self.db.export();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fresh.import(export)))
                .map_err(|_| sled::Error::Unsupported("index import failed".into()))?;
            fresh.flush()?;
            Ok(())
        });
        if copied.is_err() {
            let _ = std::fs::remove_dir_all(&fresh_dir);
            return Ok(self);
        }
        drop(self);
        let _ = std::fs::remove_dir_all(&old_dir);
        if std::fs::rename(&dir, &old_dir).is_ok() {
            if std::fs::rename(&fresh_dir, &dir).is_err() {
                let _ = std::fs::rename(&old_dir, &dir);
            }
            let _ = std::fs::remove_dir_all(&old_dir);
        }
        let _ = std::fs::remove_dir_all(&fresh_dir);
        Self::open_in(home)
    }

    /// Records or replaces summaries, all at once.
    pub fn put_all(&self, summaries: &[ExecutionSummary]) -> Result<(), StoreError> {
        if summaries.is_empty() {
            return Ok(());
        }
        self.mark_written();
        let mut batch = sled::Batch::default();
        for summary in summaries {
            let key = time_key(&summary.created_at, &summary.id);
            if let Some(old) = self.db.get(exec_key(&summary.id))?
                && old.as_ref() != key.as_slice()
            {
                batch.remove(old);
            }
            batch.insert(exec_key(&summary.id).into_bytes(), key.clone());
            if summary.is_live() {
                batch.insert(live_key(&summary.id).into_bytes(), key.clone());
            } else {
                batch.remove(live_key(&summary.id).into_bytes());
            }
            batch.insert(key, encode(summary)?);
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Records or replaces one summary.
    pub fn put(&self, summary: &ExecutionSummary) -> Result<(), StoreError> {
        self.put_all(std::slice::from_ref(summary))
    }

    /// Forgets an execution.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.mark_written();
        if let Some(key) = self.db.remove(exec_key(id))? {
            self.db.remove(key)?;
        }
        self.db.remove(live_key(id))?;
        Ok(())
    }

    /// The summaries that are [`ExecutionSummary::is_live`], without reading the others.
    pub fn live(&self) -> Vec<ExecutionSummary> {
        self.behind("live:")
    }

    /// The summaries that keys starting with `prefix` point at (their values are `time:` keys).
    fn behind(&self, prefix: &str) -> Vec<ExecutionSummary> {
        self.db
            .scan_prefix(prefix)
            .filter_map(Result::ok)
            .filter_map(|(_, key)| self.db.get(key).ok()?)
            .filter_map(|v| serde_json::from_slice(&v).ok())
            .collect()
    }

    /// True when the index has an entry for `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.db.contains_key(exec_key(id)).unwrap_or(false)
    }

    /// The summary of `id`.
    pub fn get(&self, id: &str) -> Option<ExecutionSummary> {
        let key = self.db.get(exec_key(id)).ok()??;
        let value = self.db.get(key).ok()??;
        serde_json::from_slice(&value).ok()
    }

    /// The summaries whose id starts with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> Vec<ExecutionSummary> {
        self.behind(&exec_key(prefix))
    }

    /// Every summary, newest first, read lazily in one pass over the index: a caller that
    /// needs fifty reads fifty.
    pub fn newest_first(&self) -> impl Iterator<Item = ExecutionSummary> + '_ {
        self.db
            .scan_prefix("time:")
            .rev()
            .filter_map(Result::ok)
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
    }

    /// The stamp of a project's `executions/` folder when the index last matched it.
    pub fn project_stamp(&self, project: &Path) -> Option<String> {
        let value = self.db.get(project_key(project)).ok()??;
        Some(String::from_utf8_lossy(&value).into_owned())
    }

    /// Records that the index matches a project's folder as it is at `stamp`.
    pub fn set_project_stamp(&self, project: &Path, stamp: &str) -> Result<(), StoreError> {
        self.mark_written();
        self.db.insert(project_key(project), stamp.as_bytes())?;
        Ok(())
    }

    /// Stores raw bytes under `key` (model lists and other caches).
    pub fn put_raw(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.mark_written();
        self.db.insert(key, value)?;
        Ok(())
    }

    /// Raw bytes under `key`.
    pub fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        self.db.get(key).ok().flatten().map(|v| v.to_vec())
    }
}

/// sled without its background flusher thread: commands hold the index for milliseconds, and
/// dropping the handle writes everything out.
fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    sled::Config::new().path(dir).flush_every_ms(None).open()
}

/// True when sled could not open because another process holds its lock.
fn is_busy(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn encode(summary: &ExecutionSummary) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(summary).map_err(|source| StoreError::Json {
        path: "<index>".into(),
        source,
    })
}

fn live_key(id: &str) -> String {
    format!("live:{id}")
}

fn exec_key(id: &str) -> String {
    format!("exec:{id}")
}

fn time_key(created_at: &str, id: &str) -> Vec<u8> {
    format!("time:{created_at}\0{id}").into_bytes()
}

fn project_key(project: &Path) -> String {
    format!("proj:{}", project.display())
}

/// A named tree of a sled database, for caches other modules keep (the ledger's sums): string
/// keys, byte values, and a batch of puts that lands as one. sled stays behind this module.
pub struct KvTree {
    db: sled::Db,
    tree: sled::Tree,
}

impl KvTree {
    /// Opens (or creates) tree `name` of the database in `dir`.
    pub fn open(dir: &Path, name: &str) -> Result<Self, StoreError> {
        let db = open_db(dir)?;
        let tree = db.open_tree(name)?;
        Ok(Self { db, tree })
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    /// Writes every entry at once: after a crash, all of them or none.
    pub fn put_all(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in entries {
            batch.insert(key.as_bytes(), value);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn entries(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    /// Makes what was written durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: &str, created_at: &str) -> ExecutionSummary {
        ExecutionSummary {
            id: id.into(),
            dir: format!("/p/.autowrkers/executions/{id}"),
            project: "/p".into(),
            status: "completed".into(),
            task: "t".into(),
            template: "default".into(),
            created_at: created_at.into(),
            cost_usd: 0.0,
            budget_limit: None,
            stamp: String::new(),
        }
    }

    #[test]
    fn newest_first_orders_by_time_then_id() {
        let tmp = tempfile::tempdir().unwrap();
        let index = Index::open_in(&super::super::Home::at(tmp.path())).unwrap();
        let all = [
            summary("b", "2026-01-01T00:00:00.000Z"),
            summary("a", "2026-01-01T00:00:00.000Z"),
            summary("c", "2026-01-01T00:00:00.500Z"),
            summary("d", "2026-01-02T00:00:00.000Z"),
            summary("e", "2025-12-31T23:59:59.999Z"),
        ];
        index.put_all(&all).unwrap();
        // Moved in time: its old key goes.
        index
            .put(&summary("e", "2026-01-03T00:00:00.000Z"))
            .unwrap();
        let ids: Vec<String> = index.newest_first().map(|s| s.id).collect();
        assert_eq!(ids, ["e", "d", "c", "b", "a"]);
        assert_eq!(
            index.with_prefix("c")[0].created_at,
            "2026-01-01T00:00:00.500Z"
        );
    }

    #[test]
    fn a_handle_that_wrote_is_closed_when_it_leaves_and_one_that_read_is_not_marked() {
        let tmp = tempfile::tempdir().unwrap();
        let home = super::super::Home::at(tmp.path());
        let index = Index::open_in(&home).unwrap();
        index
            .put(&summary("a", "2026-01-01T00:00:00.000Z"))
            .unwrap();
        index.leave();
        // Closed, not kept: the lock is free at once, and the write is on disk.
        let again = Index::open_in(&home).unwrap();
        assert_eq!(again.get("a").map(|s| s.id).as_deref(), Some("a"));
        // Reads, and an empty batch (what a command with nothing noted applies), write nothing.
        again.put_all(&[]).unwrap();
        let _ = again.newest_first().count();
        let _ = again.contains("b");
        assert!(!again.wrote.load(Ordering::Relaxed));
        again.put_raw("k", b"v").unwrap();
        assert!(again.wrote.load(Ordering::Relaxed));
    }
}
