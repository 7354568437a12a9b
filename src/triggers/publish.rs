//! Publishing a completed execution to GitHub: its result branch and its ref
//! (`refs/autowrkers/executions/<id>`) are pushed, a pull request is opened whose body is the
//! execution's report (a draft when not everything passed), and the issue it worked on gets a
//! comment linking it. What was done is kept in the execution folder's `publish.json`, so a
//! retry (`autowrkers workflow publish`) redoes only what is missing. A failure loses nothing:
//! the execution stays completed, its branch local.
//!
//! The push runs the user's `git` (their credential helpers, ssh agent and config apply; the
//! libgit2 build here has no TLS or SSH transport); a `GITHUB_TOKEN` is handed to it for
//! `https` remotes through the environment, never on its command line.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::github::{GitHub, GitHubError, PullRequest, repository};
use super::report::{all_passed, markdown};
use crate::engine::{outcome, short};
use crate::git::execution_ref;
use crate::providers::HttpClient;
use crate::spec::WorkflowStatus;
use crate::store::{ExecutionDir, StoreError, write_atomic};

/// Why an execution could not be published; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Only completed executions are published.
    #[error("execution {id} is {status}, not completed: nothing to publish")]
    NotCompleted {
        /// Its short id.
        id: String,
        /// Its status.
        status: &'static str,
    },
    /// In place or outside git there is no result branch.
    #[error("execution {0} has no result branch (it ran in place or outside git): nothing to push")]
    NoBranch(String),
    /// The remote does not exist.
    #[error(
        "the project has no git remote `{0}`: add one (`git remote add {0} <url>`) and publish again"
    )]
    NoRemote(String),
    /// git refused or failed to push.
    #[error("pushing to `{remote}` failed: {message}")]
    Push {
        /// The remote.
        remote: String,
        /// What git said.
        message: String,
    },
    /// GitHub said no.
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    /// A file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What publishing has done so far (`publish.json` in the execution folder).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The repository, `owner/name`.
    pub repo: String,
    /// The refs pushed.
    pub pushed: Vec<String>,
    /// The pull request.
    pub pull_request: Option<PullRequest>,
    /// Whether it was a draft (not everything passed).
    pub draft: bool,
    /// Whether the issue got its comment.
    pub commented: bool,
}

fn record_path(dir: &ExecutionDir) -> std::path::PathBuf {
    dir.root().join("publish.json")
}

/// What was published of `dir`, if anything.
pub fn published(dir: &ExecutionDir) -> Option<Published> {
    let text = std::fs::read_to_string(record_path(dir)).ok()?;
    serde_json::from_str(&text).ok()
}

fn save(dir: &ExecutionDir, p: &Published) -> Result<(), StoreError> {
    let path = record_path(dir);
    let text = serde_json::to_string_pretty(p).unwrap_or_default();
    write_atomic(&path, text.as_bytes()).map_err(|e| StoreError::io(&path, e))
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Pushes `refs` to `remote` with the user's git.
fn push(project: &Path, remote: &str, refs: &[String]) -> Result<(), PublishError> {
    let url = git2::Repository::open(project)
        .ok()
        .and_then(|r| {
            r.find_remote(remote)
                .ok()
                .and_then(|x| x.url().map(str::to_owned))
        })
        .ok_or_else(|| PublishError::NoRemote(remote.to_owned()))?;
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(project)
        .args(["push", "--porcelain", remote]);
    cmd.args(refs.iter().map(|r| format!("{r}:{r}")));
    // Never a prompt: in CI nobody answers.
    cmd.env("GIT_TERMINAL_PROMPT", "0");
    if url.starts_with("https://")
        && let Ok(token) = std::env::var("GITHUB_TOKEN")
        && !token.is_empty()
    {
        let header = format!(
            "Authorization: Basic {}",
            base64(format!("x-access-token:{token}").as_bytes())
        );
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", header);
    }
    let out = cmd.output().map_err(|e| PublishError::Push {
        remote: remote.to_owned(),
        message: format!("cannot run git: {e}"),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_owned()
        + "\n"
        + String::from_utf8_lossy(&out.stdout).trim();
    Err(PublishError::Push {
        remote: remote.to_owned(),
        message: said.trim().to_owned(),
    })
}

/// Publishes the completed execution in `dir`: push, pull request, issue comment — each only
/// if not done already. `repo` overrides the repository (`--repo`), `configured` is the
/// project's `github_repo`.
pub async fn publish(
    dir: &ExecutionDir,
    http: &HttpClient,
    repo: Option<&str>,
    configured: Option<&str>,
    remote: &str,
) -> Result<Published, PublishError> {
    let request = dir.read_request()?;
    let state = dir.read_state()?;
    let id = short(&state.id).to_owned();
    if state.status != WorkflowStatus::Completed {
        return Err(PublishError::NotCompleted {
            id,
            status: state.status.as_str(),
        });
    }
    let branch = state
        .workspace
        .as_ref()
        .and_then(|w| w.branch.clone())
        .ok_or_else(|| PublishError::NoBranch(id.clone()))?;
    let project = Path::new(&request.project_path);
    let repo = match (repo, &request.github) {
        (Some(r), _) => r.to_owned(),
        (None, Some(g)) => g.repo.clone(),
        (None, None) => repository(project, None, configured)?,
    };
    let mut done = published(dir).unwrap_or_default();
    done.repo = repo.clone();
    let refs = vec![format!("refs/heads/{branch}"), execution_ref(&state.id)];
    push(project, remote, &refs)?;
    done.pushed = refs;
    save(dir, &done)?;

    let gh = GitHub::new(http, repo);
    let o = outcome(dir, &state);
    let draft = !all_passed(&o);
    let title = match &request.github {
        Some(g) => {
            let first = request.task_description.lines().next().unwrap_or("");
            let issue_title = first.split_once(": ").map_or(first, |(_, t)| t);
            format!("{issue_title} (#{})", g.number)
        }
        None => request
            .task_description
            .lines()
            .next()
            .unwrap_or("autowrkers")
            .chars()
            .take(72)
            .collect(),
    };
    let mut body = markdown(dir, &request, &state);
    if let Some(g) = &request.github {
        body.push_str(&format!("\nCloses #{}\n", g.number));
    }
    let base = gh.default_branch().await?;
    let pr = gh
        .open_pull_request(&branch, &base, &title, &body, draft)
        .await?;
    done.pull_request = Some(pr.clone());
    done.draft = draft;
    save(dir, &done)?;
    if let Some(g) = &request.github
        && !done.commented
    {
        let verdict = if draft {
            "a draft: not everything passed"
        } else {
            "all checks passed"
        };
        gh.comment(
            g.number,
            &format!(
                "autowrkers opened {} for this issue ({verdict}; cost ${:.4}; execution `{}`).",
                pr.url, o.cost.usd, state.id
            ),
        )
        .await?;
        done.commented = true;
        save(dir, &done)?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_as_git_expects_it() {
        assert_eq!(
            super::base64(b"x-access-token:abc"),
            "eC1hY2Nlc3MtdG9rZW46YWJj"
        );
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::base64(b"a"), "YQ==");
    }
}
