//! How each agent CLI is started: its arguments, its environment and its stream parser. One
//! function per CLI, from the facts in the notes on driving them offline; `plan` picks one.

use std::path::{Path, PathBuf};

use super::{ClaudeLike, CliRun, Codex, GeminiCli, StreamParser};
use crate::sandbox::SandboxMode;

/// What every CLI's launch is built from.
pub(super) struct Setup<'a> {
    /// The run.
    pub run: &'a CliRun<'a>,
    /// The CLI's private home.
    pub home: &'a Path,
    /// The base URL it talks to (the API, or the budget watchdog).
    pub url: String,
    /// Its own vendor's key.
    pub secret: String,
    /// The model asked for; empty for the CLI's default.
    pub model: String,
    /// The system prompt's file, for the CLIs that read one.
    pub system_file: Option<PathBuf>,
}

/// A CLI's arguments, environment and parser.
pub(super) struct Launch {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub parser: Box<dyn StreamParser>,
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// `base` ending in `/v1` (the OpenAI-style CLIs want it there).
fn with_v1(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/v1") {
        url.to_owned()
    } else {
        format!("{url}/v1")
    }
}

/// Claude Code: `-p` with the prompt on stdin, `stream-json`, plan mode for reviewers.
pub(super) fn claude(s: &Setup<'_>) -> Launch {
    let run = s.run;
    let env = vec![
        // Claude's base URL has no /v1.
        (
            "ANTHROPIC_BASE_URL".to_owned(),
            s.url
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_owned(),
        ),
        ("ANTHROPIC_API_KEY".to_owned(), s.secret.clone()),
        (
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_owned(),
            "1".to_owned(),
        ),
        ("CLAUDE_CODE_MAX_RETRIES".to_owned(), "1".to_owned()),
    ];
    // `-p` without a prompt argument reads the prompt from stdin.
    let mut args = owned(&["-p", "--output-format", "stream-json", "--verbose"]);
    if let Some(file) = &s.system_file {
        args.extend([
            "--append-system-prompt-file".to_owned(),
            file.to_string_lossy().into_owned(),
        ]);
    }
    args.extend(owned(&["--no-session-persistence", "--permission-mode"]));
    args.push(if run.can_edit { "acceptEdits" } else { "plan" }.to_owned());
    if run.can_edit {
        // The implementer may run the project's commands (inside our sandbox).
        args.extend(owned(&["--allowedTools", "Bash"]));
    }
    if !s.model.is_empty() {
        args.extend(["--model".to_owned(), s.model.clone()]);
    }
    if let Some(n) = run.config.extra_params.max_turns {
        args.extend(["--max-turns".to_owned(), n.to_string()]);
    }
    if let Some(usd) = run.max_budget_usd {
        args.extend(["--max-budget-usd".to_owned(), format!("{usd:.4}")]);
    }
    Launch {
        env,
        args,
        parser: Box::new(ClaudeLike::new(false, run.can_edit)),
    }
}

/// Codex: `exec --json` with a provider of ours (the Responses API), the prompt from stdin.
pub(super) fn codex(s: &Setup<'_>) -> Result<Launch, String> {
    let run = s.run;
    let codex_home = s.home.join(".codex");
    std::fs::create_dir_all(&codex_home).map_err(|e| e.to_string())?;
    let env = vec![
        (
            "CODEX_HOME".to_owned(),
            codex_home.to_string_lossy().into_owned(),
        ),
        ("AUTOWRKERS_CODEX_KEY".to_owned(), s.secret.clone()),
    ];
    let mut args = owned(&[
        "exec",
        "--json",
        "--ephemeral",
        "--skip-git-repo-check",
        "--disable",
        "plugins",
        "-s",
    ]);
    // Codex's own Linux sandbox cannot nest inside ours; ours holds the same walls (and
    // more), so inside it Codex runs its commands directly.
    args.push(
        if run.sandbox.mode() != SandboxMode::FullAccess {
            "danger-full-access"
        } else if run.can_edit {
            "workspace-write"
        } else {
            "read-only"
        }
        .to_owned(),
    );
    args.extend(["-C".to_owned(), run.workdir.to_string_lossy().into_owned()]);
    if !s.model.is_empty() {
        args.extend(["-c".to_owned(), format!("model={}", s.model)]);
    }
    args.extend(owned(&["-c", "model_provider=autowrkers", "-c"]));
    args.push(format!(
        "model_providers.autowrkers={{name=\"autowrkers\",base_url=\"{}\",env_key=\"AUTOWRKERS_CODEX_KEY\",wire_api=\"responses\",request_max_retries=1,stream_max_retries=1}}",
        with_v1(&s.url)
    ));
    // `-` reads the prompt from stdin.
    args.push("-".to_owned());
    Ok(Launch {
        env,
        args,
        parser: Box::new(Codex::default()),
    })
}

/// Gemini CLI: `stream-json`, the prompt from stdin, settings that keep it offline.
pub(super) fn gemini(s: &Setup<'_>) -> Result<Launch, String> {
    let run = s.run;
    let dir = s.home.join(".gemini");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let settings = r#"{"security":{"auth":{"selectedType":"gemini-api-key"}},"privacy":{"usageStatisticsEnabled":false},"general":{"enableAutoUpdate":false},"telemetry":{"enabled":false}}"#;
    std::fs::write(dir.join("settings.json"), settings).map_err(|e| e.to_string())?;
    let env = vec![
        ("GEMINI_API_KEY".to_owned(), s.secret.clone()),
        (
            "GOOGLE_GEMINI_BASE_URL".to_owned(),
            s.url
                .trim_end_matches('/')
                .trim_end_matches("/v1beta")
                .to_owned(),
        ),
    ];
    // Without a prompt argument and with stdin not a terminal, it reads stdin.
    let mut args = owned(&[
        "--output-format",
        "stream-json",
        "--skip-trust",
        "--approval-mode",
    ]);
    // yolo adds the shell tool: the implementer runs the project's commands.
    args.push(if run.can_edit { "yolo" } else { "default" }.to_owned());
    if !s.model.is_empty() {
        // Without -m it first asks a routing model which model to use.
        args.extend(["-m".to_owned(), s.model.clone()]);
    }
    Ok(Launch {
        env,
        args,
        parser: Box::new(GeminiCli::default()),
    })
}

/// Qwen Code: OpenAI chat completions, `stream-json`, the prompt from stdin.
pub(super) fn qwen(s: &Setup<'_>) -> Launch {
    let run = s.run;
    let env = vec![
        ("OPENAI_API_KEY".to_owned(), s.secret.clone()),
        ("OPENAI_BASE_URL".to_owned(), with_v1(&s.url)),
        ("OPENAI_MODEL".to_owned(), s.model.clone()),
    ];
    let mut args = owned(&[
        "--auth-type",
        "openai",
        "--output-format",
        "stream-json",
        "--approval-mode",
    ]);
    args.push(if run.can_edit { "yolo" } else { "default" }.to_owned());
    Launch {
        env,
        args,
        parser: Box::new(ClaudeLike::new(true, run.can_edit)),
    }
}
