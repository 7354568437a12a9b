//! `init`: writes a project's `.autowrkers/config.yaml` from what this machine has (keys, agent
//! CLIs, local servers) and what the project is (its verification commands), and says what it
//! found. Also answers `run`'s question "which built-in template would run here?".

use std::fmt::Write as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::args::InitArgs;
use autowrkers::engine::Engine;
use autowrkers::spec::{ProviderType, WorkflowTemplate, schema};
use autowrkers::store::{Home, ProjectDir, write_atomic};
use autowrkers::templates::{self, Found};

/// How long a local server may take to accept a connection before it counts as absent.
const PROBE: Duration = Duration::from_millis(300);

/// `autowrkers init`.
pub fn run(args: InitArgs, home: Home) -> Result<u8> {
    let Ok(project) = args.path.canonicalize() else {
        eprintln!(
            "error: no such project directory: {}; give an existing folder with --path",
            args.path.display()
        );
        return Ok(2);
    };
    let pdir = ProjectDir::new(&project);
    let config = pdir.config();
    if config.exists() && !args.force {
        eprintln!(
            "error: {} exists already: edit it, or pass --force to write it again",
            config.display()
        );
        return Ok(2);
    }
    let engine = Engine::new(home.clone())?;
    let candidates = built_in(&project, &home);
    println!("templates (built in):");
    let mut chosen: Option<&Found> = None;
    for found in &candidates {
        let verdict = match readiness(&engine, &found.template, &project) {
            Ok(()) => {
                chosen = chosen.or(Some(found));
                "can run here".to_owned()
            }
            Err(why) => format!("not here: {why}"),
        };
        println!("  {:<18} {verdict}", found.template.id);
    }
    let checks = autowrkers::verify::resolve(None, &project);
    println!("verification:");
    if checks.commands.is_empty() {
        println!("  none found: fill in `verify:` in {}", config.display());
    } else {
        for (name, command) in &checks.commands {
            println!("  {name:<6} {command}   ({})", checks.source);
        }
    }
    let text = render(chosen.map(|f| f.template.id.as_str()), &checks.commands);
    // The file must be one the runner accepts: check it before it lands.
    autowrkers::spec::load::parse_config(&text, &config)?;
    std::fs::create_dir_all(pdir.root())?;
    write_atomic(&config, text.as_bytes())?;
    if let Some((_, value)) = schema::all_schemas()
        .into_iter()
        .find(|(name, _)| *name == schema::CONFIG_SCHEMA)
    {
        write_atomic(
            &pdir.root().join(schema::CONFIG_SCHEMA),
            schema::render(&value).as_bytes(),
        )?;
    }
    println!("wrote {}", config.display());
    match chosen {
        Some(found) => println!(
            "next: autowrkers run --path {} --task \"…\"   (template {})",
            project.display(),
            found.template.id
        ),
        None => println!(
            "next: set a key (`autowrkers provider setup openai`), install an agent CLI or start Ollama, then `autowrkers init --force`"
        ),
    }
    Ok(0)
}

/// The first built-in template that can run here, for `run`'s hint when the default cannot.
pub fn runnable_built_in(engine: &Engine, project: &Path, home: &Home) -> Option<String> {
    built_in(project, home)
        .into_iter()
        .find(|f| readiness(engine, &f.template, project).is_ok())
        .map(|f| f.template.id)
}

fn built_in(project: &Path, home: &Home) -> Vec<Found> {
    templates::list(project, home)
        .0
        .into_iter()
        .filter(|f| f.scope == "built-in")
        .collect()
}

/// Ready when the engine's preflight passes (keys, CLIs, prompts) and every local server the
/// template calls without a key accepts a connection.
fn readiness(engine: &Engine, template: &WorkflowTemplate, project: &Path) -> Result<(), String> {
    if engine.preflight(template, project).is_err() {
        return Err(format!("needs {}", super::template::needs(template)));
    }
    for config in template.phases.iter().map(|p| &p.provider_config) {
        let keyless = config.provider_type != ProviderType::None
            && !config.provider_type.is_agent_cli()
            && autowrkers::providers::info(config.provider_type).is_some_and(|i| !i.key_required);
        if let (true, Some(url)) = (keyless, &config.api_url)
            && !listening(url)
        {
            return Err(format!("no server answers at {url}"));
        }
    }
    Ok(())
}

/// Whether something accepts TCP connections at the URL's host and port.
fn listening(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return false;
    };
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, PROBE).is_ok())
}

/// The config file: a schema header for editors, the default template (or a note on how to
/// get one), and the verification commands (or a commented block to fill in).
fn render(template: Option<&str>, commands: &[(&'static str, String)]) -> String {
    let mut out = format!(
        "# yaml-language-server: $schema={}\n# Written by `autowrkers init`; config.schema.json beside it describes every key.\n",
        schema::CONFIG_SCHEMA
    );
    match template {
        Some(id) => {
            let _ = writeln!(out, "default_template: {id}");
        }
        None => out.push_str(
            "# No built-in template can run here yet (see `autowrkers template list`); then:\n# default_template: openai-only\n",
        ),
    }
    if commands.is_empty() {
        out.push_str(
            "# No verification commands found: a run needs them to pass (or `run --no-verify`).\n# verify:\n#   lint: …\n#   test: …\n#   build: …\n",
        );
    } else {
        out.push_str("verify:\n");
        for (name, command) in commands {
            let quoted = serde_json::to_string(command).unwrap_or_default();
            let _ = writeln!(out, "  {name}: {quoted}");
        }
    }
    out
}
