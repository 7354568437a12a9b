//! Workflow templates: the seed's vocabulary as serde + schemars types.
//!
//! A template is what a user edits in their editor; `schemas/workflow_template.schema.json` is
//! generated from these types, so a field added here is a field the editor completes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How an execution was started (seed §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerMode {
    /// Started from a GitHub issue.
    GithubIssue,
    /// Started from a task written on the command line or in a task file.
    ManualTask,
    /// Started by scanning a directory for work.
    DirectoryScan,
}

/// What a phase does in the pipeline; decides its tools and its prompt's intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseRole {
    /// Explores the codebase and writes a task list.
    Analyzer,
    /// Writes an implementation plan or codebase documentation.
    Planner,
    /// Changes the code; the only role with edit and command tools.
    Implementer,
    /// Judges the change for functional correctness.
    ReviewerFunctional,
    /// Judges the change for style and patterns.
    ReviewerStyle,
    /// Judges the change for security.
    ReviewerSecurity,
    /// A user-defined review.
    ReviewerCustom,
    /// Runs lint, test and build commands; no LLM.
    Verifier,
}

impl PhaseRole {
    /// True for the four reviewer roles, whose `approved: false` starts another iteration.
    pub fn is_reviewer(self) -> bool {
        matches!(
            self,
            Self::ReviewerFunctional
                | Self::ReviewerStyle
                | Self::ReviewerSecurity
                | Self::ReviewerCustom
        )
    }

    /// The role's name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Analyzer => "analyzer",
            Self::Planner => "planner",
            Self::Implementer => "implementer",
            Self::ReviewerFunctional => "reviewer_functional",
            Self::ReviewerStyle => "reviewer_style",
            Self::ReviewerSecurity => "reviewer_security",
            Self::ReviewerCustom => "reviewer_custom",
            Self::Verifier => "verifier",
        }
    }
}

/// The status of one phase run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    /// Not started.
    Pending,
    /// Started and not finished (or interrupted, when no runner holds the lock).
    Running,
    /// Stopped by a pause request.
    Paused,
    /// Finished with an accepted output.
    Completed,
    /// Finished without an accepted output.
    Failed,
    /// Skipped by request or by `failure_behavior: skip_phase`.
    Skipped,
}

/// The status of a whole execution; transitions follow the seed's Appendix B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    /// Written, not yet reconciled.
    Pending,
    /// A runner is (or was, if interrupted) working on it.
    Running,
    /// Stopped at a safe point by a pause request.
    Paused,
    /// An iteration ended with feedback; waits for `workflow approve|reject`.
    AwaitingApproval,
    /// Every review approved and the verifier passed.
    Completed,
    /// A phase failed, a review was rejected, or iterations ran out.
    Failed,
    /// Stopped by a cancel request.
    Cancelled,
    /// The next call would not fit the budget.
    BudgetExceeded,
}

impl WorkflowStatus {
    /// Every status, in the order of the seed's lifecycle.
    pub const ALL: [WorkflowStatus; 8] = [
        Self::Pending,
        Self::Running,
        Self::Paused,
        Self::AwaitingApproval,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::BudgetExceeded,
    ];

    /// True when no reconciling will change the status any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The status as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::BudgetExceeded => "budget_exceeded",
        }
    }
}

/// The kind of output a phase produces; JSON kinds are validated against their schema.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactType {
    /// JSON task list written by the analyzer.
    TaskList,
    /// Markdown documentation of the codebase.
    CodebaseDocs,
    /// Markdown implementation plan.
    ImplementationPlan,
    /// Unified diff from the base commit, computed by the runner, never by a model.
    CodeDiff,
    /// JSON review report with `approved`.
    ReviewReport,
    /// JSON report of the verifier's commands.
    VerificationReport,
    /// Free-form Markdown.
    Custom,
}

impl ArtifactType {
    /// Every artifact type, in declaration order.
    pub const ALL: [ArtifactType; 7] = [
        Self::TaskList,
        Self::CodebaseDocs,
        Self::ImplementationPlan,
        Self::CodeDiff,
        Self::ReviewReport,
        Self::VerificationReport,
        Self::Custom,
    ];

    /// The name used in YAML and in prompts (`{{ artifact:task_list }}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskList => "task_list",
            Self::CodebaseDocs => "codebase_docs",
            Self::ImplementationPlan => "implementation_plan",
            Self::CodeDiff => "code_diff",
            Self::ReviewReport => "review_report",
            Self::VerificationReport => "verification_report",
            Self::Custom => "custom",
        }
    }

    /// Parses the YAML name back.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The file extension of the artifact on disk.
    pub fn extension(self) -> &'static str {
        match self {
            Self::TaskList | Self::ReviewReport | Self::VerificationReport => "json",
            Self::CodeDiff => "diff",
            Self::CodebaseDocs | Self::ImplementationPlan | Self::Custom => "md",
        }
    }

    /// True when the artifact is JSON checked against a schema.
    pub fn is_json(self) -> bool {
        self.extension() == "json"
    }
}

/// What the commands a phase causes may touch (DESIGN §12), in the style of Codex CLI's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Read the worktree and the system; write only a private temp folder.
    ReadOnly,
    /// Also write the worktree (never its `.git`).
    WorkspaceWrite,
    /// No sandbox: commands run with the runner's own rights. An explicit opt-in.
    FullAccess,
}

impl SandboxMode {
    /// The name used in templates and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::WorkspaceWrite => "workspace-write",
            Self::FullAccess => "full-access",
        }
    }

    /// The mode a role gets when its phase names none: implementers and the verifier (whose
    /// build and test commands write build output) may write the worktree, every other role
    /// only reads.
    pub fn default_for(role: PhaseRole) -> Self {
        match role {
            PhaseRole::Implementer | PhaseRole::Verifier => Self::WorkspaceWrite,
            _ => Self::ReadOnly,
        }
    }
}

/// Whether a failed review or verification iterates on its own or waits for a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IterationBehavior {
    /// Start the next iteration at once.
    AutoIterate,
    /// Wait in `awaiting_approval` for `workflow approve|reject`.
    PauseForApproval,
    /// Pause when the run is interactive, iterate otherwise.
    #[default]
    Configurable,
}

/// What happens when a phase fails after its retries and fallbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureBehavior {
    /// Pause the execution with the reason; `resume` tries again.
    #[default]
    PauseNotify,
    /// Try the phase's `fallback_provider` chain, then fail.
    FallbackProvider,
    /// Skip the phase when it is skippable, else fail.
    SkipPhase,
}

/// The provider families a phase can use (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderType {
    /// Google Gemini API.
    GeminiSdk,
    /// Gemini models through OpenRouter.
    GeminiOpenrouter,
    /// OpenAI chat completions.
    Openai,
    /// OpenRouter's OpenAI-compatible API.
    Openrouter,
    /// A local Ollama server.
    Ollama,
    /// A local LM Studio server (OpenAI-compatible).
    LmStudio,
    /// Any OpenAI-compatible server at `api_url`.
    OpenaiCompatible,
    /// Anthropic Messages API.
    Anthropic,
    /// The Claude Code CLI as a subprocess.
    ClaudeCode,
    /// The Codex CLI as a subprocess.
    Codex,
    /// The Gemini CLI as a subprocess.
    GeminiCli,
    /// The Qwen Code CLI as a subprocess.
    QwenCode,
    /// Canned replies from a YAML file: tests and `template test`, at $0.
    Scripted,
    /// No model: the verifier's commands.
    None,
}

impl ProviderType {
    /// True for the agent CLIs (Claude Code, Codex, Gemini CLI, Qwen Code), which run their own
    /// agent loop as a subprocess; every other type is a chat model in our loop.
    pub fn is_agent_cli(self) -> bool {
        matches!(
            self,
            Self::ClaudeCode | Self::Codex | Self::GeminiCli | Self::QwenCode
        )
    }

    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GeminiSdk => "gemini_sdk",
            Self::GeminiOpenrouter => "gemini_openrouter",
            Self::Openai => "openai",
            Self::Openrouter => "openrouter",
            Self::Ollama => "ollama",
            Self::LmStudio => "lm_studio",
            Self::OpenaiCompatible => "openai_compatible",
            Self::Anthropic => "anthropic",
            Self::ClaudeCode => "claude_code",
            Self::Codex => "codex",
            Self::GeminiCli => "gemini_cli",
            Self::QwenCode => "qwen_code",
            Self::Scripted => "scripted",
            Self::None => "none",
        }
    }
}

fn default_temperature() -> f64 {
    0.1
}
fn default_context_length() -> u32 {
    8192
}

/// The provider-specific settings of a phase (`extra_params`). Each applies to some provider
/// kinds only; the template's rules say so when one is set where it means nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtraParams {
    /// Turns of the agent loop (chat providers; default 40), or Claude Code's `--max-turns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// The output cap of each call (chat providers): also what the budget reserves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Retries of a failed call before the fallback (chat providers; default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// The first retry's delay in milliseconds, doubled each time (chat providers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_base_ms: Option<u64>,
    /// The environment variable holding the key, instead of the vendor's usual one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The replies file of the `scripted` provider, relative to the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// An agent CLI's executable (default: its usual name on PATH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// Extra arguments of an agent CLI: a flag we set too is replaced, the rest appended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

impl ProviderConfig {
    /// This provider and its fallbacks, in the order they are tried.
    pub fn chain(&self) -> impl Iterator<Item = &ProviderConfig> {
        std::iter::successors(Some(self), |c| c.fallback_provider.as_deref())
    }

    /// `type (model)`, as messages and events name a provider.
    pub fn label(&self) -> String {
        format!("{} ({})", self.provider_type.as_str(), self.model_name)
    }
}

impl ExtraParams {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The keys set that mean nothing for `kind`, with why.
    pub fn misplaced(&self, kind: ProviderType) -> Vec<(&'static str, &'static str)> {
        let cli = kind.is_agent_cli();
        let mut out = Vec::new();
        if !cli && (self.binary.is_some() || !self.args.is_empty()) {
            let key = if self.binary.is_some() {
                "binary"
            } else {
                "args"
            };
            out.push((
                key,
                "only agent CLIs (claude_code, codex, gemini_cli, qwen_code) take it",
            ));
        }
        if self.script.is_some() && kind != ProviderType::Scripted {
            out.push(("script", "only the scripted provider takes it"));
        }
        if cli
            && (self.max_tokens.is_some() || self.retries.is_some() || self.retry_base_ms.is_some())
        {
            out.push((
                "max_tokens",
                "agent CLIs make their own calls: max_tokens, retries and retry_base_ms do not apply",
            ));
        }
        out
    }
}

/// Which model a phase talks to, and how (seed §2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The provider family.
    pub provider_type: ProviderType,
    /// The model to request; empty means the provider's default.
    #[serde(default)]
    pub model_name: String,
    /// Base URL overriding the provider's default (required for `openai_compatible`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// Sampling temperature.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Context window in tokens; sent to servers that need it (Ollama's `num_ctx`).
    #[serde(default = "default_context_length")]
    pub context_length: u32,
    /// Provider-specific settings; an unknown key is an error.
    #[serde(default, skip_serializing_if = "ExtraParams::is_empty")]
    pub extra_params: ExtraParams,
    /// Tried when this provider keeps failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_provider: Option<Box<ProviderConfig>>,
}

fn default_success_pattern() -> Option<String> {
    Some("/complete".to_owned())
}
fn default_true() -> bool {
    true
}
fn default_max_retries() -> u32 {
    2
}
fn default_timeout() -> u64 {
    3600
}

/// One step of a template (seed §2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowPhase {
    /// Stable id, unique in the template; names the artifact files.
    pub id: String,
    /// Human name shown in the status views.
    pub name: String,
    /// What the phase does.
    pub role: PhaseRole,
    /// The model (or none, for the verifier).
    pub provider_config: ProviderConfig,
    /// A prompt name (built-in or overridden in `prompts/`) or an inline Jinja prompt.
    #[serde(default)]
    pub prompt_template: Option<String>,
    /// What the phase produces.
    pub output_artifact_type: ArtifactType,
    /// Text the answer must contain to count as finished; null for no check.
    #[serde(default = "default_success_pattern")]
    pub success_pattern: Option<String>,
    /// Whether `skip-phase` and `failure_behavior: skip_phase` may skip it.
    #[serde(default = "default_true")]
    pub can_skip: bool,
    /// The first phase with `can_iterate: true` is where a new iteration starts.
    #[serde(default)]
    pub can_iterate: bool,
    /// How often a rejected answer (missing pattern, invalid JSON) is asked for again.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wall-clock limit of one run of the phase.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Id of a phase this one runs concurrently with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_with: Option<String>,
    /// Position in the pipeline; phases run in ascending order.
    #[serde(default)]
    pub order: i64,
    /// The sandbox of the commands this phase causes (`run_command`, the verifier's checks,
    /// agent CLIs): `read-only`, `workspace-write` or `full-access`. Default: `workspace-write`
    /// for the implementer and verifier, `read-only` for every other role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxMode>,
    /// Lets sandboxed commands use the network (off by default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sandbox_network: bool,
    /// Environment variables passed by name to the commands of this phase, on top of the
    /// allow-list (PATH, LANG, LC_*, TERM, TZ). A name holding KEY, TOKEN, SECRET or PASSWORD
    /// is passed only when named here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_env: Vec<String>,
}

fn default_max_iterations() -> u32 {
    3
}
fn default_budget_scope() -> String {
    "execution".to_owned()
}

/// A reusable pipeline (seed §2.2, §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowTemplate {
    /// Stable id; defaults to the file name without extension.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Human name.
    pub name: String,
    /// What the template is for.
    #[serde(default)]
    pub description: String,
    /// The steps.
    pub phases: Vec<WorkflowPhase>,
    /// Upper bound of review/verify rounds.
    #[serde(default = "default_max_iterations")]
    pub max_iterations: u32,
    /// Iterate on its own or wait for approval.
    #[serde(default)]
    pub iteration_behavior: IterationBehavior,
    /// What a phase failure (or a review loop that stalls) does.
    #[serde(default)]
    pub failure_behavior: FailureBehavior,
    /// When the review loop stops for want of progress, and which findings block.
    #[serde(default, skip_serializing_if = "super::convergence::is_default")]
    pub convergence: super::Convergence,
    /// USD limit; null for none.
    #[serde(default)]
    pub budget_limit: Option<f64>,
    /// `execution`, `project` or `global`.
    #[serde(default = "default_budget_scope")]
    pub budget_scope: String,
    /// Marks the default template.
    #[serde(default)]
    pub is_default: bool,
    /// Global (`~/.autowrkers`) or project template.
    #[serde(default = "default_true")]
    pub is_global: bool,
    /// The project a project template belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// When the template was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the template was last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl WorkflowTemplate {
    /// The phase with this id.
    pub fn phase(&self, id: &str) -> Option<&WorkflowPhase> {
        self.phases.iter().find(|p| p.id == id)
    }

    /// Phases grouped into steps: sorted by `order`, and a phase with `parallel_with` joins the
    /// step of the phase it names. Each inner list runs concurrently.
    pub fn steps(&self) -> Vec<Vec<&WorkflowPhase>> {
        let mut sorted: Vec<&WorkflowPhase> = self.phases.iter().collect();
        sorted.sort_by_key(|p| p.order);
        let mut steps: Vec<Vec<&WorkflowPhase>> = Vec::new();
        for phase in sorted {
            let joined = phase.parallel_with.as_deref().and_then(|other| {
                steps
                    .iter()
                    .position(|step| step.iter().any(|p| p.id == other))
            });
            match joined {
                Some(i) => steps[i].push(phase),
                None => steps.push(vec![phase]),
            }
        }
        steps
    }

    /// The `order` where iteration 2 and later start: the first phase with `can_iterate`.
    pub fn iteration_start_order(&self) -> Option<i64> {
        self.phases
            .iter()
            .filter(|p| p.can_iterate)
            .map(|p| p.order)
            .min()
    }
}
