//! `workflow fetch`: an execution pushed by `publish` (its ref `refs/autowrkers/executions/<id>`
//! and its branch) brought from a remote into this checkout, so a run started in CI can be
//! inspected, continued or resumed on a desk. The execution's files are restored from its
//! ref's last commit; the paths that belonged to the other machine (the project, the worktree)
//! are made this machine's.

use std::path::Path;
use std::process::Command;

use crate::git::execution_ref;
use crate::spec::{self, ExecutionRequest, WorkflowExecution};
use crate::store::{self, ExecutionDir, Home, ProjectDir, StoreError};

/// Why an execution could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// git failed (no such remote, no network, …).
    #[error("git {what} failed: {message}")]
    Git {
        /// What was run.
        what: String,
        /// What git said.
        message: String,
    },
    /// No execution ref on the remote starts so.
    #[error(
        "`{remote}` has no execution `{prefix}` (refs/autowrkers/executions/…): was it published?"
    )]
    NotFound {
        /// The remote.
        remote: String,
        /// What was asked.
        prefix: String,
    },
    /// Several do.
    #[error("`{prefix}` matches several executions on `{remote}`: {}; give more characters", .ids.join(", "))]
    Ambiguous {
        /// The remote.
        remote: String,
        /// What was asked.
        prefix: String,
        /// The matches.
        ids: Vec<String>,
    },
    /// A runner holds the local copy.
    #[error("execution {0} is running here: stop it before fetching it again")]
    Running(String),
    /// The ref's files are not an execution.
    #[error("refs/autowrkers/executions/{0} holds no execution.yaml and state.json")]
    NotAnExecution(String),
    /// A file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The fetched files are invalid.
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
}

fn git(project: &Path, what: &str, args: &[&str]) -> Result<String, FetchError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(project)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| FetchError::Git {
            what: what.to_owned(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(FetchError::Git {
            what: what.to_owned(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fetches the execution whose id starts with `prefix` from `remote` into `project`.
pub fn fetch(
    home: &Home,
    project: &Path,
    prefix: &str,
    remote: &str,
) -> Result<ExecutionDir, FetchError> {
    let listed = git(
        project,
        "ls-remote",
        &["ls-remote", remote, "refs/autowrkers/executions/*"],
    )?;
    let mut ids: Vec<String> = listed
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .filter_map(|r| r.strip_prefix("refs/autowrkers/executions/"))
        .filter(|id| id.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    let id = match (ids.iter().position(|i| i == prefix), ids.len()) {
        (Some(at), _) => ids.swap_remove(at),
        (None, 1) => ids.swap_remove(0),
        (None, 0) => {
            return Err(FetchError::NotFound {
                remote: remote.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        _ => {
            ids.sort();
            return Err(FetchError::Ambiguous {
                remote: remote.to_owned(),
                prefix: prefix.to_owned(),
                ids,
            });
        }
    };
    let dir = ExecutionDir::new(ProjectDir::new(project).execution(&id));
    if store::runner_alive(&dir) {
        return Err(FetchError::Running(id));
    }
    let refname = execution_ref(&id);
    git(
        project,
        "fetch",
        &["fetch", "--quiet", remote, &format!("+{refname}:{refname}")],
    )?;
    restore(project, &refname, &dir)?;
    // Paths of the machine that ran it become this one's.
    let mut request: ExecutionRequest = dir.read_request()?;
    request.project_path = project.to_string_lossy().into_owned();
    dir.write_request(&request)?;
    let mut state: WorkflowExecution = dir.read_state()?;
    if let Some(ws) = &mut state.workspace {
        match &ws.branch {
            Some(branch) => {
                let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
                git(project, "fetch", &["fetch", "--quiet", remote, &spec])?;
                ws.dir = home
                    .worktree(crate::engine::short(&id))
                    .to_string_lossy()
                    .into_owned();
            }
            None => ws.dir = request.project_path.clone(),
        }
    }
    dir.write_state(&state)?;
    store::register_project(home, project)?;
    store::note_changed(home, &dir);
    Ok(dir)
}

/// Writes the files of the last commit of `refname` into `dir`.
fn restore(project: &Path, refname: &str, dir: &ExecutionDir) -> Result<(), FetchError> {
    let io = |e: git2::Error| FetchError::Git {
        what: "read".into(),
        message: e.message().to_owned(),
    };
    let repo = git2::Repository::open(project).map_err(io)?;
    let tree = repo
        .find_reference(refname)
        .and_then(|r| r.peel_to_tree())
        .map_err(io)?;
    let mut failed = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |parent, entry| {
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return git2::TreeWalkResult::Ok;
        }
        let rel = format!("{parent}{}", entry.name().unwrap_or(""));
        let path = dir.root().join(&rel);
        let written = repo.find_blob(entry.id()).map_err(io).and_then(|blob| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
            }
            store::write_atomic(&path, blob.content()).map_err(|e| StoreError::io(&path, e).into())
        });
        match written {
            Ok(()) => git2::TreeWalkResult::Ok,
            Err(e) => {
                failed = Some(e);
                git2::TreeWalkResult::Abort
            }
        }
    })
    .map_err(io)
    .or_else(|e| if failed.is_some() { Ok(()) } else { Err(e) })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if !dir.request_path().exists() || !dir.state_path().exists() {
        return Err(FetchError::NotAnExecution(dir.id()));
    }
    Ok(())
}
