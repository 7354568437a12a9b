//! Hand edits of artifacts (DESIGN §2): a person may change an artifact file, by hand or with
//! `artifact edit`. Whoever notices it first — `artifact edit` right away, or the runner when it
//! next reconciles — marks the artifact edited in `state.json` and commits the new version on
//! the execution's ref (the old one is in git already). Downstream phases then see a different
//! prompt, so their fingerprints no longer match and they run again.

use std::path::Path;

use super::Reconcile;
use super::runner::{Engine, EngineError};
use super::sha256_hex;
use super::transitions::{Trigger, transition};
use crate::spec::WorkflowExecution;
use crate::store::{ExecutionDir, ExecutionLock, StoreError};

/// Marks the artifacts of `state` whose file no longer has the hash the runner recorded;
/// returns their ids. A completed execution with an edit is reopened, so `resume` re-runs
/// what reads the artifact.
pub(crate) fn mark(dir: &ExecutionDir, state: &mut WorkflowExecution) -> Vec<String> {
    let edited = mark_edited(dir, state);
    if !edited.is_empty()
        && let Ok(status) = transition(state.status, Trigger::HandEdit)
    {
        state.status = status;
        state.completed_at = None;
        state.message = format!(
            "reopened by a hand edit of {}; `autowrkers resume {}` re-runs what reads it",
            edited.join(", "),
            super::short(&state.id)
        );
    }
    edited
}

fn mark_edited(dir: &ExecutionDir, state: &mut WorkflowExecution) -> Vec<String> {
    let mut edited = Vec::new();
    for artifact in &mut state.artifacts {
        let Ok(content) = dir.read_artifact(&artifact.file_path) else {
            continue;
        };
        let sha = sha256_hex(content.as_bytes());
        if sha != artifact.sha256 {
            artifact.sha256 = sha;
            artifact.is_edited = true;
            edited.push(artifact.id.clone());
        }
    }
    edited
}

/// Commits everything of `dir` on its ref with `message` (git projects only).
pub(crate) fn commit_snapshot(
    project: &Path,
    dir: &ExecutionDir,
    message: &str,
) -> Result<(), EngineError> {
    crate::git::commit_folder(project, &dir.id(), dir.root(), message)?;
    Ok(())
}

/// The commit message of a hand edit.
pub(crate) fn message(edited: &[String]) -> String {
    format!("hand edit of {}", edited.join(", "))
}

impl Engine {
    /// Records the hand edits of `dir` now (under its lock): marks them in `state.json` and
    /// commits them. Returns the edited artifacts' ids. A live runner holding the lock records
    /// them itself at its next reconcile.
    pub fn record_hand_edits(&self, dir: &ExecutionDir) -> Result<Vec<String>, EngineError> {
        let _lock = ExecutionLock::acquire(&dir.lock_path()).map_err(StoreError::from)?;
        let mut state = dir.read_state()?;
        let edited = mark(dir, &mut state);
        if edited.is_empty() {
            return Ok(edited);
        }
        dir.write_state(&state)?;
        self.note_changed(dir);
        let request = dir.read_request()?;
        commit_snapshot(Path::new(&request.project_path), dir, &message(&edited))?;
        Ok(edited)
    }
}

impl Reconcile<'_> {
    /// Records the hand edits made since the runner last wrote (see `hand_edit`).
    pub(super) fn note_hand_edits(&mut self) -> Result<(), EngineError> {
        let edited = mark(self.dir, &mut self.state);
        if edited.is_empty() {
            return Ok(());
        }
        // An edited artifact may be an earlier iteration's, kept in its history file.
        self.encoder.recheck_history();
        self.write_state(true)?;
        self.engine.note_changed(self.dir);
        self.commit(&message(&edited))
    }
}
