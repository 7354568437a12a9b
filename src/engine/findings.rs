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
///
/// A run asks at every iteration (its judge and its implementer's context), so the work is
/// kept per execution for the process's life: a call whose review reports start as the last
/// call's did (the same iterations, the same content hashes) goes on from where that call
/// stood before its newest iteration, instead of matching every earlier iteration again (with
/// that, iterations 181–200 of a scripted run took 1.8× as long as iterations 1–20; 1.4×
/// now). Each iteration's findings are shared, not copied, between calls. A hand edit of an
/// earlier report changes its hash and the history is worked out afresh.
pub fn track(
    dir: &ExecutionDir,
    state: &WorkflowExecution,
    rule: &Convergence,
) -> Vec<Arc<IterationFindings>> {
    let mut by_iteration: BTreeMap<u32, Vec<&Artifact>> = BTreeMap::new();
    for a in &state.artifacts {
        if a.artifact_type == ArtifactType::ReviewReport {
            by_iteration.entry(a.iteration).or_default().push(a);
        }
    }
    let inputs: Vec<Reports> = by_iteration
        .iter()
        .map(|(i, arts)| (*i, arts.iter().map(|a| a.sha256.clone()).collect()))
        .collect();
    type Memos = HashMap<PathBuf, Memo>;
    static MEMOS: OnceLock<Mutex<Memos>> = OnceLock::new();
    let memos = MEMOS.get_or_init(Mutex::default);
    let lock = || memos.lock().unwrap_or_else(PoisonError::into_inner);
    let key = dir.root().to_path_buf();
    // Where to go on from: the last call's tracker before its newest iteration, when every
    // iteration it had before that is still here as it was.
    let (mut tracker, from) = match lock().get(&key) {
        Some(m) if m.rule == *rule && inputs.starts_with(&m.inputs[..m.inputs.len() - 1]) => {
            (m.before_last.clone(), m.inputs.len() - 1)
        }
        _ => (Tracker::default(), 0),
    };
    let mut before_last = None;
    for (n, ((iteration, _), (_, artifacts))) in inputs.iter().zip(&by_iteration).enumerate() {
        if n < from {
            continue;
        }
        if n + 1 == inputs.len() {
            before_last = Some(tracker.clone());
        }
        let reports: Vec<Arc<ReviewReport>> = artifacts
            .iter()
            .filter_map(|a| read_report(dir, a))
            .collect();
        tracker.add(*iteration, &reports, rule);
    }
    if let Some(before_last) = before_last {
        let mut memos = lock();
        // A server looks at many executions over its life: keep the memos bounded.
        if memos.len() >= 256 {
            memos.clear();
        }
        memos.insert(
            key,
            Memo {
                rule: rule.clone(),
                inputs,
                before_last,
            },
        );
    }
    tracker.out
}

/// One iteration's review reports, by content hash.
type Reports = (u32, Vec<String>);

/// What [`track`] keeps of its last call for an execution (see there).
#[derive(Debug)]
struct Memo {
    rule: Convergence,
    /// Every iteration it was given (never none).
    inputs: Vec<Reports>,
    /// Where it stood before the last of them.
    before_last: Tracker,
}

/// The findings worked out so far: each known one (id, key, blocking at any time), every id
/// ever seen, and each iteration's findings (shared, so a copy of the tracker is cheap).
#[derive(Debug, Clone, Default)]
struct Tracker {
    known: Vec<(String, Key, bool)>,
    seen_ever: BTreeSet<String>,
    out: Vec<Arc<IterationFindings>>,
}

impl Tracker {
    /// Matches the issues of one more iteration's `reports` against those known.
    fn add(&mut self, iteration: u32, reports: &[Arc<ReviewReport>], rule: &Convergence) {
        let mut now = IterationFindings {
            iteration,
            ..IterationFindings::default()
        };
        for issue in reports.iter().flat_map(|r| &r.issues) {
            let key = (issue.file.clone(), words(&issue.description));
            let blocking = rule.blocks(&issue.severity);
            let id = match self.known.iter_mut().find(|(_, k, _)| same(k, &key)) {
                Some((id, _, b)) => {
                    *b |= blocking;
                    id.clone()
                }
                None => {
                    let id = format!("F{}", self.known.len() + 1);
                    self.known.push((id.clone(), key, blocking));
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
        let previous: BTreeSet<String> = self
            .out
            .last()
            .map(|p| p.findings.iter().map(|f| f.id.clone()).collect())
            .unwrap_or_default();
        let current: BTreeSet<String> = now.findings.iter().map(|f| f.id.clone()).collect();
        for id in &current {
            if previous.contains(id) {
                now.open.push(id.clone());
            } else if self.seen_ever.contains(id) {
                now.reopened.push(id.clone());
            } else {
                now.new.push(id.clone());
            }
        }
        now.resolved = previous.difference(&current).cloned().collect();
        now.blocking_resolved = now
            .resolved
            .iter()
            .filter(|id| self.known.iter().any(|(k, _, b)| k == *id && *b))
            .count();
        self.seen_ever.extend(current);
        self.out.push(Arc::new(now));
    }
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
pub fn stall(history: &[Arc<IterationFindings>], rule: &Convergence) -> Option<Stall> {
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

    /// Writes iteration `n`'s review (one major issue per description) in `dir` and records
    /// it in `state`, replacing an earlier one of that iteration.
    fn review(dir: &ExecutionDir, state: &mut WorkflowExecution, n: u32, issues: &[&str]) {
        let issues: Vec<serde_json::Value> = issues
            .iter()
            .map(|d| serde_json::json!({"severity": "major", "description": d}))
            .collect();
        let text =
            serde_json::json!({"approved": false, "summary": "s", "issues": issues}).to_string();
        let rel = format!("artifacts/{n}/r.json");
        std::fs::create_dir_all(dir.root().join(format!("artifacts/{n}"))).unwrap();
        std::fs::write(dir.root().join(&rel), &text).unwrap();
        state.artifacts.retain(|a| a.iteration != n);
        state.artifacts.push(Artifact {
            id: format!("a{n}"),
            phase_execution_id: String::new(),
            phase_id: "r".into(),
            artifact_type: ArtifactType::ReviewReport,
            iteration: n,
            file_path: rel,
            // What the memo compares: any text that changes with the content.
            sha256: text,
            is_edited: false,
            created_at: String::new(),
        });
    }

    /// `track` of `state` in a folder of its own, which no call has seen before.
    fn afresh(state: &WorkflowExecution, rule: &Convergence) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ExecutionDir::new(tmp.path());
        let mut copy = WorkflowExecution::new("fresh");
        for a in &state.artifacts {
            let issues: Vec<String> = serde_json::from_str::<ReviewReport>(&a.sha256)
                .unwrap()
                .issues
                .into_iter()
                .map(|i| i.description)
                .collect();
            let issues: Vec<&str> = issues.iter().map(String::as_str).collect();
            review(&dir, &mut copy, a.iteration, &issues);
        }
        shown(&track(&dir, &copy, rule))
    }

    fn shown(history: &[Arc<IterationFindings>]) -> String {
        let plain: Vec<&IterationFindings> = history.iter().map(Arc::as_ref).collect();
        serde_json::to_string(&plain).unwrap()
    }

    #[test]
    fn a_history_carried_on_from_the_last_call_is_the_history_worked_out_afresh() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ExecutionDir::new(tmp.path());
        let rule = Convergence::default();
        let mut state = WorkflowExecution::new("e");
        let rounds: [&[&str]; 5] = [
            &[
                "The verbose flag prints nothing",
                "Missing test for the empty name",
            ],
            &["Nothing printed when the verbose flag is given"],
            &[],
            &["Missing test for the empty name", "Typo in the usage text"],
            &["Typo in usage text"],
        ];
        for (n, issues) in rounds.iter().enumerate() {
            review(&dir, &mut state, n as u32 + 1, issues);
            let carried = shown(&track(&dir, &state, &rule));
            assert_eq!(carried, afresh(&state, &rule), "after iteration {}", n + 1);
        }
        // A second reviewer's report arrives in the newest iteration after a call.
        let mut second = state.artifacts.last().unwrap().clone();
        second.id = "b5".into();
        second.file_path = "artifacts/5/r2.json".into();
        second.sha256 = serde_json::json!({"approved": false, "summary": "s", "issues": [
            {"severity": "major", "description": "Crash on an empty name"}]})
        .to_string();
        std::fs::write(dir.root().join(&second.file_path), &second.sha256).unwrap();
        state.artifacts.push(second);
        let carried = shown(&track(&dir, &state, &rule));
        let tmp2 = tempfile::tempdir().unwrap();
        let fresh_dir = ExecutionDir::new(tmp2.path());
        for a in &state.artifacts {
            let target = fresh_dir.root().join(&a.file_path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, &a.sha256).unwrap();
        }
        let fresh = shown(&track(&fresh_dir, &state, &rule));
        assert_eq!(carried, fresh, "a report added to the newest iteration");
        assert!(carried.contains("Crash on an empty name"));
        // A hand edit of an early report changes its hash: worked out afresh.
        review(&dir, &mut state, 1, &["Typo in the usage text"]);
        state.artifacts.retain(|a| a.id != "b5");
        let carried = shown(&track(&dir, &state, &rule));
        assert_eq!(carried, afresh(&state, &rule), "after a hand edit");
    }

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
