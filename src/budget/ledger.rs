//! The cost ledger (DESIGN §7): `~/.autowrkers/ledger/YYYY-MM.ndjson`, one whole line per billed
//! call, appended with a single `O_APPEND` write so several runners can share it.
//!
//! Sums come from the index (a `store::KvTree`), which folds in whatever the ledger files gained since it last
//! looked (it stores how many bytes of each file it has read). Writers never touch the index;
//! a missing index is rebuilt from the files; when another process holds the index, the files
//! are summed directly. The ledger is the truth, the index a cache.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::spec::TokenUsage;
use crate::store::{Home, KvTree, StoreError, append_line};

/// One billed call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// When (RFC 3339, UTC); its month decides the budget period.
    pub ts: String,
    /// Execution id.
    pub execution: String,
    /// Project path.
    pub project: String,
    /// Phase id.
    pub phase: String,
    /// Iteration.
    pub iteration: u32,
    /// Provider type.
    pub provider: String,
    /// Model requested.
    pub model: String,
    /// Model that served it, when reported.
    #[serde(default)]
    pub model_served: Option<String>,
    /// Tokens by kind.
    pub tokens: TokenUsage,
    /// USD billed; None when unknown.
    pub usd: Option<f64>,
    /// The price table's figure, kept beside a provider-reported cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_usd: Option<f64>,
    /// `provider` (the provider reported its cost), `table`, `estimated` (the provider's own
    /// guess), `local` or `unknown`.
    pub price_source: String,
    /// For a call of unknown cost that was reserved: the worst case budgets count as spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_case_usd: Option<f64>,
}

impl LedgerEntry {
    /// What this call counts for against a budget: its cost, or when unknown its worst case.
    pub fn budget_usd(&self) -> f64 {
        self.usd.or(self.worst_case_usd).unwrap_or(0.0)
    }
}

/// Money and tokens summed over some calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sum {
    /// USD of the priced calls.
    pub usd: f64,
    /// Calls.
    pub calls: u64,
    /// Calls whose cost is unknown.
    pub unknown: u64,
    /// Tokens.
    pub tokens: TokenUsage,
    /// The worst cases of reserved calls whose cost is unknown: budgets count them as spent.
    #[serde(default)]
    pub unknown_worst_case: f64,
}

impl Sum {
    /// What counts against a budget: the known cost plus the worst cases of unknown ones.
    pub fn budget_usd(&self) -> f64 {
        self.usd + self.unknown_worst_case
    }

    /// Adds another sum to this one.
    pub fn merge(&mut self, other: &Sum) {
        self.usd += other.usd;
        self.calls += other.calls;
        self.unknown += other.unknown;
        self.unknown_worst_case += other.unknown_worst_case;
        self.tokens.add(&other.tokens);
    }

    fn add(&mut self, e: &LedgerEntry) {
        self.calls += 1;
        match e.usd {
            Some(usd) => self.usd += usd,
            None => {
                self.unknown += 1;
                self.unknown_worst_case += e.worst_case_usd.unwrap_or(0.0);
            }
        }
        self.tokens.add(&e.tokens);
    }
}

/// The aggregates `budget status` and `budget history` read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// By key: `g:<YYYY-MM>` (global month), `p:<YYYY-MM>:<project>`, `e:<execution>`,
    /// `d:<YYYY-MM-DD>:<provider>:<model>`.
    pub sums: BTreeMap<String, Sum>,
}

impl Totals {
    /// The sum under `key` (zero when absent).
    pub fn get(&self, key: &str) -> Sum {
        self.sums.get(key).copied().unwrap_or_default()
    }
    fn fold(&mut self, e: &LedgerEntry) {
        for key in keys_of(e) {
            self.sums.entry(key).or_default().add(e);
        }
    }
}

/// Key of the global sum of a month (`YYYY-MM`).
pub fn global_key(month: &str) -> String {
    format!("g:{month}")
}
/// Key of a project's sum of a month.
pub fn project_key(month: &str, project: &str) -> String {
    format!("p:{month}:{project}")
}
/// Key of an execution's sum.
pub fn execution_key(id: &str) -> String {
    format!("e:{id}")
}

fn keys_of(e: &LedgerEntry) -> [String; 4] {
    let month = e.ts.get(..7).unwrap_or("0000-00");
    let day = e.ts.get(..10).unwrap_or("0000-00-00");
    [
        global_key(month),
        project_key(month, &e.project),
        execution_key(&e.execution),
        format!("d:{day}:{}:{}", e.provider, e.model),
    ]
}

/// The ledger of one user.
pub struct Ledger {
    dir: PathBuf,
    index: PathBuf,
}

impl Ledger {
    /// The ledger under `home`.
    pub fn new(home: &Home) -> Self {
        Self {
            dir: home.root().join("ledger"),
            index: home.index().join("ledger"),
        }
    }

    /// Appends one entry to the file of its month.
    pub fn append(&self, entry: &LedgerEntry) -> std::io::Result<()> {
        let month = entry.ts.get(..7).unwrap_or("0000-00");
        let line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        append_line(&self.dir.join(format!("{month}.ndjson")), &line)
    }

    fn files(&self) -> Vec<(String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
            .filter_map(|p| Some((p.file_stem()?.to_string_lossy().into_owned(), p)))
            .collect();
        files.sort();
        files
    }

    /// Every sum, from the ledger's own index brought up to date (or from the files when the
    /// index is busy). The runner's budget guard reads it there: runners never open the main
    /// index.
    pub fn totals(&self) -> Totals {
        KvTree::open(&self.index, "ledger")
            .and_then(|tree| self.totals_indexed(&tree))
            .unwrap_or_else(|_| self.scan())
    }

    /// Every sum, kept in `sums` (a tree of an index the caller has open already) and brought
    /// up to date; from the files when it cannot be read.
    pub fn totals_in(&self, sums: &KvTree) -> Totals {
        self.totals_indexed(sums).unwrap_or_else(|_| self.scan())
    }

    /// Sums every file from the start, without the index.
    pub fn scan(&self) -> Totals {
        let mut totals = Totals::default();
        for (_, path) in self.files() {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text.lines() {
                if let Ok(e) = serde_json::from_str::<LedgerEntry>(line) {
                    totals.fold(&e);
                }
            }
        }
        totals
    }

    fn totals_indexed(&self, sums: &KvTree) -> Result<Totals, StoreError> {
        // Offsets and sums share one tree so one batch moves both: a crash never counts twice.
        for (name, path) in self.files() {
            let offset_key = format!("off:{name}");
            let seen = sums
                .get(&offset_key)?
                .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
                .unwrap_or(0);
            let Ok(mut file) = std::fs::File::open(&path) else {
                continue;
            };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len <= seen {
                continue;
            }
            let mut tail = Vec::new();
            if file.seek(SeekFrom::Start(seen)).is_err() || file.read_to_end(&mut tail).is_err() {
                continue;
            }
            // Only whole lines: a line being appended right now is read next time.
            let whole = tail.iter().rposition(|b| *b == b'\n').map_or(0, |n| n + 1);
            let mut delta = Totals::default();
            for line in String::from_utf8_lossy(&tail[..whole]).lines() {
                if let Ok(e) = serde_json::from_str::<LedgerEntry>(line) {
                    delta.fold(&e);
                }
            }
            let mut batch = Vec::new();
            for (key, add) in delta.sums {
                let mut sum: Sum = sums
                    .get(&key)?
                    .and_then(|v| serde_json::from_slice(&v).ok())
                    .unwrap_or_default();
                sum.merge(&add);
                batch.push((key, serde_json::to_vec(&sum).unwrap_or_default()));
            }
            batch.push((offset_key, (seen + whole as u64).to_be_bytes().to_vec()));
            sums.put_all(batch)?;
        }
        sums.flush()?;
        let mut totals = Totals::default();
        for (k, v) in sums.entries("")? {
            if k.starts_with("off:") {
                continue;
            }
            if let Ok(sum) = serde_json::from_slice(&v) {
                totals.sums.insert(k, sum);
            }
        }
        Ok(totals)
    }
}
