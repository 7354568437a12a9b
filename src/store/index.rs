//! The sled index: a cache of execution summaries for `workflow list` and id lookups.
//!
//! It is never the only copy of anything (DESIGN §2): every entry is derived from an
//! execution's files, and a missing or unreadable index is rebuilt from the known projects.

use serde::{Deserialize, Serialize};

use super::StoreError;

/// What `workflow list` shows of an execution without opening its files.
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
}

/// Handle on the sled database under `~/.autowrkers/index`.
pub struct Index {
    db: sled::Db,
}

impl Index {
    /// Opens the main index of `home` (`index/main`; the ledger sums live in `index/ledger`).
    pub fn open_in(home: &super::Home) -> Result<Self, StoreError> {
        Self::open(&home.index().join("main"))
    }

    /// Opens (or creates) the index in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        Ok(Self { db })
    }

    /// Records or replaces a summary.
    pub fn put(&self, summary: &ExecutionSummary) -> Result<(), StoreError> {
        let value = serde_json::to_vec(summary).map_err(|source| StoreError::Json {
            path: "<index>".into(),
            source,
        })?;
        self.db.insert(format!("exec:{}", summary.id), value)?;
        self.db.flush()?;
        Ok(())
    }

    /// Forgets an execution.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.db.remove(format!("exec:{id}"))?;
        self.db.flush()?;
        Ok(())
    }

    /// Every summary, newest first.
    pub fn all(&self) -> Result<Vec<ExecutionSummary>, StoreError> {
        let mut out = Vec::new();
        for entry in self.db.scan_prefix("exec:") {
            let (_, value) = entry?;
            if let Ok(summary) = serde_json::from_slice::<ExecutionSummary>(&value) {
                out.push(summary);
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(out)
    }

    /// Stores raw bytes under `key` (model lists and other caches).
    pub fn put_raw(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.db.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    /// Raw bytes under `key`.
    pub fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        self.db.get(key).ok().flatten().map(|v| v.to_vec())
    }

    /// True when the index holds nothing (new or deleted): time to rebuild.
    pub fn is_empty(&self) -> bool {
        self.db.scan_prefix("exec:").next().is_none()
    }
}

/// A named tree of a sled database, for caches other modules keep (the ledger's sums): string
/// keys, byte values, and a batch of puts that lands as one. sled stays behind this module.
pub struct KvTree {
    db: sled::Db,
    tree: sled::Tree,
}

impl KvTree {
    /// Opens (or creates) tree `name` of the database in `dir`.
    pub fn open(dir: &std::path::Path, name: &str) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
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

    /// Every entry, in key order.
    pub fn entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.tree
            .iter()
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
