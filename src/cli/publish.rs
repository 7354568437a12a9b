//! `workflow publish`: a completed execution to GitHub (push, pull request, issue comment),
//! and what `run --issue` does when its execution completes.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use autowrkers::engine::{Engine, short};
use autowrkers::store::{self, ExecutionDir, Home};
use autowrkers::triggers::publish::{Published, publish};

/// `workflow publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Execution id or unique prefix.
    pub id: String,
    /// The project to look in first.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// The repository, OWNER/NAME (default: the issue's, `github_repo`, or the origin remote).
    #[arg(long)]
    pub repo: Option<String>,
    /// The git remote to push to.
    #[arg(long, default_value = "origin")]
    pub remote: String,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Says what was published; `json` prints a `workflow:published` object.
pub fn say(dir: &ExecutionDir, p: &Published, json: bool) {
    if json {
        let mut v = serde_json::to_value(p).unwrap_or_default();
        v["type"] = "workflow:published".into();
        v["execution_id"] = dir.id().into();
        println!("{v}");
        return;
    }
    if let Some(pr) = &p.pull_request {
        let draft = if p.draft {
            " (draft: not everything passed)"
        } else {
            ""
        };
        eprintln!("pull request #{}{draft}: {}", pr.number, pr.url);
    }
    if p.commented {
        eprintln!("the issue links it");
    }
}

/// Publishes `dir` and says so; an error is said with the command that retries it. Returns
/// the exit code (0 published, 1 not).
pub async fn publish_and_say(
    engine: &Engine,
    dir: &ExecutionDir,
    repo: Option<&str>,
    remote: &str,
    json: bool,
) -> Result<u8> {
    let project = dir.project().map(|p| p.to_path_buf()).unwrap_or_default();
    let config = engine.project_config(&project)?;
    match publish(
        dir,
        engine.http(),
        repo,
        config.github_repo.as_deref(),
        remote,
    )
    .await
    {
        Ok(p) => {
            say(dir, &p, json);
            Ok(0)
        }
        Err(e) => {
            eprintln!(
                "error: not published: {e}\nthe execution stays completed, its branch local; `autowrkers workflow publish {}` retries",
                short(&dir.id())
            );
            Ok(1)
        }
    }
}

/// Runs `workflow publish`.
pub async fn run(args: PublishArgs, home: Home) -> Result<u8> {
    let dir = store::find_execution(&home, Some(&args.path), &args.id)?;
    let engine = Engine::new(home)?;
    publish_and_say(&engine, &dir, args.repo.as_deref(), &args.remote, args.json).await
}
