//! `run` / `workflow start`: the arguments of starting an execution.

use std::path::PathBuf;

use clap::Args;

use autowrkers::spec::SandboxMode;

use super::args::parse_sandbox;
use super::output_args::OutputArgs;

/// `run` / `workflow start`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// The project directory.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// A known project by name (the last part of its path) instead of --path.
    #[arg(long)]
    pub project: Option<String>,
    /// What to do.
    #[arg(long, required_unless_present_any = ["analyze", "issue"])]
    pub task: Option<String>,
    /// Scan the project: the analyzer proposes tasks from its files, you choose, and each
    /// chosen task becomes its own execution (directory scan).
    #[arg(long, conflicts_with_all = ["task", "issue"])]
    pub analyze: bool,
    /// With --analyze: start the proposed tasks numbered so (`1,3`) without asking.
    #[arg(long, requires = "analyze", value_delimiter = ',')]
    pub pick: Vec<usize>,
    /// With --analyze: start the first N proposed tasks without asking.
    #[arg(long, requires = "analyze", conflicts_with = "pick")]
    pub max_tasks: Option<usize>,
    /// With --analyze: run up to K of the chosen tasks at once (default: one after another).
    #[arg(long, requires = "analyze", default_value_t = 1)]
    pub parallel: usize,
    /// Work on this GitHub issue (its title, body and comments are the task); when the run
    /// completes its branch is pushed, a pull request opened and the issue commented.
    /// GITHUB_TOKEN is used when set.
    #[arg(long, conflicts_with = "task")]
    pub issue: Option<u64>,
    /// The issue's repository, OWNER/NAME (default: `github_repo` in the project's config, or
    /// the github.com `origin` remote).
    #[arg(long, requires = "issue")]
    pub repo: Option<String>,
    /// Template id, name or YAML file (default: the project's, else the built-in pipeline).
    #[arg(long)]
    pub template: Option<String>,
    /// USD limit of this execution.
    #[arg(long)]
    pub budget: Option<f64>,
    /// Change the user's checkout instead of a worktree on a new branch.
    #[arg(long)]
    pub in_place: bool,
    /// Run without verification commands on purpose: the verifier passes with a note (without
    /// this, a project with no `verify:` commands and none detected is refused before any call).
    #[arg(long)]
    pub no_verify: bool,
    /// Start the implementer from HEAD plus your uncommitted work (tracked changes and untracked
    /// files git does not ignore), snapshotted without touching your index.
    #[arg(long, conflicts_with = "in_place")]
    pub include_uncommitted: bool,
    /// Sandbox of every command a model causes, for all phases: `read-only`,
    /// `workspace-write` or `full-access` (no sandbox). Default: per phase, `workspace-write`
    /// for the implementer and verifier, `read-only` for the others.
    #[arg(long, value_name = "MODE", value_parser = parse_sandbox)]
    pub sandbox: Option<SandboxMode>,
    /// Pause for approval between iterations (`iteration_behavior: configurable`).
    #[arg(long)]
    pub interactive: bool,
    /// Render every prompt and print a cost estimate per phase; call nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,
}
