//! `workflow publish`: a completed execution to GitHub (push, pull request, issue comment),
//! and what `run --issue` does when its execution completes; `workflow fetch`, the way back;
//! and what a run tells GitHub Actions (the job summary, error annotations).

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
            if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
                println!(
                    "::error title=autowrkers publish::{}",
                    annotation(&e.to_string())
                );
            }
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

/// `workflow fetch`.
#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// Execution id or unique prefix (as published: its ref on the remote).
    pub id: String,
    /// The project (a clone of the repository it was published to).
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// The git remote to fetch from.
    #[arg(long, default_value = "origin")]
    pub remote: String,
}

/// Runs `workflow fetch`.
pub fn fetch(args: FetchArgs, home: Home) -> Result<u8> {
    let project = args.path.canonicalize()?;
    let dir = autowrkers::triggers::fetch::fetch(&home, &project, &args.id, &args.remote)?;
    let s = short(&dir.id()).to_owned();
    let status = dir.read_state()?.status;
    eprintln!(
        "fetched execution {} ({}) from {}; `autowrkers workflow status {s}` shows it, `autowrkers resume {s}` continues it",
        dir.id(),
        status.as_str(),
        args.remote
    );
    Ok(0)
}

/// In GitHub Actions: the run's report appended to the job summary (`GITHUB_STEP_SUMMARY`),
/// and an `::error::` annotation when it did not complete.
pub fn tell_github_actions(dir: &ExecutionDir) {
    let summary = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|f| !f.is_empty());
    let in_actions = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    // Outside GitHub Actions nothing is read: the execution's files are parsed only to tell it.
    if summary.is_none() && !in_actions {
        return;
    }
    let (Ok(request), Ok(state)) = (dir.read_request(), dir.read_state()) else {
        return;
    };
    if let Some(file) = summary {
        let md = autowrkers::triggers::report::markdown(dir, &request, &state);
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{md}\n").as_bytes()));
        if let Err(e) = appended {
            eprintln!("warning: cannot write the job summary: {e}");
        }
    }
    if in_actions && state.status != autowrkers::spec::WorkflowStatus::Completed {
        let message = format!("{}: {}", state.status.as_str(), state.message);
        println!(
            "::error title=autowrkers {}::{}",
            short(&state.id),
            annotation(&message)
        );
    }
}

/// A workflow command's message is one line: GitHub's escapes for `%` and line breaks.
fn annotation(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// `workflow address`.
#[derive(Debug, Clone, Args)]
pub struct AddressArgs {
    /// Execution id or unique prefix (a completed, published execution).
    pub id: String,
    /// The pull request (default: the one `workflow publish` opened).
    #[arg(long)]
    pub pr: Option<u64>,
    /// The project to look in first.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// The repository, OWNER/NAME (default: the one it was published to).
    #[arg(long)]
    pub repo: Option<String>,
    /// The git remote to push the result to.
    #[arg(long, default_value = "origin")]
    pub remote: String,
    /// Output.
    #[command(flatten)]
    pub output: super::output_args::OutputArgs,
}

/// Runs `workflow address`: the pull request's review comments and failed checks become one
/// more iteration of the execution, which is then published to the same branch.
pub async fn address(args: AddressArgs, home: Home) -> Result<u8> {
    use autowrkers::triggers::address::{feedback, reopen_with};
    use autowrkers::triggers::github::{GitHub, repository};
    let dir = store::find_execution(&home, Some(&args.path), &args.id)?;
    let engine = Engine::new(home)?;
    let done = autowrkers::triggers::publish::published(&dir).unwrap_or_default();
    let number = args
        .pr
        .or(done.pull_request.as_ref().map(|p| p.number))
        .ok_or_else(|| anyhow::anyhow!("execution {} has no pull request yet: `autowrkers workflow publish {}` opens one, or pass --pr N", short(&dir.id()), short(&dir.id())))?;
    let request = dir.read_request()?;
    let project = PathBuf::from(&request.project_path);
    let config = engine.project_config(&project)?;
    let repo = match (&args.repo, done.repo.is_empty(), &request.github) {
        (Some(r), _, _) => r.clone(),
        (None, false, _) => done.repo.clone(),
        (None, true, Some(g)) => g.repo.clone(),
        (None, true, None) => repository(&project, None, config.github_repo.as_deref())?,
    };
    let gh = GitHub::new(engine.http(), repo.clone());
    let report = feedback(&gh, number).await?;
    let iteration = reopen_with(&dir, &report, number)?;
    eprintln!(
        "{} finding(s) from pull request #{number}: iteration {iteration} addresses them",
        report.issues.len()
    );
    let code = super::drive::drive(&engine, &dir, &args.output).await?;
    tell_github_actions(&dir);
    if code != 0 {
        return Ok(code);
    }
    publish_and_say(&engine, &dir, Some(&repo), &args.remote, args.output.json).await
}
