//! The command line as clap types: raw, validated flags with no I/O. Handlers in the sibling
//! modules resolve them against files and the environment.

use std::path::PathBuf;

pub use super::output_args::{ColorChoice, OutputArgs};
pub use super::start_args::StartArgs;
use autowrkers::spec::SandboxMode;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// `--status` values: the names `state.json` uses.
fn parse_status(s: &str) -> Result<String, String> {
    let all = autowrkers::spec::WorkflowStatus::ALL;
    if all.iter().any(|st| st.as_str() == s) {
        Ok(s.to_owned())
    } else {
        let names: Vec<&str> = all.iter().map(|st| st.as_str()).collect();
        Err(format!(
            "`{s}` is not a status: use one of {}",
            names.join(", ")
        ))
    }
}

/// `--sandbox` values: the template's spelling, so one word works in both places.
pub(super) fn parse_sandbox(s: &str) -> Result<SandboxMode, String> {
    match s {
        "read-only" => Ok(SandboxMode::ReadOnly),
        "workspace-write" => Ok(SandboxMode::WorkspaceWrite),
        "full-access" => Ok(SandboxMode::FullAccess),
        other => Err(format!(
            "`{other}` is not a sandbox mode: use read-only, workspace-write or full-access"
        )),
    }
}

const AFTER_HELP: &str = "\
Examples:
  autowrkers init                          # once per repository: template and verify commands
  autowrkers run --path . --task \"Add a --verbose flag\" --template openai-only
  autowrkers workflow status 3f2a          # ids accept unique prefixes, like git
  autowrkers resume 3f2a                   # after Ctrl-C or a crash: only stale phases run
  autowrkers template validate my.yaml     # file, line and column of every problem

Exit codes: 0 completed, 1 failed or cancelled, 2 usage or validation error,
3 budget exceeded, 4 paused or awaiting approval, 130 interrupted.
Files: ~/.autowrkers (or AUTOWRKERS_HOME) and <project>/.autowrkers.";

const WORKFLOW_HELP: &str = "\
Examples:
  autowrkers wf status 3f2a                         # ids accept unique prefixes
  autowrkers wf pause 3f2a   /   autowrkers resume 3f2a
  autowrkers wf logs 3f2a --follow                  # reattach to a running execution
  autowrkers wf artifact edit 3f2a phase-analysis   # then `resume` re-runs its readers";

const RUN_HELP: &str = "\
Examples:
  autowrkers run --task \"Add a --verbose flag\" --template openai-only
  autowrkers run --analyze                          # the analyzer picks the change
  autowrkers run --issue 42 --budget 5              # a GitHub issue, at most $5
  autowrkers run --task \"…\" --dry-run             # prompts and a cost estimate, no call
  autowrkers run --task \"…\" --json > events.ndjson   # CI: one event per line

On a terminal the live view shows the run: q detaches, p pauses, s skips the running phase,
e expands its output. Exit codes: 0 completed, 1 failed, 2 invalid input, 3 budget exceeded,
4 paused or awaiting approval, 130 interrupted.";

const INIT_HELP: &str = "\
Examples:
  autowrkers init                      # in your repository; prints what it found
  autowrkers init --path ../app --force # write the file again

It picks the first built-in template whose keys, agent CLIs or local server are present
(default_pipeline, openai-only, ollama-local), and the lint/test/build commands of the
project's Cargo.toml, package.json, pyproject.toml or Makefile.";

/// `init`'s flags.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project (a git repository).
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// Overwrite an existing .autowrkers/config.yaml.
    #[arg(long)]
    pub force: bool,
}

/// Several LLMs and coding agents working on one code change together.
#[derive(Debug, Parser)]
#[command(name = "autowrkers", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a workflow on a project (alias of `workflow start`).
    #[command(after_help = RUN_HELP)]
    Run(StartArgs),
    /// Write .autowrkers/config.yaml here: a default template this machine can run, and the
    /// verification commands found in the project.
    #[command(after_help = INIT_HELP)]
    Init(InitArgs),
    /// Continue an execution: only phases that are not up to date run.
    Resume(IdArgs),
    /// Executions: start, inspect, control.
    #[command(subcommand, visible_alias = "wf", after_help = WORKFLOW_HELP)]
    Workflow(WorkflowCommand),
    /// Workflow templates: list, show, create, edit, validate, test, import, export, set-default.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Providers: keys, connectivity, local models.
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// Budgets and the cost ledger.
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Write the JSON Schemas of templates, configs and artifacts (for editors and CI).
    Schema(SchemaArgs),
    /// The web dashboard, the REST API and the event WebSocket over the same files.
    #[command(after_help = super::serve::SERVE_HELP)]
    Serve(super::serve::ServeArgs),
    /// One pass: every execution whose files ask for something its state does not show yet
    /// gets a runner (new, interrupted, edited, paused, cancelled, approved, stale).
    #[command(after_help = super::reconcile::RECONCILE_HELP)]
    Reconcile(super::reconcile::ReconcileArgs),
    /// Reconcile on every change: edited execution files, the task inbox, triggers.
    #[command(after_help = super::watch::WATCH_HELP)]
    Watch(super::watch::WatchArgs),
    /// Print a shell completion script: `autowrkers completions bash > …`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// True for the commands that keep running and serve many executions or clients at once
    /// (`serve`, `watch`, `reconcile`): they get a worker thread per core. Every other command
    /// drives one execution or one lookup, whose work is waiting on files, sockets and child
    /// processes: one thread runs it with no hand-offs between threads (a 6-phase run measured
    /// 0.90× the wall time of the multi-threaded runtime).
    pub fn serves_many(&self) -> bool {
        matches!(self, Self::Serve(_) | Self::Watch(_) | Self::Reconcile(_))
    }
}

/// Which budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// Every project together, per calendar month.
    Global,
    /// One project, per calendar month.
    Project,
    /// One execution.
    Execution,
}

/// `budget …`.
#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Per scope: limit, spent, reserved, left, period.
    Status {
        /// The project (its budget and executions are shown).
        #[arg(long, default_value = ".")]
        path: PathBuf,
        /// One JSON object per scope.
        #[arg(long)]
        json: bool,
    },
    /// Set a limit in USD (`--limit 0` removes it).
    Set {
        /// Which budget.
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// Project path or execution id (default: the project at --path).
        #[arg(long)]
        id: Option<String>,
        /// USD.
        #[arg(long)]
        limit: f64,
        /// The project.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Start counting a global or project budget from zero for the rest of this month.
    Reset {
        /// Which budget.
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// Project path (default: the project at --path).
        #[arg(long)]
        id: Option<String>,
        /// The project.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Spending per day, provider and model, from the ledger.
    History {
        /// How many days back.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// One JSON object per row.
        #[arg(long)]
        json: bool,
    },
}

/// `provider …`.
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Every provider: whether its key is set and where from (never the key), and its URL.
    List,
    /// Store API keys in ~/.autowrkers/provider_keys.age (asks with hidden input).
    Setup {
        /// One provider (default: each provider that takes a key).
        provider: Option<String>,
        /// Read the key from the first line of stdin instead of asking.
        #[arg(long)]
        key_stdin: bool,
    },
    /// Make one cheap call and report latency and the model that served it.
    Test {
        /// The provider.
        provider: String,
        /// Model to ask (default: a cheap one of the provider, or the first detected).
        #[arg(long)]
        model: Option<String>,
        /// Base URL override (for an agent CLI: the path of its binary).
        #[arg(long)]
        url: Option<String>,
    },
    /// Ask a local server (ollama, lm_studio) which models it has, and cache the answer.
    Detect {
        /// `ollama` or `lm_studio`.
        provider: String,
        /// Base URL override.
        #[arg(long)]
        url: Option<String>,
    },
    /// The cached models of a provider (from `provider detect`).
    Models {
        /// The provider.
        provider: String,
    },
}

/// `workflow …`.
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Start a workflow on a project.
    Start(StartArgs),
    /// Show an execution: phases, iteration, tokens, cost, artifacts.
    Status(StatusArgs),
    /// List executions of this project and every known project.
    List(ListArgs),
    /// Continue an execution (same as `autowrkers resume`).
    Resume(IdArgs),
    /// Ask the runner to stop at the next safe point.
    Pause(IdArgs),
    /// Stop an execution for good.
    Cancel(IdArgs),
    /// Skip the running phase (or `--phase`), if it may be skipped.
    SkipPhase(SkipArgs),
    /// Approve the iteration awaiting approval and continue.
    Approve(IdArgs),
    /// Reject the iteration awaiting approval: the execution fails.
    Reject(IdArgs),
    /// Print the phase logs of an execution.
    Logs(LogsArgs),
    /// List the artifacts of an execution.
    Artifacts(IdArgs),
    /// View, edit or export one artifact.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// Remove an execution: its worktree, ref and folder (and with --branch its result branch).
    Delete(DeleteArgs),
    /// Remove ended executions (completed, failed, cancelled) older than --older-than.
    Clean(CleanArgs),
    /// Push a completed execution's branch and ref, open its pull request, comment its issue
    /// (again: only what is missing).
    Publish(super::publish::PublishArgs),
    /// Bring a published execution (its ref and branch) from a remote into this checkout.
    Fetch(super::publish::FetchArgs),
    /// Feed a pull request's review comments and failed checks back: one more iteration of
    /// the execution, pushed to the same branch.
    Address(super::publish::AddressArgs),
}

/// `workflow artifact …`; ARTIFACT is `<iteration>/<phase-id>`, or a phase id for its latest.
#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Pretty-print an artifact (colour on a terminal).
    View {
        /// Execution id or unique prefix.
        id: String,
        /// `<iteration>/<phase-id>` or `<phase-id>`.
        artifact: String,
        /// The project to look in first.
        #[arg(long, default_value = ".")]
        path: PathBuf,
        /// When to use colour.
        #[arg(long, value_enum, default_value = "auto")]
        color: ColorChoice,
    },
    /// Open an artifact in $EDITOR; JSON artifacts are checked against their schema on save.
    Edit {
        /// Execution id or unique prefix.
        id: String,
        /// `<iteration>/<phase-id>` or `<phase-id>`.
        artifact: String,
        /// The project to look in first.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Write an artifact to a file (or stdout).
    Export {
        /// Execution id or unique prefix.
        id: String,
        /// `<iteration>/<phase-id>` or `<phase-id>`.
        artifact: String,
        /// The project to look in first.
        #[arg(long, default_value = ".")]
        path: PathBuf,
        /// Output file (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// `template …`.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Check template files against the schema and the rules; exit 2 on any problem.
    Validate {
        /// Template files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The project whose prompt overrides apply.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// List the templates this project can use.
    List {
        /// Only global templates.
        #[arg(long)]
        global: bool,
        /// Only project templates.
        #[arg(long)]
        project: bool,
        /// The project.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Create a template from another (default: the built-in pipeline).
    Create {
        /// Name of the new template (its id is made from it).
        #[arg(long)]
        name: String,
        /// Template to copy: id, name or file.
        #[arg(long)]
        from: Option<String>,
        /// Create it in ~/.autowrkers/workflow_templates instead of the project.
        #[arg(long)]
        global: bool,
        /// The project.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Open a template file in $EDITOR; it is validated on save.
    Edit {
        /// Id or name.
        template: String,
        /// The project.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Delete a project or global template file.
    Delete {
        /// Id or name.
        template: String,
        /// The project.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Write a template as YAML to a file (or stdout).
    Export {
        /// Id, name or file.
        template: String,
        /// Output file.
        #[arg(long)]
        output: Option<PathBuf>,
        /// The project.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Validate a template file and copy it into the project (default) or global templates.
    Import {
        /// The YAML file.
        file: PathBuf,
        /// Into ~/.autowrkers/workflow_templates.
        #[arg(long, conflicts_with = "project")]
        global: bool,
        /// Into <project>/.autowrkers/templates (the default).
        #[arg(long)]
        project: bool,
        /// The project.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Make a template the default of the project (or, with --global, of every project).
    SetDefault {
        /// Id or name.
        template: String,
        /// Set it in ~/.autowrkers/config.yaml.
        #[arg(long)]
        global: bool,
        /// The project.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Run a template's whole control flow with scripted replies, at $0, in a temp copy of the
    /// project, and print the path taken.
    Test {
        /// The template file.
        file: PathBuf,
        /// Replies of the scripted provider (see the book: providers).
        #[arg(long)]
        script: PathBuf,
        /// The project to copy.
        #[arg(long, default_value = ".")]
        path: PathBuf,
        /// The task to give.
        #[arg(long, default_value = "Test the template's control flow")]
        task: String,
    },
    /// Print a template as YAML.
    Show {
        /// Id, name or file.
        template: String,
        /// The project.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
}

/// Commands that take one execution id.
#[derive(Debug, Clone, Args)]
pub struct IdArgs {
    /// Execution id or unique prefix.
    pub id: String,
    /// The project to look in first.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `workflow skip-phase`.
#[derive(Debug, Clone, Args)]
pub struct SkipArgs {
    /// Execution id or unique prefix.
    pub id: String,
    /// Phase id or name (default: the running phases).
    #[arg(long)]
    pub phase: Option<String>,
    /// The project to look in first.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
}

/// `workflow status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Execution id or unique prefix (default: the newest of this project).
    pub id: Option<String>,
    /// The project to look in first.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// Print the result object, execution.yaml and state.json as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// `workflow list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only executions with this status (pending, running, paused, awaiting_approval,
    /// completed, failed, cancelled, budget_exceeded).
    #[arg(long, value_parser = parse_status)]
    pub status: Option<String>,
    /// The project to list first.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// At most this many rows, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Every execution (no limit).
    #[arg(long)]
    pub all: bool,
}

/// `workflow delete`.
#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// Execution id or unique prefix.
    pub id: String,
    /// Delete its result branch too.
    #[arg(long)]
    pub branch: bool,
    /// The project to look in first.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
}

/// `workflow clean`.
#[derive(Debug, Clone, Args)]
pub struct CleanArgs {
    /// Only executions that ended at least this long ago: `7d`, `12h`, `0d` for all.
    #[arg(long, default_value = "7d", value_parser = parse_age)]
    pub older_than: chrono::Duration,
    /// Delete their result branches too.
    #[arg(long)]
    pub branches: bool,
    /// The project.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
}

/// `7d`, `12h`, `30m`.
fn parse_age(s: &str) -> Result<chrono::Duration, String> {
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .map_err(|_| format!("`{s}`: give a number and d, h or m, like 7d"))?;
    match unit {
        "d" => Ok(chrono::Duration::days(n)),
        "h" => Ok(chrono::Duration::hours(n)),
        "m" => Ok(chrono::Duration::minutes(n)),
        _ => Err(format!("`{s}`: give a number and d, h or m, like 7d")),
    }
}

/// `workflow logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Execution id or unique prefix.
    pub id: String,
    /// Keep printing new output until the execution stops (reattaches to a running one).
    #[arg(long, short)]
    pub follow: bool,
    /// Only this phase (id or name).
    #[arg(long)]
    pub phase: Option<String>,
    /// The project to look in first.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
}

/// `schema`.
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// Folder to write the schemas to.
    #[arg(long, default_value = "schemas")]
    pub out: PathBuf,
    /// Only check that the files in --out are current; exit 1 when not.
    #[arg(long)]
    pub check: bool,
}
