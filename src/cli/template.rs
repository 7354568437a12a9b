//! `template validate|list|show` and `schema`.

use anyhow::{Result, bail};

use super::args::{SchemaArgs, TemplateCommand};
use autowrkers::engine::{Engine, EngineError};
use autowrkers::spec::{self, schema};
use autowrkers::store::Home;
use autowrkers::templates;

/// `template …`.
pub fn run(cmd: TemplateCommand, home: Home) -> Result<u8> {
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
                    "{:<24} {:<9} {}{default}  [{}]",
                    f.template.id, f.scope, f.template.name, f.source
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
        } => super::template_test::run(&file, &script, &path, &task),
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
