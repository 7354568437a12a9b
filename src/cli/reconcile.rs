//! `reconcile`: one pass over a project's executions — each whose files ask for something its
//! state does not show yet gets a runner (at most `max_parallel_executions` at once), and the
//! command waits for them, one line each. For CI jobs and cron.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use autowrkers::engine::{Engine, Need, short};
use autowrkers::spec::WorkflowStatus;
use autowrkers::store::{self, ExecutionDir, Home};
use autowrkers::triggers::pool::{Endings, RunnerPool};

/// `reconcile`.
#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// The project.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// Say what would be done and why; change and call nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Start the runners and return without waiting for them.
    #[arg(long)]
    pub detach: bool,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Help after the options.
pub const RECONCILE_HELP: &str = "\
What it acts on: a hand-written execution.yaml (no state.json yet) starts; a pause or cancel
written into execution.yaml applies; a withdrawn pause, an approval decision or a raised budget
continues the run; an interrupted run (running, no runner) resumes; a completed execution whose
artifacts were edited, or whose template/prompts changed, re-runs what is stale. Invalid files
are reported with file, line and column and skipped.

Exit codes: 0 every execution acted on ended well (or is waiting for approval or paused, as
asked), 1 one failed or a file is invalid, 2 usage.

Examples:
  autowrkers reconcile --dry-run
  autowrkers reconcile --path ~/src/app --json
  autowrkers reconcile --detach";

/// What the plan found for one execution.
pub struct Planned {
    /// The execution.
    pub dir: ExecutionDir,
    /// Why it needs a runner.
    pub need: Need,
}

/// Every execution of `project` that needs a runner, and the files that could not be read
/// (reported, not fatal).
pub fn plan(engine: &Engine, project: &std::path::Path) -> (Vec<Planned>, Vec<String>) {
    let mut planned = Vec::new();
    let mut bad = Vec::new();
    for dir in store::executions_of(project) {
        match engine.need(&dir) {
            Ok(Some(need)) => planned.push(Planned { dir, need }),
            Ok(None) => {}
            Err(e) => bad.push(format!("{}: {e}", short(&dir.id()))),
        }
    }
    (planned, bad)
}

fn say(json: bool, id: &str, what: &str, detail: &str) {
    if json {
        println!(
            "{}",
            json!({"type": format!("reconcile:{what}"), "execution_id": id, "detail": detail})
        );
    } else {
        println!("{}  {what:<8} {detail}", short(id));
    }
}

/// Waits until every execution of `dirs` is held by its runner or its runner has ended; woken
/// by the runners' lock files changing (and their ends), with a bound in case neither comes.
async fn until_started(dirs: &[ExecutionDir], endings: &mut Endings) {
    use notify::Watcher;
    let (tx, mut changed) = tokio::sync::mpsc::unbounded_channel();
    let Ok(mut watcher) = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        let _ = tx.send(());
    }) else {
        return;
    };
    for d in dirs {
        let _ = watcher.watch(d.root(), notify::RecursiveMode::NonRecursive);
    }
    let mut ended = std::collections::HashSet::new();
    let bound = tokio::time::sleep(std::time::Duration::from_secs(30));
    tokio::pin!(bound);
    while !dirs
        .iter()
        .all(|d| ended.contains(&d.id()) || store::runner_alive(d))
    {
        tokio::select! {
            _ = changed.recv() => {}
            Some((dir, _)) = endings.next() => { ended.insert(dir.id()); }
            () = &mut bound => return,
        }
    }
}

/// Runs the command.
pub async fn run(args: ReconcileArgs, home: Home) -> Result<u8> {
    let project = args
        .path
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("no such project directory {}: {e}", args.path.display()))?;
    let engine = Engine::new(home)?;
    let config = engine.project_config(&project)?;
    let (planned, bad) = plan(&engine, &project);
    for b in &bad {
        if args.json {
            println!("{}", json!({"type": "reconcile:invalid", "detail": b}));
        } else {
            eprintln!("invalid, skipped: {b}");
        }
    }
    if planned.is_empty() && !args.json {
        eprintln!("nothing to do: every execution is as its files ask");
    }
    if args.dry_run {
        for p in &planned {
            say(args.json, &p.dir.id(), "would", &p.need.describe());
        }
        return Ok(0);
    }
    let cap = config.max_parallel_executions.unwrap_or(2) as usize;
    let cap = if args.detach { usize::MAX } else { cap };
    let (mut pool, mut endings) = RunnerPool::new(std::env::current_exe()?, cap);
    let mut failed = !bad.is_empty();
    for p in &planned {
        if let Err(e) = engine
            .ready_for(&p.dir, &p.need)
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(pool.submit(p.dir.clone())?))
        {
            say(args.json, &p.dir.id(), "error", &format!("{e:#}"));
            failed = true;
            continue;
        }
        say(args.json, &p.dir.id(), "start", &p.need.describe());
    }
    if args.detach {
        // Returned once each runner holds its execution (or has ended), so a command run next
        // (`workflow logs --follow`, `workflow status`) sees it running, not interrupted.
        let dirs: Vec<ExecutionDir> = planned.iter().map(|p| p.dir.clone()).collect();
        until_started(&dirs, &mut endings).await;
        return Ok(u8::from(failed));
    }
    while let Some(done) = pool.next_finished(&mut endings).await {
        let state = done.dir.read_state();
        let status = state.as_ref().map(|s| s.status).ok();
        let ended = match (&status, done.code) {
            (Some(s), _) => s.as_str().to_owned(),
            (None, code) => format!("runner exited {code:?}"),
        };
        if matches!(status, Some(WorkflowStatus::Failed) | None) || done.code.is_none() {
            failed = true;
        }
        let message = state.map(|s| s.message).unwrap_or_default();
        let detail = if message.is_empty() {
            ended.clone()
        } else {
            format!("{ended}: {message}")
        };
        say(args.json, &done.dir.id(), "ended", &detail);
    }
    Ok(u8::from(failed))
}
