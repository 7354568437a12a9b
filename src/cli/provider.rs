//! `provider list|setup|test|detect|models` (seed §6.4).

use std::io::{BufRead, IsTerminal};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

use super::args::ProviderCommand;
use autowrkers::keys::{self, Keys};
use autowrkers::providers::{self, CHAT_PROVIDERS, ChatRequest, HttpClient, Message, Role, models};
use autowrkers::spec::{ProviderConfig, ProviderType};
use autowrkers::store::Home;

fn parse_kind(name: &str) -> Result<ProviderType> {
    providers::chat_kind(name).map_err(|e| anyhow!(e))
}

fn config(kind: ProviderType, model: Option<String>, url: Option<String>) -> ProviderConfig {
    ProviderConfig::bare(kind, model, url)
}

/// A cheap model for `provider test` when none is given.
fn default_test_model(kind: ProviderType, home: &Home) -> Option<String> {
    let fixed = match kind {
        ProviderType::Openai => "gpt-4o-mini",
        ProviderType::Openrouter => "openai/gpt-4o-mini",
        ProviderType::GeminiOpenrouter => "google/gemini-2.0-flash-001",
        ProviderType::Anthropic => "claude-3-5-haiku-latest",
        ProviderType::GeminiSdk => "gemini-2.0-flash",
        _ => "",
    };
    if !fixed.is_empty() {
        return Some(fixed.to_owned());
    }
    models::cached(home, kind.as_str()).and_then(|l| l.models.first().map(|m| m.id.clone()))
}

/// Runs a `provider` subcommand.
pub async fn run(cmd: ProviderCommand, home: Home) -> Result<u8> {
    match cmd {
        ProviderCommand::List => list(&home),
        ProviderCommand::Setup {
            provider,
            key_stdin,
        } => setup(&home, provider.as_deref(), key_stdin),
        ProviderCommand::Test {
            provider,
            model,
            url,
        } => test(&home, &provider, model, url).await,
        ProviderCommand::Detect { provider, url } => detect(&home, &provider, url).await,
        ProviderCommand::Models { provider } => {
            let kind = parse_kind(&provider)?;
            match models::cached(&home, kind.as_str()) {
                Some(list) => {
                    println!(
                        "{} at {} (detected {})",
                        list.provider, list.url, list.detected_at
                    );
                    print_models(&list.models);
                    Ok(0)
                }
                None if models::detectable(kind) => bail!(
                    "no models cached for {provider}; run `autowrkers provider detect {provider}`"
                ),
                None => bail!(
                    "`{provider}` has no model list here: name the model in the template's `model_name` (model detection works for ollama and lm_studio)"
                ),
            }
        }
    }
}

fn list(home: &Home) -> Result<u8> {
    let keys = Keys::new(home);
    println!("{:<18} {:<34} base URL", "provider", "key");
    for kind in CHAT_PROVIDERS {
        let Some(info) = providers::info(kind) else {
            continue;
        };
        let key = match providers::key(&info, None, &keys) {
            Some((_, source)) => format!("set ({source})"),
            None if info.key_required => format!("missing: {}", info.key_envs.join(" or ")),
            None if info.key_name.is_some() => "none (optional)".to_owned(),
            None => "not needed".to_owned(),
        };
        let (url, source) = providers::base_url(&info, None);
        let url = if url.is_empty() {
            "(set api_url in the template)".to_owned()
        } else {
            format!("{url} ({source})")
        };
        println!("{:<18} {:<34} {url}", kind.as_str(), key);
    }
    for kind in [
        ProviderType::ClaudeCode,
        ProviderType::Codex,
        ProviderType::GeminiCli,
        ProviderType::QwenCode,
    ] {
        let state = match providers::agent_cli::check(&config(kind, None, None)) {
            Ok(path) => match cli_version(&path) {
                Ok(version) => format!("agent CLI {version} ({})", path.display()),
                Err(e) => format!(
                    "agent CLI at {}, but it does not start: {e}",
                    path.display()
                ),
            },
            Err(e) => format!("agent CLI, not installed: {e}"),
        };
        println!("{:<18} {:<34} {state}", kind.as_str(), "its vendor's key");
    }
    println!(
        "{:<18} {:<34} canned replies (extra_params.script)",
        "scripted", "not needed"
    );
    if let Some(e) = keys.store_error() {
        eprintln!("note: key store not readable: {e}");
    }
    Ok(0)
}

fn setup(home: &Home, provider: Option<&str>, key_stdin: bool) -> Result<u8> {
    let kinds: Vec<ProviderType> = match provider {
        Some(p) => vec![parse_kind(p)?],
        None => CHAT_PROVIDERS.to_vec(),
    };
    let mut store = keys::load(home)?;
    let mut changed = Vec::new();
    if key_stdin {
        let [kind] = kinds[..] else {
            bail!("--key-stdin sets one provider's key: name it")
        };
        let name = providers::info(kind)
            .and_then(|i| i.key_name)
            .ok_or_else(|| anyhow!("{} takes no key", kind.as_str()))?;
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the key from stdin")?;
        let key = line.trim();
        if key.is_empty() {
            bail!("no key on stdin");
        }
        store.insert(name.to_owned(), key.to_owned());
        changed.push(name);
    } else {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "provider setup reads keys without echo and needs a terminal.\n\
                 In CI, set the environment instead (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, OPENROUTER_API_KEY),\n\
                 or pipe one key: `… | autowrkers provider setup openai --key-stdin`."
            );
            return Ok(2);
        }
        let mut seen = Vec::new();
        for kind in kinds {
            let Some(name) = providers::info(kind).and_then(|i| i.key_name) else {
                continue;
            };
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            let state = if store.contains_key(name) {
                "set; Enter keeps it"
            } else {
                "not set; Enter skips"
            };
            let key = keys::read_hidden(&format!("{name} key ({state}): "))?;
            if !key.trim().is_empty() {
                store.insert(name.to_owned(), key.trim().to_owned());
                changed.push(name);
            }
        }
    }
    if changed.is_empty() {
        println!("nothing changed");
        return Ok(0);
    }
    let path = keys::save(home, &store)?;
    println!(
        "saved {} to {} (encrypted, mode 0600)",
        changed.join(", "),
        path.display()
    );
    Ok(0)
}

async fn test(
    home: &Home,
    provider: &str,
    model: Option<String>,
    url: Option<String>,
) -> Result<u8> {
    let kind = parse_kind(provider)?;
    if kind.is_agent_cli() {
        return test_cli(kind, url.as_deref());
    }
    let model = model
        .or_else(|| default_test_model(kind, home))
        .ok_or_else(|| {
            if models::detectable(kind) {
                anyhow!(
                    "give --model (no default for {provider}; `autowrkers provider detect {provider}` lists them)"
                )
            } else {
                anyhow!("give --model NAME: {provider} has no default model to test")
            }
        })?;
    let keys = Keys::new(home);
    let http = HttpClient::new()?;
    let mut cfg = config(kind, Some(model.clone()), url);
    cfg.extra_params.retries = Some(0);
    let chat = providers::build(&cfg, std::path::Path::new("."), &http, &keys)?;
    let request = ChatRequest {
        model: model.clone(),
        messages: vec![Message::text(Role::User, "Reply with the single word OK.")],
        tools: Vec::new(),
        temperature: 0.0,
        max_tokens: Some(16),
        phase_id: "provider-test".into(),
        iteration: 1,
    };
    let started = Instant::now();
    let answer = chat.chat(&request, &|_| {}).await?;
    let served = answer.served_model.unwrap_or_else(|| model.clone());
    let reply = answer.text.into_string()?;
    println!(
        "ok: {provider} answered in {} ms; requested {model}, served by {served}; {} in / {} out tokens; reply: {}",
        started.elapsed().as_millis(),
        answer.usage.input + answer.usage.cached_input,
        answer.usage.output,
        reply.trim()
    );
    Ok(0)
}

async fn detect(home: &Home, provider: &str, url: Option<String>) -> Result<u8> {
    let kind = parse_kind(provider)?;
    let info = providers::info(kind).ok_or_else(|| anyhow!("{provider} has no model detection"))?;
    let cfg = url.map(|u| config(kind, None, Some(u)));
    let (base, _) = providers::base_url(&info, cfg.as_ref());
    let http = HttpClient::new()?;
    let list = models::detect_and_save(home, kind, &base, &http)
        .await
        .with_context(|| format!("asking {base} for its models (is the server running?)"))?;
    println!("{} models at {base}:", list.models.len());
    print_models(&list.models);
    Ok(0)
}

fn print_models(list: &[models::ModelInfo]) {
    for m in list {
        let ctx = m
            .context_length
            .map_or_else(|| "context ?".to_owned(), |c| format!("{c} tokens"));
        println!("  {:<40} {ctx}", m.id);
    }
}

/// What `<cli> --version` prints.
fn cli_version(path: &std::path::Path) -> Result<String> {
    let out = std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{} --version failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `provider test` for an agent CLI: is it installed, and does it start (its version)?
fn test_cli(kind: ProviderType, binary: Option<&str>) -> Result<u8> {
    let mut cfg = config(kind, None, None);
    if let Some(b) = binary {
        cfg.extra_params.binary = Some(b.into());
    }
    let path = providers::agent_cli::check(&cfg).map_err(|e| anyhow!(e))?;
    let started = Instant::now();
    let version = cli_version(&path)?;
    println!(
        "ok: {} {version} at {} (started in {} ms)",
        kind.as_str(),
        path.display(),
        started.elapsed().as_millis()
    );
    Ok(0)
}
