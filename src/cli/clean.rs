//! `workflow delete` and `workflow clean`: removing executions (see `engine::cleanup`).

use anyhow::Result;

use super::args::{CleanArgs, DeleteArgs};
use autowrkers::engine::{Engine, Removed, short};
use autowrkers::spec::WorkflowStatus;
use autowrkers::store::{self, Home};

fn said(removed: &Removed) {
    match &removed.branch {
        Some(b) => eprintln!("removed {} and its branch {b}", short(&removed.id)),
        None => eprintln!("removed {}", short(&removed.id)),
    }
}

/// `workflow delete ID [--branch]`.
pub fn delete(args: DeleteArgs, home: Home) -> Result<u8> {
    let dir = store::find_execution(&home, Some(&args.path), &args.id)?;
    let removed = Engine::new(home)?.delete_execution(&dir, args.branch)?;
    said(&removed);
    Ok(0)
}

/// `workflow clean [--older-than D] [--branches]`: the project's ended executions.
pub fn clean(args: CleanArgs, home: Home) -> Result<u8> {
    let project = args.path.canonicalize()?;
    let engine = Engine::new(home)?;
    let cutoff = chrono::Utc::now() - args.older_than;
    let mut count = 0;
    for dir in store::executions_of(&project) {
        let Ok(state) = dir.read_state() else {
            continue;
        };
        let ended = matches!(
            state.status,
            WorkflowStatus::Completed | WorkflowStatus::Failed | WorkflowStatus::Cancelled
        );
        let old = state
            .completed_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_none_or(|t| t <= cutoff);
        if ended && old && !store::runner_alive(&dir) {
            said(&engine.delete_execution(&dir, args.branches)?);
            count += 1;
        }
    }
    eprintln!("{count} execution(s) removed");
    Ok(0)
}
