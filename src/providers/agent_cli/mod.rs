//! Agent CLIs as phase providers (DESIGN §6): Claude Code, Codex CLI, Gemini CLI and Qwen Code
//! run as subprocesses in the phase's worktree, non-interactively, in their JSON-streaming
//! modes, with stdin from /dev/null, a home folder of their own, and the flags that keep them
//! off other hosts. Their events become our progress lines; their final result the phase
//! output. A timeout or cancel drops the run, which kills the whole process group.

mod args;
mod parse;
mod run;
mod watchdog;

pub use parse::{ClaudeLike, CliResult, Codex, GeminiCli, Note, Spent, StreamParser};
pub use run::{CliError, run};
pub use watchdog::{Measured, Stopped, Watchdog};

use std::path::{Path, PathBuf};

use super::registry::{base_url, info, key};
use crate::budget::Price;
use crate::keys::Keys;
use crate::sandbox::{Sandbox, SandboxMode};
use crate::spec::{ProviderConfig, ProviderType};

/// One run of an agent CLI.
pub struct CliRun<'a> {
    /// The phase's provider config (`extra_params`: `binary`, `args`, `max_turns`).
    pub config: &'a ProviderConfig,
    /// The phase's sandbox: the CLI and every tool it runs stay inside it, with a clean
    /// environment plus this CLI's own key.
    pub sandbox: &'a Sandbox,
    /// The worktree.
    pub workdir: &'a Path,
    /// Standing instructions.
    pub system_prompt: &'a str,
    /// The task prompt.
    pub prompt: &'a str,
    /// Implementer (edits allowed) or read-only role.
    pub can_edit: bool,
    /// USD the run may spend: passed to Claude Code as its cap; for the other CLIs enforced
    /// by the budget watchdog, call by call.
    pub max_budget_usd: Option<f64>,
    /// The price of the model that will run, for the watchdog's worst cases (None: unknown,
    /// or free).
    pub price: Option<Price>,
    /// The HTTP client the watchdog forwards with.
    pub http: &'a reqwest::Client,
    /// Where keys come from.
    pub keys: &'a Keys,
    /// What the run reported it used, kept up to date line by line: whoever stops the run
    /// (a timeout, a cancel) can still bill it.
    pub spent: &'a std::sync::Mutex<Spent>,
}

/// The model Codex runs when a phase names none. Codex's stream never says which model served,
/// so rather than guess its built-in default (which changes between versions), we pass this one
/// explicitly: what is priced and reserved is what runs.
pub const CODEX_DEFAULT_MODEL: &str = "gpt-5-codex";

/// The model a CLI phase asks for: its `model_name`, Codex's documented default when empty, or
/// empty for the CLIs that report the model that served (Claude Code, Gemini CLI, Qwen Code),
/// which is then priced.
pub fn effective_model(config: &ProviderConfig) -> String {
    if config.model_name.is_empty() && config.provider_type == ProviderType::Codex {
        CODEX_DEFAULT_MODEL.to_owned()
    } else {
        config.model_name.clone()
    }
}

/// The API a CLI speaks, for its base URL and key.
fn api_of(kind: ProviderType) -> ProviderType {
    match kind {
        ProviderType::ClaudeCode => ProviderType::Anthropic,
        ProviderType::GeminiCli => ProviderType::GeminiSdk,
        _ => ProviderType::Openai,
    }
}

fn default_binary(kind: ProviderType) -> &'static str {
    match kind {
        ProviderType::ClaudeCode => "claude",
        ProviderType::Codex => "codex",
        ProviderType::GeminiCli => "gemini",
        _ => "qwen",
    }
}

fn npm_package(kind: ProviderType) -> &'static str {
    match kind {
        ProviderType::ClaudeCode => "@anthropic-ai/claude-code",
        ProviderType::Codex => "@openai/codex",
        ProviderType::GeminiCli => "@google/gemini-cli",
        _ => "@qwen-code/qwen-code",
    }
}

/// Checks before any call that the CLI of `config` can be started.
pub fn check(config: &ProviderConfig) -> Result<PathBuf, super::ProviderError> {
    let kind = config.provider_type;
    let wanted = config
        .extra_params
        .binary
        .as_deref()
        .unwrap_or(default_binary(kind));
    let found = if wanted.contains('/') {
        Some(PathBuf::from(wanted)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH")
            .map(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(wanted))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.is_file())
    };
    found.ok_or_else(|| {
        super::ProviderError::NeedsSetup(format!(
            "`{}` needs the `{wanted}` CLI: `npm install -g {}`, or set extra_params.binary to its path",
            kind.as_str(),
            npm_package(kind)
        ))
    })
}

/// The program, its arguments, its environment, its prompt (sent on stdin, never in argv:
/// Linux caps one argument at 128 KiB, and argv is visible to every process) and its parser.
struct Plan {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    prompt: String,
    api_port: Option<u16>,
    parser: Box<dyn StreamParser>,
}

/// The base URL of the API the CLI of `cfg` speaks, as configured.
fn upstream_url(cfg: &ProviderConfig) -> Result<String, String> {
    let api = info(api_of(cfg.provider_type)).ok_or("no API data")?;
    Ok(base_url(&api, Some(cfg)).0)
}

/// The plan of a run; with a `proxy`, the CLI talks to the watchdog instead of the API.
fn plan(run: &CliRun<'_>, home: &Path, proxy: Option<&Watchdog>) -> Result<Plan, String> {
    let cfg = run.config;
    let kind = cfg.provider_type;
    let api = info(api_of(kind)).ok_or("no API data")?;
    let upstream = upstream_url(cfg)?;
    let url = proxy.map_or_else(|| upstream.clone(), |w| w.base_url(&upstream));
    let api_port = match proxy {
        Some(w) => Some(w.port()),
        None => reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| u.port_or_known_default()),
    };
    // The CLIs refuse to start without a key, even against a gateway that needs none.
    let secret = key(&api, Some(cfg), run.keys).map_or_else(
        || "no-key-configured".to_owned(),
        |(k, _)| k.expose().to_owned(),
    );
    let program = cfg
        .extra_params
        .binary
        .as_deref()
        .map_or_else(|| PathBuf::from(default_binary(kind)), PathBuf::from);
    let model = effective_model(cfg);
    // Claude Code takes standing instructions from a file; the other CLIs have no channel
    // that is not the command line, so theirs lead the prompt on stdin.
    let system_file = (kind == ProviderType::ClaudeCode && !run.system_prompt.is_empty())
        .then(|| home.join(".autowrkers-system-prompt.md"));
    if let Some(file) = &system_file {
        std::fs::write(file, run.system_prompt).map_err(|e| e.to_string())?;
    }
    let prompt = if run.system_prompt.is_empty() || system_file.is_some() {
        run.prompt.to_owned()
    } else {
        format!("{}\n\n{}", run.system_prompt, run.prompt)
    };
    let max_turns = cfg.extra_params.max_turns;
    let home_s = home.to_string_lossy().into_owned();
    let mut env = vec![("HOME".to_owned(), home_s.clone())];
    let mut args: Vec<String> = Vec::new();
    let parser: Box<dyn StreamParser> = match kind {
        ProviderType::ClaudeCode => {
            // Claude's base URL has no /v1.
            env.push((
                "ANTHROPIC_BASE_URL".into(),
                url.trim_end_matches('/').trim_end_matches("/v1").to_owned(),
            ));
            env.push(("ANTHROPIC_API_KEY".into(), secret));
            env.push((
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                "1".into(),
            ));
            env.push(("CLAUDE_CODE_MAX_RETRIES".into(), "1".into()));
            // `-p` without a prompt argument reads the prompt from stdin.
            args.extend([
                "-p".into(),
                "--output-format".into(),
                "stream-json".into(),
                "--verbose".into(),
            ]);
            if let Some(file) = &system_file {
                args.extend([
                    "--append-system-prompt-file".into(),
                    file.to_string_lossy().into_owned(),
                ]);
            }
            args.extend([
                "--no-session-persistence".into(),
                "--permission-mode".into(),
            ]);
            args.push(if run.can_edit { "acceptEdits" } else { "plan" }.into());
            if run.can_edit {
                // The implementer may run the project's commands (inside our sandbox).
                args.extend(["--allowedTools".into(), "Bash".into()]);
            }
            if !model.is_empty() {
                args.extend(["--model".into(), model]);
            }
            if let Some(n) = max_turns {
                args.extend(["--max-turns".into(), n.to_string()]);
            }
            if let Some(usd) = run.max_budget_usd {
                args.extend(["--max-budget-usd".into(), format!("{usd:.4}")]);
            }
            Box::new(ClaudeLike::new(false, run.can_edit))
        }
        ProviderType::Codex => {
            let codex_home = home.join(".codex");
            std::fs::create_dir_all(&codex_home).map_err(|e| e.to_string())?;
            env.push((
                "CODEX_HOME".into(),
                codex_home.to_string_lossy().into_owned(),
            ));
            env.push(("AUTOWRKERS_CODEX_KEY".into(), secret));
            let base = if url.trim_end_matches('/').ends_with("/v1") {
                url.trim_end_matches('/').to_owned()
            } else {
                format!("{}/v1", url.trim_end_matches('/'))
            };
            args.extend([
                "exec".into(),
                "--json".into(),
                "--ephemeral".into(),
                "--skip-git-repo-check".into(),
            ]);
            args.extend(["--disable".into(), "plugins".into(), "-s".into()]);
            // Codex's own Linux sandbox cannot nest inside ours; ours holds the same walls
            // (and more), so inside it Codex runs its commands directly.
            args.push(
                if run.sandbox.mode() != SandboxMode::FullAccess {
                    "danger-full-access"
                } else if run.can_edit {
                    "workspace-write"
                } else {
                    "read-only"
                }
                .into(),
            );
            args.extend(["-C".into(), run.workdir.to_string_lossy().into_owned()]);
            if !model.is_empty() {
                args.extend(["-c".into(), format!("model={model}")]);
            }
            args.extend(["-c".into(), "model_provider=autowrkers".into(), "-c".into()]);
            args.push(format!(
                "model_providers.autowrkers={{name=\"autowrkers\",base_url=\"{base}\",env_key=\"AUTOWRKERS_CODEX_KEY\",wire_api=\"responses\",request_max_retries=1,stream_max_retries=1}}"
            ));
            // `-` reads the prompt from stdin.
            args.push("-".into());
            Box::new(Codex::default())
        }
        ProviderType::GeminiCli => {
            let dir = home.join(".gemini");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let settings = r#"{"security":{"auth":{"selectedType":"gemini-api-key"}},"privacy":{"usageStatisticsEnabled":false},"general":{"enableAutoUpdate":false},"telemetry":{"enabled":false}}"#;
            std::fs::write(dir.join("settings.json"), settings).map_err(|e| e.to_string())?;
            env.push(("GEMINI_API_KEY".into(), secret));
            env.push((
                "GOOGLE_GEMINI_BASE_URL".into(),
                url.trim_end_matches('/')
                    .trim_end_matches("/v1beta")
                    .to_owned(),
            ));
            // Without a prompt argument and with stdin not a terminal, it reads stdin.
            args.extend([
                "--output-format".into(),
                "stream-json".into(),
                "--skip-trust".into(),
            ]);
            args.extend([
                "--approval-mode".into(),
                // yolo adds the shell tool: the implementer runs the project's commands.
                if run.can_edit { "yolo" } else { "default" }.into(),
            ]);
            if !model.is_empty() {
                // Without -m it first asks a routing model which model to use.
                args.extend(["-m".into(), model]);
            }
            Box::new(GeminiCli::default())
        }
        _ => {
            let base = if url.trim_end_matches('/').ends_with("/v1") {
                url.clone()
            } else {
                format!("{}/v1", url.trim_end_matches('/'))
            };
            env.push(("OPENAI_API_KEY".into(), secret));
            env.push(("OPENAI_BASE_URL".into(), base));
            env.push(("OPENAI_MODEL".into(), model));
            args.extend([
                "--auth-type".into(),
                "openai".into(),
                "--output-format".into(),
                "stream-json".into(),
            ]);
            args.extend([
                "--approval-mode".into(),
                if run.can_edit { "yolo" } else { "default" }.into(),
            ]);
            Box::new(ClaudeLike::new(true, run.can_edit))
        }
    };
    let args = args::merge(args, &cfg.extra_params.args);
    Ok(Plan {
        program,
        args,
        env,
        prompt,
        api_port,
        parser,
    })
}
