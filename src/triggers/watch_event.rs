//! What `autowrkers watch` did: one event per action, printed as a line or as JSON
//! (`watch:…`).

use serde::Serialize;

use crate::engine::short;

/// What the watcher did, one event per action (`--json` prints them as they are).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum WatchEvent {
    /// Watching a project.
    #[serde(rename = "watch:started")]
    Started {
        /// The project.
        project: String,
        /// Its triggers.
        triggers: usize,
    },
    /// An execution was handed to a runner because its files asked for it.
    #[serde(rename = "watch:reconcile")]
    Reconcile {
        /// The execution.
        execution_id: String,
        /// Why.
        reason: String,
    },
    /// A task file became an execution.
    #[serde(rename = "watch:task")]
    Task {
        /// The task file.
        file: String,
        /// The execution.
        execution_id: String,
    },
    /// A trigger started its pipeline.
    #[serde(rename = "watch:trigger")]
    Trigger {
        /// The trigger.
        trigger: String,
        /// The execution.
        execution_id: String,
        /// What changed.
        changed_files: Vec<String>,
    },
    /// A trigger matched while its last execution runs: it starts again when that ends.
    #[serde(rename = "watch:queued")]
    Queued {
        /// The trigger.
        trigger: String,
        /// The execution it waits for.
        waiting_for: String,
    },
    /// A trigger matched while its last execution runs: that one was cancelled.
    #[serde(rename = "watch:restarted")]
    Restarted {
        /// The trigger.
        trigger: String,
        /// The execution cancelled.
        cancelled: String,
    },
    /// A trigger matched while its last execution runs, and says to skip.
    #[serde(rename = "watch:skipped")]
    Skipped {
        /// The trigger.
        trigger: String,
        /// The execution still running.
        busy_with: String,
    },
    /// A runner this watcher started ended.
    #[serde(rename = "watch:ended")]
    Ended {
        /// The execution.
        execution_id: String,
        /// Its status.
        status: String,
    },
    /// Something could not be done (a bad file: file, line and column); watching goes on.
    #[serde(rename = "watch:error")]
    Error {
        /// What and where.
        message: String,
    },
    /// Watching stopped; runners still going keep going.
    #[serde(rename = "watch:stopped")]
    Stopped {
        /// Runners this watcher started that are still running.
        running: usize,
    },
}

impl std::fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Started { project, triggers } => {
                write!(f, "watching {project} ({triggers} trigger(s))")
            }
            Self::Reconcile {
                execution_id,
                reason,
            } => {
                write!(f, "{}  {reason}", short(execution_id))
            }
            Self::Task { file, execution_id } => {
                write!(f, "{}  task {file} started", short(execution_id))
            }
            Self::Trigger {
                trigger,
                execution_id,
                changed_files,
            } => write!(
                f,
                "{}  trigger {trigger}: {}",
                short(execution_id),
                changed_files.join(", ")
            ),
            Self::Queued {
                trigger,
                waiting_for,
            } => write!(
                f,
                "trigger {trigger} queued: it runs again when {} ends",
                short(waiting_for)
            ),
            Self::Restarted { trigger, cancelled } => {
                write!(
                    f,
                    "trigger {trigger}: cancelled {} to start again",
                    short(cancelled)
                )
            }
            Self::Skipped { trigger, busy_with } => {
                write!(
                    f,
                    "trigger {trigger} skipped: {} still runs",
                    short(busy_with)
                )
            }
            Self::Ended {
                execution_id,
                status,
            } => {
                write!(f, "{}  ended {status}", short(execution_id))
            }
            Self::Error { message } => write!(f, "error: {message}"),
            Self::Stopped { running } => write!(
                f,
                "stopped watching; {running} execution(s) started here keep running"
            ),
        }
    }
}
