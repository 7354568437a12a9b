//! How an execution's task is found (seed §2.1 trigger modes): a task given on the command line,
//! a directory scan (`--analyze`), or a GitHub issue (`--issue N`); and what starts executions
//! without a command per run: `pool` (runners at most N at a time, for `reconcile` and
//! `watch`), `inbox` (task files), `glob` (trigger paths) and `watch` (the loop).

pub mod address;
pub mod fetch;
pub mod github;
pub mod glob;
pub mod inbox;
pub mod pool;
pub mod publish;
pub mod report;
pub mod watch;
mod watch_event;

use std::path::PathBuf;

use crate::store::{self, Home};

/// The task of a directory scan: the analyzer chooses the change.
pub const ANALYZE_TASK: &str = "Analyze this codebase and choose the single most valuable change to make now \
(a bug, a missing test, an unclear or duplicated piece of code); describe it in the task list and carry it out.";

/// Why a trigger could not produce a task.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The registry of known projects cannot be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// No known project has that name.
    #[error("no known project named `{0}` (projects become known when autowrkers runs in them)")]
    UnknownProject(String),
    /// GitHub could not be asked, or said no.
    #[error(transparent)]
    GitHub(#[from] github::GitHubError),
}

/// The known project whose folder is called `name` (or whose path is `name`).
pub fn project_by_name(home: &Home, name: &str) -> Result<PathBuf, TriggerError> {
    store::known_projects(home)?
        .into_iter()
        .find(|p| p.file_name().is_some_and(|f| f == name) || p.as_os_str() == name)
        .ok_or_else(|| TriggerError::UnknownProject(name.to_owned()))
}
