//! `template validate|list|show` and `schema`.

use anyhow::{Result, bail};

use super::args::{SchemaArgs, TemplateCommand};
use autowrkers::engine::{Engine, EngineError};
use autowrkers::spec::{self, schema};
use autowrkers::store::Home;
use autowrkers::templates;

/// `template …`.
pub async fn run(cmd: TemplateCommand, home: Home) -> Result<u8> {
    match cmd {
        TemplateCommand::Validate { files, path } => {
            let engine = Engine::new(home)?;
            let mut bad = 0;
            for file in files {
                let checked = spec::load::load_template(&file)
                    .map_err(EngineError::from)
                    .and_then(|t| {
                        engine.prompts(&path).check(&t).into_iter().next().map_or(
                            Ok(t),
                            |(phase, e)| {
                                Err(EngineError::Prompts(vec![format!(
                                    "  {}: phase {phase}: {e}",
                                    file.display()
                                )]))
                            },
                        )
                    });
                match checked {
                    Ok(t) => println!("{}: ok ({} phases)", file.display(), t.phases.len()),
                    Err(e) => {
                        bad += 1;
                        eprintln!("{e}");
                    }
                }
            }
            Ok(if bad > 0 { 2 } else { 0 })
        }
        TemplateCommand::List {
            path,
            global,
            project: only_project,
        } => {
            let project = path.canonicalize()?;
            let (found, errors) = templates::list(&project, &home);
            let configured = Engine::new(home.clone())?.configured_default(&project)?;
            for f in found {
                if (global && f.scope != "global") || (only_project && f.scope != "project") {
                    continue;
                }
                let is_default = configured
                    .as_deref()
                    .map_or(f.template.is_default, |d| d == f.template.id);
                let default = if is_default { " (default)" } else { "" };
                println!(
                    "{:<24} {:<9} {}{default}  [{}]\n{:<34} needs: {}",
                    f.template.id,
                    f.scope,
                    f.template.name,
                    f.source,
                    "",
                    needs(&f.template)
                );
            }
            for e in &errors {
                eprintln!("{e}");
            }
            Ok(if errors.is_empty() { 0 } else { 2 })
        }
        TemplateCommand::Show { template, path } => {
            let project = path.canonicalize()?;
            let found = templates::resolve(Some(&template), &project, &home, None)?;
            print!("{}", spec::to_yaml(&found.template)?);
            Ok(0)
        }
        TemplateCommand::Test {
            file,
            script,
            path,
            task,
        } => super::template_test::run(&file, &script, &path, &task).await,
        other => super::template_manage::run(other, home),
    }
}

/// `schema`: writes (or checks) `schemas/*.schema.json`.
pub fn schema(args: SchemaArgs) -> Result<u8> {
    let mut stale = Vec::new();
    for (name, value) in schema::all_schemas() {
        let path = args.out.join(name);
        let text = schema::render(&value);
        if args.check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(&args.out)?;
            std::fs::write(&path, text)?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        bail!(
            "schemas out of date (run `autowrkers schema --out {}`): {}",
            args.out.display(),
            stale.join(", ")
        );
    }
    Ok(0)
}

/// What a template needs to run here: the keys of its providers, the agent CLIs it starts, the
/// local servers it calls (each provider's first choice; fallbacks are optional).
pub(super) fn needs(template: &spec::WorkflowTemplate) -> String {
    let mut out: Vec<String> = Vec::new();
    for config in template.phases.iter().map(|p| &p.provider_config) {
        let kind = config.provider_type;
        let need = if kind.is_agent_cli() {
            Some(format!("the {} CLI", kind.as_str()))
        } else if let Some(info) = autowrkers::providers::info(kind) {
            match (info.key_required, info.key_envs.first(), &config.api_url) {
                (true, Some(var), _) => Some((*var).to_owned()),
                (_, _, Some(url)) => Some(format!("a server at {url}")),
                _ => None,
            }
        } else {
            None
        };
        if let Some(n) = need
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    if out.is_empty() {
        "nothing".to_owned()
    } else {
        out.join(", ")
    }
}
