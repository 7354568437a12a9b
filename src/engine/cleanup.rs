//! Removing executions: `workflow delete` and `workflow clean` (seed §5.2's DELETE). An
//! execution goes with everything the runner made for it — its worktree, its ref, its folder,
//! its index entry — and, when asked, its result branch. A live run is never removed.

use std::path::Path;
use std::time::Duration;

use super::runner::{Engine, EngineError};
use crate::git::ProjectRepo;
use crate::store::{ExecutionDir, ExecutionLock, Index, StoreError};

/// How long a removal waits for the runner of an execution that has ended to let it go.
const FINISHING: Duration = Duration::from_secs(5);

/// What removing one execution did.
#[derive(Debug, Clone, PartialEq)]
pub struct Removed {
    /// The execution's id.
    pub id: String,
    /// Its result branch, when it was deleted too.
    pub branch: Option<String>,
}

impl Engine {
    /// Removes the execution in `dir`: its worktree, ref and folder, and with `branch` its
    /// result branch. Refused (the lock is held) while a runner works on it.
    pub fn delete_execution(
        &self,
        dir: &ExecutionDir,
        branch: bool,
    ) -> Result<Removed, EngineError> {
        let state = dir.read_state().ok();
        // An ended execution's runner may still hold it for the milliseconds of its last
        // commit and its worktree's removal: wait for that, not for a live run.
        let ended = state.as_ref().is_some_and(|s| s.status.is_terminal());
        let within = if ended { FINISHING } else { Duration::ZERO };
        let lock =
            ExecutionLock::acquire_within(&dir.lock_path(), within).map_err(StoreError::from)?;
        let id = dir.id();
        let workspace = state.as_ref().and_then(|s| s.workspace.clone());
        let project = dir.project().map(Path::to_path_buf);
        let mut deleted_branch = None;
        if let Some(repo) = project.as_deref().and_then(ProjectRepo::open) {
            let branch_name = workspace.as_ref().and_then(|w| w.branch.clone());
            if let (Some(ws), Some(_)) = (&workspace, &branch_name) {
                repo.remove_worktree(Path::new(&ws.dir))?;
            }
            let doomed = branch_name.filter(|_| branch);
            repo.delete_execution_refs(&id, doomed.as_deref())?;
            deleted_branch = doomed;
        }
        drop(lock);
        std::fs::remove_dir_all(dir.root()).map_err(|e| StoreError::Io {
            path: dir.root().to_path_buf(),
            source: e,
        })?;
        if let Ok(index) = Index::open_in(&self.home) {
            let _ = index.remove(&id);
        }
        Ok(Removed {
            id,
            branch: deleted_branch,
        })
    }
}
