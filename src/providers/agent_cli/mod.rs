//! Agent CLIs as phase providers (DESIGN §6): Claude Code, Codex CLI, Gemini CLI and Qwen Code
//! run as subprocesses in the phase's worktree and sandbox, non-interactively, in their
//! JSON-streaming modes, with the prompt on stdin, a home folder of their own, their own
//! vendor's key only, and the flags that keep them off other hosts (`flags`). Their events
//! become our progress lines (`parse`); what they spend is billed whatever the outcome and
//! capped (`run`, `watchdog`). A timeout or cancel drops the run, which kills the whole
//! process group.

mod args;
mod flags;
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
use crate::sandbox::Sandbox;
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
/// Facts about one CLI: the API it speaks (for its base URL and key), its executable, and the
/// npm package that installs it. None for a provider type that is not an agent CLI.
struct CliFacts {
    api: ProviderType,
    binary: &'static str,
    package: &'static str,
}

fn facts(kind: ProviderType) -> Option<CliFacts> {
    let (api, binary, package) = match kind {
        ProviderType::ClaudeCode => (
            ProviderType::Anthropic,
            "claude",
            "@anthropic-ai/claude-code",
        ),
        ProviderType::Codex => (ProviderType::Openai, "codex", "@openai/codex"),
        ProviderType::GeminiCli => (ProviderType::GeminiSdk, "gemini", "@google/gemini-cli"),
        ProviderType::QwenCode => (ProviderType::Openai, "qwen", "@qwen-code/qwen-code"),
        _ => return None,
    };
    Some(CliFacts {
        api,
        binary,
        package,
    })
}

fn not_a_cli(kind: ProviderType) -> String {
    format!("`{}` is not an agent CLI", kind.as_str())
}

fn api_of(kind: ProviderType) -> Result<ProviderType, String> {
    facts(kind).map(|f| f.api).ok_or_else(|| not_a_cli(kind))
}

fn default_binary(kind: ProviderType) -> &'static str {
    facts(kind).map_or("", |f| f.binary)
}

fn npm_package(kind: ProviderType) -> &'static str {
    facts(kind).map_or("", |f| f.package)
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
fn upstream_url(cfg: &ProviderConfig) -> Result<String, CliError> {
    Ok(base_url(&api_info(cfg.provider_type)?, Some(cfg)).0)
}

/// The registry's data on the API a CLI speaks.
fn api_info(kind: ProviderType) -> Result<super::ProviderInfo, CliError> {
    let api = api_of(kind).map_err(CliError::Failed)?;
    info(api).ok_or_else(|| CliError::Failed(format!("no API data for `{}`", api.as_str())))
}

/// The plan of a run; with a `proxy`, the CLI talks to the watchdog instead of the API.
fn plan(run: &CliRun<'_>, home: &Path, proxy: Option<&Watchdog>) -> Result<Plan, CliError> {
    let cfg = run.config;
    let kind = cfg.provider_type;
    let api = api_info(kind)?;
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
        std::fs::write(file, run.system_prompt)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", file.display())))?;
    }
    let prompt = if run.system_prompt.is_empty() || system_file.is_some() {
        run.prompt.to_owned()
    } else {
        format!("{}\n\n{}", run.system_prompt, run.prompt)
    };
    let setup = flags::Setup {
        run,
        home,
        url,
        secret,
        model,
        system_file,
    };
    let flags::Launch {
        env: vendor_env,
        args,
        parser,
    } = match kind {
        ProviderType::ClaudeCode => flags::claude(&setup),
        ProviderType::Codex => flags::codex(&setup).map_err(CliError::Failed)?,
        ProviderType::GeminiCli => flags::gemini(&setup).map_err(CliError::Failed)?,
        ProviderType::QwenCode => flags::qwen(&setup),
        other => return Err(CliError::Failed(not_a_cli(other))),
    };
    let mut env = vec![("HOME".to_owned(), home.to_string_lossy().into_owned())];
    env.extend(vendor_env);
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
