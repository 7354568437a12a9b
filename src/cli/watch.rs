//! `watch`: the reconciler re-run on change, the task inbox and the triggers (see
//! `triggers::watch`), printing one line per action, or `--json` events.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use autowrkers::engine::Engine;
use autowrkers::store::Home;
use autowrkers::triggers::watch::{Watch, WatchError, WatchEvent};

/// `watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// A project to watch (repeatable; default: this folder).
    #[arg(long)]
    pub path: Vec<PathBuf>,
    /// One JSON event per line (`watch:…`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Help after the options.
pub const WATCH_HELP: &str = "\
It acts at once (after a quiet moment, watch.debounce_ms, 300 ms by default) on:
  - execution files: an edited or new execution.yaml or artifact is reconciled as
    `autowrkers reconcile` would;
  - the task inbox: a Markdown file dropped in .autowrkers/tasks/ becomes an execution (front
    matter: template, budget_limit, interactive_mode); the file records it (execution: <id>);
  - triggers: watch.triggers in .autowrkers/config.yaml start a pipeline when files matching
    their globs change (on_busy: queue, restart or skip);
  - templates and config: a broken edit is reported with file, line and column.
Ctrl-C stops watching; executions it started keep running. A second watcher on the same
project is refused.

Examples:
  autowrkers watch
  autowrkers watch --path ~/src/app --json";

/// Runs the command until Ctrl-C or SIGTERM.
pub async fn run(args: WatchArgs, home: Home) -> Result<u8> {
    let engine = Engine::new(home)?;
    let projects = if args.path.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.path
    };
    let json = args.json;
    let emit = move |e: &WatchEvent| {
        if json {
            if let Ok(line) = serde_json::to_string(e) {
                println!("{line}");
            }
        } else if matches!(e, WatchEvent::Error { .. }) {
            eprintln!("{e}");
        } else {
            println!("{e}");
        }
    };
    let (watch, endings) = match Watch::new(&engine, &projects, std::env::current_exe()?, emit) {
        Ok(w) => w,
        Err(e @ WatchError::Busy { .. }) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    watch.run(endings, stop).await?;
    Ok(0)
}
