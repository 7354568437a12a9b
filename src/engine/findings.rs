//! Findings with identities across iterations, and whether the review loop still converges.
//!
//! Every issue of every reviewer's `review_report` is a finding. Two findings are the same
//! problem when they concern the same file (or both none) and their descriptions share at least
//! half of their significant words (lowercased, stop words and words under three letters left
//! out, a plural `s` dropped): a reviewer that says the same thing in other words is matched. A
//! finding keeps the id (`F1`, `F2`, …) of its first appearance. Per iteration a finding is
//! new, still open (it was there in the previous iteration), reopened (seen before, gone in the
//! previous iteration, back now), and those of the previous iteration not seen again are
//! resolved.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::Serialize;

use crate::spec::{Artifact, ArtifactType, Convergence, ReviewReport, WorkflowExecution};
use crate::store::ExecutionDir;

const STOP_WORDS: &[&str] = &[
    "the", "and", "for", "that", "this", "with", "not", "are", "but", "when", "then", "from",
    "has", "have", "its", "was", "were", "any", "all", "can", "does", "should", "would", "into",
    "there", "which", "also", "still", "been", "than", "very", "more", "only", "out", "our",
];

/// The significant words of a description.
fn words(text: &str) -> BTreeSet<String> {
    text.to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() >= 3 && !STOP_WORDS.contains(w))
        .map(|w| {
            w.strip_suffix('s')
                .filter(|s| s.len() >= 3)
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

/// What a finding is matched by: its file and the significant words of its description.
type Key = (Option<String>, BTreeSet<String>);

/// True when two findings are the same problem (see the module's rule).
fn same(a: &Key, b: &Key) -> bool {
    if a.0 != b.0 {
        return false;
    }
    let common = a.1.intersection(&b.1).count();
    let smaller = a.1.len().min(b.1.len()).max(1);
    common * 2 >= smaller
}

/// One finding of one iteration.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Its identity across iterations.
    pub id: String,
    /// `critical`, `major` or `minor`.
    pub severity: String,
    /// The file, when the reviewer named one.
    pub file: Option<String>,
    /// What is wrong, in the reviewer's words of this iteration.
    pub description: String,
    /// True when it keeps the loop going (its severity reaches `blocking_severity`).
    pub blocking: bool,
}

/// The findings of one iteration, and how they moved since the previous one.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IterationFindings {
    /// The iteration.
    pub iteration: u32,
    /// Every finding reported in it.
    pub findings: Vec<Finding>,
    /// Ids seen for the first time.
    pub new: Vec<String>,
    /// Ids also reported in the previous iteration.
    pub open: Vec<String>,
    /// Ids of the previous iteration not reported again.
    pub resolved: Vec<String>,
    /// Ids seen before, absent in the previous iteration, back now.
    pub reopened: Vec<String>,
    /// Blocking ids among `resolved`.
    pub blocking_resolved: usize,
}

/// The findings of every iteration with reviews, in order, ids matched across them.
pub fn track(
    dir: &ExecutionDir,
    state: &WorkflowExecution,
    rule: &Convergence,
) -> Vec<IterationFindings> {
    // (id, key, blocking at any time)
    let mut known: Vec<(String, Key, bool)> = Vec::new();
    let mut out: Vec<IterationFindings> = Vec::new();
    let mut seen_ever: BTreeSet<String> = BTreeSet::new();
    let mut by_iteration: BTreeMap<u32, Vec<Arc<ReviewReport>>> = BTreeMap::new();
    for a in &state.artifacts {
        if a.artifact_type == ArtifactType::ReviewReport
            && let Some(report) = read_report(dir, a)
        {
            by_iteration.entry(a.iteration).or_default().push(report);
        }
    }
    for (iteration, reports) in by_iteration {
        let mut now = IterationFindings {
            iteration,
            ..IterationFindings::default()
        };
        for issue in reports.iter().flat_map(|r| &r.issues) {
            let key = (issue.file.clone(), words(&issue.description));
            let blocking = rule.blocks(&issue.severity);
            let id = match known.iter_mut().find(|(_, k, _)| same(k, &key)) {
                Some((id, _, b)) => {
                    *b |= blocking;
                    id.clone()
                }
                None => {
                    let id = format!("F{}", known.len() + 1);
                    known.push((id.clone(), key, blocking));
                    id
                }
            };
            if now.findings.iter().any(|f| f.id == id) {
                continue;
            }
            now.findings.push(Finding {
                id,
                severity: issue.severity.clone(),
                file: issue.file.clone(),
                description: issue.description.clone(),
                blocking,
            });
        }
        let previous: BTreeSet<String> = out
            .last()
            .map(|p| p.findings.iter().map(|f| f.id.clone()).collect())
            .unwrap_or_default();
        let current: BTreeSet<String> = now.findings.iter().map(|f| f.id.clone()).collect();
        for id in &current {
            if previous.contains(id) {
                now.open.push(id.clone());
            } else if seen_ever.contains(id) {
                now.reopened.push(id.clone());
            } else {
                now.new.push(id.clone());
            }
        }
        now.resolved = previous.difference(&current).cloned().collect();
        now.blocking_resolved = now
            .resolved
            .iter()
            .filter(|id| known.iter().any(|(k, _, b)| k == *id && *b))
            .count();
        seen_ever.extend(current);
        out.push(now);
    }
    out
}

/// The review report at `rel` in `dir`, parsed; `None` when it cannot be read or is no report.
/// Each file is read and parsed once per process while its stat stays the same: `track` runs
/// at every iteration of a long run and would otherwise read every earlier report each time.
fn read_report(dir: &ExecutionDir, artifact: &Artifact) -> Option<Arc<ReviewReport>> {
    // Keyed by the content hash the state records: an artifact is read and parsed once, and
    // not even looked at again while its state entry is unchanged (a hand edit the runner
    // notices changes the hash). At iteration 50 a stat per report made this grow per phase.
    type Cache = HashMap<(PathBuf, String), Option<Arc<ReviewReport>>>;
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let key = (
        dir.root().join(&artifact.file_path),
        artifact.sha256.clone(),
    );
    let cache = CACHE.get_or_init(Mutex::default);
    let lock = || cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(report) = lock().get(&key) {
        return report.clone();
    }
    let report = dir
        .read_artifact(&artifact.file_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .map(Arc::new);
    let mut cache = lock();
    // A server looks at many executions over its life: keep the cache bounded.
    if cache.len() >= 4096 {
        cache.clear();
    }
    cache.insert(key, report.clone());
    report
}

/// Why the loop no longer converges, if it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stall {
    /// No blocking finding resolved for `rounds` iterations in a row.
    Plateau {
        /// How many.
        rounds: u32,
        /// The blocking findings still open.
        open: Vec<String>,
    },
    /// Blocking findings resolved earlier came back.
    Oscillation {
        /// Which.
        reopened: Vec<String>,
    },
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plateau { rounds, open } => write!(
                f,
                "no blocking finding resolved in {rounds} iterations in a row (still open: {})",
                open.join(", ")
            ),
            Self::Oscillation { reopened } => write!(
                f,
                "findings resolved earlier came back ({}): the changes go back and forth",
                reopened.join(", ")
            ),
        }
    }
}

/// Whether the loop has stalled after the last iteration of `history`.
pub fn stall(history: &[IterationFindings], rule: &Convergence) -> Option<Stall> {
    let last = history.last()?;
    let blocking = |ids: &[String]| -> Vec<String> {
        ids.iter()
            .filter(|id| last.findings.iter().any(|f| &f.id == *id && f.blocking))
            .cloned()
            .collect()
    };
    let reopened = blocking(&last.reopened);
    if !reopened.is_empty() {
        return Some(Stall::Oscillation { reopened });
    }
    let rounds = rule.plateau_rounds.max(1) as usize;
    // Iterations after the first are judged against the one before them.
    if history.len() > rounds
        && history[history.len() - rounds..]
            .iter()
            .all(|h| h.blocking_resolved == 0)
    {
        let open: Vec<String> = last
            .findings
            .iter()
            .filter(|f| f.blocking)
            .map(|f| f.id.clone())
            .collect();
        if !open.is_empty() {
            return Some(Stall::Plateau {
                rounds: rule.plateau_rounds,
                open,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_problem_in_other_words_is_one_finding() {
        let a = (
            Some("greet.sh".into()),
            words("The --verbose flag prints nothing at all"),
        );
        let b = (
            Some("greet.sh".into()),
            words("Nothing is printed when the verbose flag is given"),
        );
        let c = (
            Some("greet.sh".into()),
            words("Missing test for the empty name"),
        );
        let d = (
            Some("other.sh".into()),
            words("The --verbose flag prints nothing at all"),
        );
        assert!(same(&a, &b));
        assert!(!same(&a, &c));
        assert!(!same(&a, &d), "another file is another finding");
    }
}
