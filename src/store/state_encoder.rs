//! `state.json` encoded again and again by its runner, without re-encoding the past: the JSON
//! of every phase run and artifact is kept and reused while that entry is unchanged. A long
//! run's state grows by a phase run and an artifact per phase and is written twice a phase;
//! encoding all of it each time made every phase of iteration 50 slower than of iteration 1.
//! The iterations before the current one go to `history/<iteration>.json` ([`History`]),
//! written when one of their entries changed (in practice once, when the next iteration
//! starts), so that `state.json` — written, synced and committed at every step — stays the
//! size of one iteration. The bytes of `state.json` are exactly what `serde_json::to_vec`
//! gives for the state without the entries kept in history (the unit test compares them).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::spec::{Artifact, PhaseExecution, WorkflowExecution};

/// `history/<iteration>.json`: the phase runs and artifacts of one iteration that is over.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The iteration's phase runs, in the order they started.
    pub phase_executions: Vec<PhaseExecution>,
    /// The iteration's artifacts.
    pub artifacts: Vec<Artifact>,
}

/// One encoding of a state: `state.json`'s bytes, and the history files to write before it
/// (those that changed since this encoder's last encoding; all of them for a new encoder).
#[derive(Debug)]
pub struct Encoded {
    /// The bytes of `state.json`.
    pub state: Vec<u8>,
    /// `(iteration, bytes)` of each `history/<iteration>.json` to write first.
    pub history: Vec<(u32, Vec<u8>)>,
}

/// The encoder of one execution's state; keep one per runner pass.
#[derive(Debug, Default)]
pub struct StateEncoder {
    runs: Vec<(PhaseExecution, Vec<u8>)>,
    artifacts: Vec<(Artifact, Vec<u8>)>,
    /// Iteration → what its history file holds, as this encoder last gave it.
    history: HashMap<u32, History>,
    /// The `history_through` of the last encoding.
    through: u32,
    /// Set by [`StateEncoder::recheck_history`]: compare every history file's entries at the
    /// next encoding.
    recheck: bool,
}

impl StateEncoder {
    /// A new encoder with nothing kept.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next encoding compare the entries of every iteration already in history with
    /// what their files hold. Call it after changing such an entry (a hand edit of an old
    /// iteration's artifact): otherwise only a change of `history_through` makes it look, so
    /// that a step costs the same at iteration 50 as at iteration 1. Debug builds always
    /// look, and stop on an entry changed without this call.
    pub fn recheck_history(&mut self) {
        self.recheck = true;
    }

    /// An encoder for a state read back from its files: the history files it was read from
    /// are taken as written, and are written again only when their entries change.
    pub fn resumed(state: &WorkflowExecution) -> Self {
        let history = by_iteration(state, state.history_through)
            .into_iter()
            .map(|(n, entries)| (n, History::of(entries)))
            .collect();
        Self {
            history,
            through: state.history_through,
            ..Self::new()
        }
    }

    /// The encoding of `state`, whose `history_through` it sets (every iteration before the
    /// current one). Its two lists are lent out while the rest is encoded and put back before
    /// this returns.
    pub fn encode(&mut self, state: &mut WorkflowExecution) -> serde_json::Result<Encoded> {
        state.history_through = state.iteration.saturating_sub(1);
        let through = state.history_through;
        let history = self.changed_history(state)?;
        let runs = std::mem::take(&mut state.phase_executions);
        let artifacts = std::mem::take(&mut state.artifacts);
        let head = serde_json::to_vec(state);
        state.phase_executions = runs;
        state.artifacts = artifacts;
        let head = head?;
        let live_runs: Vec<&PhaseExecution> = state
            .phase_executions
            .iter()
            .filter(|r| r.iteration > through)
            .collect();
        let live_artifacts: Vec<&Artifact> = state
            .artifacts
            .iter()
            .filter(|a| a.iteration > through)
            .collect();
        let runs = reuse(&mut self.runs, &live_runs)?;
        let artifacts = reuse(&mut self.artifacts, &live_artifacts)?;
        let text = match splice(
            &head,
            [
                (&b"\"phase_executions\":[]"[..], &runs[..]),
                (&b"\"artifacts\":[]"[..], &artifacts[..]),
            ],
        ) {
            Some(text) => text,
            None => serde_json::to_vec(&live_part(state))?,
        };
        Ok(Encoded {
            state: text,
            history,
        })
    }

    /// The history files of iterations 1 to `history_through` whose entries changed since
    /// they were last given (each iteration has one, empty or not: a reader needs them all).
    fn changed_history(
        &mut self,
        state: &WorkflowExecution,
    ) -> serde_json::Result<Vec<(u32, Vec<u8>)>> {
        let through = state.history_through;
        let full = std::mem::take(&mut self.recheck) || through != self.through;
        self.through = through;
        if through == 0 || (!full && !cfg!(debug_assertions)) {
            return Ok(Vec::new());
        }
        let mut changed = Vec::new();
        for (n, (runs, artifacts)) in by_iteration(state, through) {
            let same = self.history.get(&n).is_some_and(|h| {
                h.phase_executions.len() == runs.len()
                    && h.artifacts.len() == artifacts.len()
                    && h.phase_executions.iter().zip(&runs).all(|(a, b)| a == *b)
                    && h.artifacts.iter().zip(&artifacts).all(|(a, b)| a == *b)
            });
            if same {
                continue;
            }
            debug_assert!(
                full,
                "iteration {n}'s entries changed in history without recheck_history"
            );
            let history = History::of((runs, artifacts));
            changed.push((n, serde_json::to_vec(&history)?));
            self.history.insert(n, history);
        }
        Ok(changed)
    }
}

/// An iteration's phase runs and artifacts, borrowed from a state.
type Entries<'s> = (Vec<&'s PhaseExecution>, Vec<&'s Artifact>);

/// The entries of iterations 1 to `through`, by iteration: every one of them present, empty
/// or not (a reader needs each iteration's file).
fn by_iteration(state: &WorkflowExecution, through: u32) -> BTreeMap<u32, Entries<'_>> {
    let mut groups: BTreeMap<u32, Entries<'_>> = (1..=through)
        .map(|n| (n, (Vec::new(), Vec::new())))
        .collect();
    for run in &state.phase_executions {
        if let Some(group) = groups.get_mut(&run.iteration) {
            group.0.push(run);
        }
    }
    for artifact in &state.artifacts {
        if let Some(group) = groups.get_mut(&artifact.iteration) {
            group.1.push(artifact);
        }
    }
    groups
}

impl History {
    /// The history file of an iteration's `entries`.
    fn of((runs, artifacts): Entries<'_>) -> Self {
        Self {
            phase_executions: runs.into_iter().cloned().collect(),
            artifacts: artifacts.into_iter().cloned().collect(),
        }
    }
}

/// `state` without the entries its history files hold: what `state.json` says.
fn live_part(state: &WorkflowExecution) -> WorkflowExecution {
    let through = state.history_through;
    let mut live = state.clone();
    live.phase_executions.retain(|r| r.iteration > through);
    live.artifacts.retain(|a| a.iteration > through);
    live
}

/// The items of `items` encoded and joined with commas, each from `kept` when unchanged.
fn reuse<T: Serialize + Clone + PartialEq>(
    kept: &mut Vec<(T, Vec<u8>)>,
    items: &[&T],
) -> serde_json::Result<Vec<u8>> {
    kept.truncate(items.len());
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if let Some((seen, bytes)) = kept.get(i)
            && seen == *item
        {
            out.extend_from_slice(bytes);
            continue;
        }
        let bytes = serde_json::to_vec(item)?;
        out.extend_from_slice(&bytes);
        let entry = ((*item).clone(), bytes);
        match kept.get_mut(i) {
            Some(slot) => *slot = entry,
            None => kept.push(entry),
        }
    }
    Ok(out)
}

/// `head` with each `inner` placed inside the empty list that ends its `key`, copied once;
/// `None` when a key is missing. A key inside a string value has its quotes escaped, so the
/// first plain match is the field.
fn splice<const N: usize>(head: &[u8], parts: [(&[u8], &[u8]); N]) -> Option<Vec<u8>> {
    let mut at = Vec::with_capacity(N);
    for (key, inner) in parts {
        let end = head.windows(key.len()).position(|w| w == key)? + key.len() - 1;
        at.push((end, inner));
    }
    at.sort_by_key(|(end, _)| *end);
    let extra: usize = at.iter().map(|(_, inner)| inner.len()).sum();
    let mut out = Vec::with_capacity(head.len() + extra);
    let mut from = 0;
    for (end, inner) in at {
        out.extend_from_slice(&head[from..end]);
        out.extend_from_slice(inner);
        from = end;
    }
    out.extend_from_slice(&head[from..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Artifact, ArtifactType, PhaseExecution, PhaseStatus};

    fn run(n: u32) -> PhaseExecution {
        let text = format!(
            r#"{{"id":"{n}/a","phase_id":"a","phase_name":"a","phase_role":"implementer","provider_used":"x","model_used":"m","status":"running","iteration":{n},"input_artifact_ids":[],"output_artifact_id":null,"fingerprint":"","tokens":{{"input":1,"output":2,"cached_input":0,"cache_write":0}},"cost_usd":0.5,"calls":1,"started_at":"t"}}"#
        );
        serde_json::from_str(&text).unwrap()
    }

    fn artifact(n: u32) -> Artifact {
        Artifact {
            id: format!("{n}/a"),
            phase_execution_id: format!("{n}/a"),
            phase_id: "a".into(),
            artifact_type: ArtifactType::CodeDiff,
            iteration: n,
            file_path: format!("artifacts/{n}/a.diff"),
            sha256: "00".into(),
            is_edited: false,
            created_at: "t".into(),
        }
    }

    #[test]
    fn the_bytes_are_serde_jsons_through_changes_appends_and_removals() {
        let mut enc = StateEncoder::new();
        let mut state = WorkflowExecution::new("id");
        // A message holding the key's text must not be mistaken for it.
        state.message = r#"see "phase_executions":[] and "artifacts":[]"#.into();
        let same = |enc: &mut StateEncoder, state: &mut WorkflowExecution| {
            let ours = enc.encode(state).unwrap();
            assert!(ours.history.is_empty(), "all in iteration 1");
            assert_eq!(
                String::from_utf8(ours.state).unwrap(),
                serde_json::to_string(state).unwrap()
            );
        };
        same(&mut enc, &mut state);
        for n in 1..=3 {
            state.phase_executions.push(run(n));
            state.artifacts.push(artifact(n));
            same(&mut enc, &mut state);
        }
        state.phase_executions[1].status = PhaseStatus::Completed;
        state.artifacts[0].is_edited = true;
        same(&mut enc, &mut state);
        state.phase_executions.pop();
        state.artifacts.clear();
        same(&mut enc, &mut state);
        assert_eq!(state.phase_executions.len(), 2, "the lists are put back");
    }

    #[test]
    fn earlier_iterations_go_to_history_files_once_and_read_back_whole() {
        let mut enc = StateEncoder::new();
        let mut state = WorkflowExecution::new("id");
        for n in 1..=3 {
            state.phase_executions.push(run(n));
            state.artifacts.push(artifact(n));
        }
        state.iteration = 3;
        let first = enc.encode(&mut state).unwrap();
        assert_eq!(state.history_through, 2);
        let written: Vec<u32> = first.history.iter().map(|(n, _)| *n).collect();
        assert_eq!(written, [1, 2]);
        let on_disk: WorkflowExecution = serde_json::from_slice(&first.state).unwrap();
        assert_eq!(
            on_disk.phase_executions,
            [run(3)],
            "state.json holds iteration 3 only"
        );
        assert_eq!(on_disk.artifacts, [artifact(3)]);
        assert!(
            enc.encode(&mut state).unwrap().history.is_empty(),
            "unchanged: not again"
        );
        // A hand edit of an old artifact rewrites that iteration's file alone.
        state.artifacts[0].is_edited = true;
        enc.recheck_history();
        let again = enc.encode(&mut state).unwrap();
        assert_eq!(again.history.len(), 1);
        assert_eq!(again.history[0].0, 1);
        // Through the folder, the state reads back as it was.
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::store::ExecutionDir::new(tmp.path().join("id"));
        std::fs::create_dir_all(dir.root()).unwrap();
        dir.write_state(&state).unwrap();
        assert!(dir.history_path(2).exists());
        // Written again unchanged, the history files are left as they are.
        let stamp = crate::store::Stamp::of(&dir.history_path(1));
        dir.write_state(&state).unwrap();
        assert_eq!(crate::store::Stamp::of(&dir.history_path(1)), stamp);
        let read = dir.read_state().unwrap();
        assert_eq!(read, state);
        // A runner resuming it writes none of them again.
        let mut read = read;
        assert!(
            StateEncoder::resumed(&read)
                .encode(&mut read)
                .unwrap()
                .history
                .is_empty()
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "without recheck_history")]
    fn an_old_entry_changed_without_a_recheck_is_a_bug_debug_builds_stop_on() {
        let mut enc = StateEncoder::new();
        let mut state = WorkflowExecution::new("id");
        state.artifacts.push(artifact(1));
        state.iteration = 2;
        enc.encode(&mut state).unwrap();
        state.artifacts[0].is_edited = true;
        let _ = enc.encode(&mut state);
    }
}
