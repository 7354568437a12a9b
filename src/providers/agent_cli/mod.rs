//! Agent CLIs as phase providers (DESIGN §6): Claude Code, Codex CLI, Gemini CLI and Qwen Code
//! run as subprocesses in the phase's worktree, non-interactively, in their JSON-streaming
//! modes, with stdin from /dev/null, a home folder of their own, and the flags that keep them
//! off other hosts. Their events become our progress lines; their final result the phase
//! output. A timeout or cancel drops the run, which kills the whole process group.

mod args;
mod parse;

pub use parse::{ClaudeLike, CliResult, Codex, GeminiCli, Note, Spent, StreamParser};

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::registry::{base_url, info, key};
use crate::keys::Keys;
use crate::process::GroupGuard;
use crate::sandbox::{Extra, Sandbox, SandboxMode};
use crate::spec::{ProviderConfig, ProviderType};

/// True for the provider types that are agent CLIs.
pub fn is_agent_cli(kind: ProviderType) -> bool {
    matches!(
        kind,
        ProviderType::ClaudeCode
            | ProviderType::Codex
            | ProviderType::GeminiCli
            | ProviderType::QwenCode
    )
}

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
    /// USD the run may spend, passed as a backstop where the CLI takes one.
    pub max_budget_usd: Option<f64>,
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
pub fn check(config: &ProviderConfig) -> Result<PathBuf, String> {
    let kind = config.provider_type;
    let wanted = config
        .extra_params
        .get("binary")
        .and_then(|v| v.as_str())
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
        format!(
            "`{}` needs the `{wanted}` CLI: `npm install -g {}`, or set extra_params.binary to its path",
            kind.as_str(),
            npm_package(kind)
        )
    })
}

/// `program` as a full path (looked up on PATH when it is a bare name), so the sandbox can let
/// its installation be read.
fn resolve(program: &Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_default()
        .unwrap_or_else(|| program.to_path_buf())
}

/// The folder a CLI is installed in: the outermost `node_modules` above its real path (npm
/// packages load their siblings and native binaries from there), else its own folder.
fn install_root(program: &Path) -> PathBuf {
    let real = program
        .canonicalize()
        .unwrap_or_else(|_| program.to_path_buf());
    real.ancestors()
        .filter(|a| a.file_name().is_some_and(|n| n == "node_modules"))
        .last()
        .or_else(|| real.parent())
        .map_or_else(|| real.clone(), Path::to_path_buf)
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

fn plan(run: &CliRun<'_>, home: &Path) -> Result<Plan, String> {
    let cfg = run.config;
    let kind = cfg.provider_type;
    let api = info(api_of(kind)).ok_or("no API data")?;
    let (url, _) = base_url(&api, Some(cfg));
    let api_port = reqwest::Url::parse(&url)
        .ok()
        .and_then(|u| u.port_or_known_default());
    // The CLIs refuse to start without a key, even against a gateway that needs none.
    let secret = key(&api, Some(cfg), run.keys).map_or_else(
        || "no-key-configured".to_owned(),
        |(k, _)| k.expose().to_owned(),
    );
    let program = cfg
        .extra_params
        .get("binary")
        .and_then(|v| v.as_str())
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
    let max_turns = cfg.extra_params.get("max_turns").and_then(|v| v.as_u64());
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
    let extra: Vec<String> = cfg
        .extra_params
        .get("args")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let args = args::merge(args, &extra);
    Ok(Plan {
        program,
        args,
        env,
        prompt,
        api_port,
        parser,
    })
}

/// Runs the CLI to the end. `on_note` gets every progress line (and the raw lines for the log);
/// the error is the CLI's own message when it has one.
pub async fn run(
    run: &CliRun<'_>,
    on_note: &(dyn Fn(Note) + Send + Sync),
) -> Result<CliResult, String> {
    let home = run.sandbox.home();
    let Plan {
        program,
        args,
        env,
        prompt,
        api_port,
        mut parser,
    } = plan(run, &home)?;
    let program = resolve(&program);
    let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
    let install = install_root(&program);
    let ports: Vec<u16> = api_port.into_iter().collect();
    let extra = Extra {
        env: &env,
        connect_ports: &ports,
        read_paths: std::slice::from_ref(&install),
    };
    let mut cmd = run.sandbox.command_with(program.as_os_str(), &args, &extra);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "cannot start {}: {e} (set extra_params.binary)",
            program.display()
        )
    })?;
    let pid = child.id();
    // Dropping this future (timeout, cancel) kills the CLI and everything it started.
    let _guard = GroupGuard(pid.map(|p| p as i32));
    if let Ok(mut s) = run.spent.lock() {
        s.started = true;
    }
    if let Some(mut stdin) = child.stdin.take() {
        // Written from its own task: a CLI that streams before reading all of its prompt must
        // not deadlock against us. Closing stdin is the end of the prompt.
        tokio::spawn(async move {
            let _ = stdin.write_all(prompt.as_bytes()).await;
        });
    }
    on_note(Note::Raw(format!(
        "[{} started, pid {}]",
        program.display(),
        pid.unwrap_or(0)
    )));
    let stderr = child.stderr.take();
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut text).await;
        }
        text
    });
    if let Some(out) = child.stdout.take() {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            for note in parser.line(&line) {
                on_note(note);
            }
            if let Ok(mut s) = run.spent.lock() {
                *s = Spent {
                    started: true,
                    ..parser.spent()
                };
            }
        }
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    let stderr = stderr_task.await.unwrap_or_default();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        on_note(Note::Raw(format!("stderr: {line}")));
    }
    parser.finish(status.code()).map_err(|e| {
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .filter(|l| !l.trim().is_empty())
            .take(3)
            .collect();
        if tail.is_empty() {
            e
        } else {
            format!(
                "{e} (stderr: {})",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )
        }
    })
}
