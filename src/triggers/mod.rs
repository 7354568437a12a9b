//! How an execution's task is found (seed §2.1 trigger modes): a task given on the command line,
//! a directory scan (`--analyze`), or a GitHub issue (`--issue N`); and what starts executions
//! without a command per run: `pool` (runners at most N at a time, for `reconcile` and
//! `watch`), `inbox` (task files), `glob` (trigger paths) and `watch` (the loop).

pub mod glob;
pub mod inbox;
pub mod pool;
pub mod watch;
mod watch_event;

use std::path::{Path, PathBuf};

use crate::providers::http::Header;
use crate::providers::{HttpClient, ProviderError, Secret};
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
    /// The GitHub repository of the project is unknown.
    #[error(
        "cannot tell the project's GitHub repository: set `github_repo: owner/name` in .autowrkers/config.yaml"
    )]
    NoRepository,
    /// GitHub answered with an error.
    #[error("GitHub: {0}")]
    GitHub(#[from] ProviderError),
}

/// The known project whose folder is called `name` (or whose path is `name`).
pub fn project_by_name(home: &Home, name: &str) -> Result<PathBuf, TriggerError> {
    store::known_projects(home)?
        .into_iter()
        .find(|p| p.file_name().is_some_and(|f| f == name) || p.as_os_str() == name)
        .ok_or_else(|| TriggerError::UnknownProject(name.to_owned()))
}

/// `owner/name` from a GitHub remote URL (https or ssh).
fn repo_from_url(url: &str) -> Option<String> {
    let rest = url
        .split_once("github.com")?
        .1
        .trim_start_matches([':', '/']);
    let repo = rest.trim_end_matches('/').trim_end_matches(".git");
    (repo.split('/').count() == 2).then(|| repo.to_owned())
}

/// The issue `number` of the project's repository as a task: its title and body.
pub async fn github_issue(
    http: &HttpClient,
    project: &Path,
    configured: Option<&str>,
    number: u64,
) -> Result<String, TriggerError> {
    let repo = configured
        .map(str::to_owned)
        .or_else(|| {
            let repo = git2::Repository::open(project).ok()?;
            let remote = repo.find_remote("origin").ok()?;
            repo_from_url(remote.url()?)
        })
        .ok_or(TriggerError::NoRepository)?;
    let api =
        std::env::var("GITHUB_API_URL").unwrap_or_else(|_| "https://api.github.com".to_owned());
    let mut headers = vec![Header::Plain(
        "accept",
        "application/vnd.github+json".to_owned(),
    )];
    if let Some(token) = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty()) {
        let secret = Secret::new(token.clone());
        headers.push(Header::Secret(
            "authorization",
            format!("Bearer {token}"),
            secret,
        ));
    }
    let issue = http
        .get_json_with(
            &format!("{}/repos/{repo}/issues/{number}", api.trim_end_matches('/')),
            &headers,
        )
        .await?;
    let title = issue["title"].as_str().unwrap_or("(no title)");
    let body = issue["body"].as_str().unwrap_or("");
    Ok(format!("GitHub issue {repo}#{number}: {title}\n\n{body}")
        .trim_end()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::repo_from_url;

    #[test]
    fn repositories_from_remote_urls() {
        assert_eq!(
            repo_from_url("https://github.com/o/r.git").as_deref(),
            Some("o/r")
        );
        assert_eq!(
            repo_from_url("git@github.com:o/r.git").as_deref(),
            Some("o/r")
        );
        assert_eq!(repo_from_url("https://gitlab.com/o/r"), None);
    }
}
