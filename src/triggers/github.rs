//! The GitHub REST API, as much as the issue → pull request round trip needs: the issue and
//! its comments as a task, the repository's default branch, opening (or finding) a pull
//! request, commenting on the issue. `GITHUB_API_URL` points it at GitHub Enterprise (and at a
//! fake server in tests); `GITHUB_TOKEN` authenticates and never appears in an error.

use std::path::Path;

use serde_json::{Value, json};

use crate::providers::{HttpClient, Secret};

/// Why GitHub could not be used; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// No `owner/name` could be found for the project.
    #[error(
        "cannot tell the project's GitHub repository: pass --repo OWNER/NAME, set `github_repo: owner/name` in .autowrkers/config.yaml, or add a github.com `origin` remote"
    )]
    NoRepository,
    /// The token is missing or refused.
    #[error(
        "GitHub refused the request ({status}) for {what}: set GITHUB_TOKEN to a token that can {need} in {repo}"
    )]
    Auth {
        /// 401 or 403.
        status: u16,
        /// What was asked.
        what: String,
        /// The repository.
        repo: String,
        /// What the token must be allowed.
        need: &'static str,
    },
    /// Not found (a wrong repository or number, or a private repository the token cannot see).
    #[error(
        "GitHub has no {what} (404): check the repository `{repo}` (--repo) and the number, and that GITHUB_TOKEN can see it"
    )]
    NotFound {
        /// What was asked.
        what: String,
        /// The repository.
        repo: String,
    },
    /// Any other refusal, with GitHub's words.
    #[error("GitHub refused {what} ({status}): {message}")]
    Refused {
        /// What was asked.
        what: String,
        /// The status.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// GitHub could not be reached.
    #[error("cannot reach GitHub at {api}: {message}")]
    Unreachable {
        /// The API base URL.
        api: String,
        /// Why.
        message: String,
    },
}

/// `owner/name` from a GitHub remote URL (https or ssh).
pub fn repo_from_url(url: &str) -> Option<String> {
    let rest = url
        .split_once("github.com")?
        .1
        .trim_start_matches([':', '/']);
    let repo = rest.trim_end_matches('/').trim_end_matches(".git");
    (repo.split('/').count() == 2).then(|| repo.to_owned())
}

/// The repository: `explicit` (`--repo`), else the project's `github_repo`, else its `origin`.
pub fn repository(
    project: &Path,
    explicit: Option<&str>,
    configured: Option<&str>,
) -> Result<String, GitHubError> {
    explicit
        .or(configured)
        .map(str::to_owned)
        .or_else(|| {
            let repo = git2::Repository::open(project).ok()?;
            let remote = repo.find_remote("origin").ok()?;
            repo_from_url(remote.url()?)
        })
        .ok_or(GitHubError::NoRepository)
}

/// A pull request: its number and address.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PullRequest {
    /// Its number.
    pub number: u64,
    /// Its page.
    pub url: String,
}

/// One repository of the API.
pub struct GitHub<'a> {
    http: &'a HttpClient,
    api: String,
    repo: String,
    token: Option<Secret>,
}

impl<'a> GitHub<'a> {
    /// The repository `repo` through `GITHUB_API_URL` (default `https://api.github.com`) with
    /// `GITHUB_TOKEN`, if set.
    pub fn new(http: &'a HttpClient, repo: String) -> Self {
        let api = std::env::var("GITHUB_API_URL")
            .unwrap_or_else(|_| "https://api.github.com".to_owned())
            .trim_end_matches('/')
            .to_owned();
        let token = std::env::var("GITHUB_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        Self {
            http,
            api,
            repo,
            token,
        }
    }

    /// `owner/name`.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// Sends one request; 2xx answers are parsed as JSON (`Null` when empty).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        what: &str,
        need: &'static str,
    ) -> Result<Value, GitHubError> {
        let client = self.http.raw().map_err(|e| GitHubError::Unreachable {
            api: self.api.clone(),
            message: e.to_string(),
        })?;
        let mut req = client
            .request(method, format!("{}/repos/{}{path}", self.api, self.repo))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let scrub = |text: String| match &self.token {
            Some(t) => t.redact(&text),
            None => text,
        };
        let res = req.send().await.map_err(|e| GitHubError::Unreachable {
            api: self.api.clone(),
            message: scrub(e.without_url().to_string()),
        })?;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        let what = what.to_owned();
        match status {
            200..=299 if text.trim().is_empty() => Ok(Value::Null),
            200..=299 => serde_json::from_str(&text).map_err(|e| GitHubError::Refused {
                what,
                status,
                message: format!("not JSON: {e}"),
            }),
            401 | 403 => Err(GitHubError::Auth {
                status,
                what,
                repo: self.repo.clone(),
                need,
            }),
            404 => Err(GitHubError::NotFound {
                what,
                repo: self.repo.clone(),
            }),
            _ => {
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .map(|v| describe(&v))
                    .unwrap_or_else(|| scrub(text.chars().take(300).collect()));
                Err(GitHubError::Refused {
                    what,
                    status,
                    message,
                })
            }
        }
    }

    /// GETs `path` of the repository (`what` names it in errors).
    pub async fn get(&self, path: &str, what: &str) -> Result<Value, GitHubError> {
        self.call(reqwest::Method::GET, path, None, what, "read pull requests")
            .await
    }

    /// Issue `number` as a task: its title, body and comments.
    pub async fn issue_task(&self, number: u64) -> Result<String, GitHubError> {
        let what = format!("issue #{number}");
        let get = reqwest::Method::GET;
        let issue = self
            .call(
                get.clone(),
                &format!("/issues/{number}"),
                None,
                &what,
                "read issues",
            )
            .await?;
        let comments = self
            .call(
                get,
                &format!("/issues/{number}/comments"),
                None,
                &what,
                "read issues",
            )
            .await?;
        let title = issue["title"].as_str().unwrap_or("(no title)");
        let body = issue["body"].as_str().unwrap_or("");
        let mut task = format!("GitHub issue {}#{number}: {title}\n\n{body}", self.repo);
        for c in comments.as_array().into_iter().flatten() {
            let who = c["user"]["login"].as_str().unwrap_or("someone");
            let text = c["body"].as_str().unwrap_or("");
            task.push_str(&format!("\n\nComment by {who}:\n{text}"));
        }
        Ok(task.trim_end().to_owned())
    }

    /// The repository's default branch (the base of pull requests).
    pub async fn default_branch(&self) -> Result<String, GitHubError> {
        let repo = self
            .call(reqwest::Method::GET, "", None, "the repository", "read it")
            .await?;
        Ok(repo["default_branch"].as_str().unwrap_or("main").to_owned())
    }

    /// Opens a pull request of `head` into `base`; when one is open for `head` already, that
    /// one is returned (its body updated).
    pub async fn open_pull_request(
        &self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
        draft: bool,
    ) -> Result<PullRequest, GitHubError> {
        let want =
            json!({"title": title, "head": head, "base": base, "body": body, "draft": draft});
        let need = "open pull requests";
        match self
            .call(
                reqwest::Method::POST,
                "/pulls",
                Some(want),
                "a pull request",
                need,
            )
            .await
        {
            Ok(pr) => Ok(pull_request(&pr)),
            Err(GitHubError::Refused {
                status: 422,
                message,
                ..
            }) if message.contains("already exists") => {
                let owner = self.repo.split('/').next().unwrap_or("");
                let open = self
                    .call(
                        reqwest::Method::GET,
                        &format!("/pulls?state=open&head={owner}:{head}"),
                        None,
                        "the open pull request",
                        need,
                    )
                    .await?;
                let pr = open
                    .as_array()
                    .and_then(|a| a.first())
                    .map(pull_request)
                    .ok_or(GitHubError::Refused {
                        what: "a pull request".into(),
                        status: 422,
                        message,
                    })?;
                self.call(
                    reqwest::Method::PATCH,
                    &format!("/pulls/{}", pr.number),
                    Some(json!({"body": body})),
                    "the pull request",
                    need,
                )
                .await?;
                Ok(pr)
            }
            Err(e) => Err(e),
        }
    }

    /// Comments `body` on issue `number`.
    pub async fn comment(&self, number: u64, body: &str) -> Result<(), GitHubError> {
        self.call(
            reqwest::Method::POST,
            &format!("/issues/{number}/comments"),
            Some(json!({"body": body})),
            &format!("a comment on issue #{number}"),
            "write issues",
        )
        .await
        .map(|_| ())
    }
}

fn pull_request(v: &Value) -> PullRequest {
    PullRequest {
        number: v["number"].as_u64().unwrap_or(0),
        url: v["html_url"].as_str().unwrap_or("").to_owned(),
    }
}

/// GitHub's error document as one line: its message and each error's.
fn describe(v: &Value) -> String {
    let mut out = v["message"].as_str().unwrap_or("").to_owned();
    for e in v["errors"].as_array().into_iter().flatten() {
        let m = e["message"].as_str().or_else(|| e.as_str()).unwrap_or("");
        if !m.is_empty() {
            out.push_str(&format!("; {m}"));
        }
    }
    out
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
