//! Budgets across processes (DESIGN §12): several runners may share a project or global
//! budget. Each check-and-reserve and each bill happens under one `flock` on
//! `ledger/budget.lock`; under it a runner reads what the others spent since it last looked
//! (new lines of this month's ledger) and what the live ones hold (`ledger/reserved/<id>`,
//! one file per runner with its pid and project). A runner that died leaves its file behind,
//! but a dead pid's reservation counts for nothing and the file is removed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ledger::LedgerEntry;

/// What one runner holds right now, as the others read it.
#[derive(Debug, Serialize, Deserialize)]
struct Reservation {
    reserved: f64,
    pid: u32,
    #[serde(default)]
    project: String,
}

/// Spent or held by the other runners, per scope that others can share.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Others {
    /// In this project.
    pub project: f64,
    /// Anywhere.
    pub global: f64,
}

/// Where this runner has read the ledger up to.
#[derive(Debug, Clone, Default)]
pub(super) struct Cursor {
    month: String,
    offset: u64,
}

/// The shared files of one runner.
#[derive(Debug)]
pub(super) struct Shared {
    lock_path: PathBuf,
    reserved_dir: PathBuf,
    own_file: PathBuf,
    ledger_dir: PathBuf,
    execution: String,
    project: String,
}

/// The budget lock, held until dropped.
pub(super) struct BudgetLock {
    _file: Option<File>,
}

impl Shared {
    /// The shared files under the ledger folder `ledger_dir`, for `execution` in `project`.
    pub fn new(ledger_dir: &Path, execution: &str, project: &str) -> Self {
        let reserved_dir = ledger_dir.join("reserved");
        Self {
            lock_path: ledger_dir.join("budget.lock"),
            own_file: reserved_dir.join(execution),
            reserved_dir,
            ledger_dir: ledger_dir.to_path_buf(),
            execution: execution.to_owned(),
            project: project.to_owned(),
        }
    }

    /// Waits for the budget lock. Without a writable ledger folder there is nothing to share
    /// and the lock is a no-op.
    pub fn lock(&self) -> BudgetLock {
        let _ = std::fs::create_dir_all(&self.ledger_dir);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .ok()
            .filter(|f| f.lock().is_ok());
        BudgetLock { _file: file }
    }

    /// A cursor at the current end of `month`'s ledger file (call with the lock held, right
    /// after summing the ledger, so nothing falls between).
    pub fn cursor_at_end(&self, month: &str) -> Cursor {
        let offset = std::fs::metadata(self.month_file(month)).map_or(0, |m| m.len());
        Cursor {
            month: month.to_owned(),
            offset,
        }
    }

    /// Adds to `spent` what other executions billed in `month` since `cursor`, and moves the
    /// cursor. A new month starts its file from the beginning.
    pub fn catch_up(&self, cursor: &mut Cursor, month: &str, spent: &mut Others) {
        if cursor.month != month {
            *cursor = Cursor {
                month: month.to_owned(),
                offset: 0,
            };
            *spent = Others::default();
        }
        let Ok(mut file) = File::open(self.month_file(month)) else {
            return;
        };
        if file.seek(SeekFrom::Start(cursor.offset)).is_err() {
            return;
        }
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            return;
        }
        // Appends are whole lines; a line still being written is read next time.
        let complete = text.rfind('\n').map_or(0, |n| n + 1);
        for line in text[..complete].lines() {
            let Ok(e) = serde_json::from_str::<LedgerEntry>(line) else {
                continue;
            };
            if e.execution == self.execution {
                continue; // this runner counts its own calls as it bills them
            }
            let usd = e.budget_usd();
            spent.global += usd;
            if e.project == self.project {
                spent.project += usd;
            }
        }
        cursor.offset += complete as u64;
    }

    /// What the other live runners hold; the files of dead ones are removed.
    pub fn others_reserved(&self) -> Others {
        let mut held = Others::default();
        let Ok(entries) = std::fs::read_dir(&self.reserved_dir) else {
            return held;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path == self.own_file || path.extension().is_some_and(|e| e == "tmp") {
                continue;
            }
            let Some(r) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<Reservation>(&t).ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{}", r.pid)).exists() {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            held.global += r.reserved;
            if r.project == self.project {
                held.project += r.reserved;
            }
        }
        held
    }

    /// Publishes what this runner holds (call with the lock held, before releasing it).
    pub fn publish(&self, reserved: f64) {
        let text = serde_json::to_string(&Reservation {
            reserved,
            pid: std::process::id(),
            project: self.project.clone(),
        })
        .unwrap_or_default();
        let tmp = self.own_file.with_extension("tmp");
        let _ = std::fs::create_dir_all(&self.reserved_dir);
        // No fsync: the file dies with the run, and a crash leaves a dead pid behind.
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.own_file);
        }
    }

    /// Removes this runner's reservation file.
    pub fn withdraw(&self) {
        let _ = std::fs::remove_file(&self.own_file);
    }

    fn month_file(&self, month: &str) -> PathBuf {
        self.ledger_dir.join(format!("{month}.ndjson"))
    }
}
