//! `template create|edit|delete|export|import|set-default`: templates are files; these commands
//! copy, open, remove and mark them, validating every template before it is written.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

use super::args::TemplateCommand;
use autowrkers::spec::{self, WorkflowTemplate};
use autowrkers::store::{Home, ProjectDir, write_atomic};
use autowrkers::templates;

/// Runs the template commands that change files.
pub fn run(cmd: TemplateCommand, home: Home) -> Result<u8> {
    match cmd {
        TemplateCommand::Create {
            name,
            from,
            global,
            path,
        } => {
            let project = path.canonicalize()?;
            let source =
                templates::resolve(from.as_deref().or(Some("default")), &project, &home, None)?;
            let mut template = source.template;
            template.id = id_from(&name);
            template.name = name;
            template.is_default = false;
            template.is_global = global;
            template.created_at = Some(now());
            template.updated_at = template.created_at.clone();
            let file = save(&template, &target_dir(&home, &project, global))?;
            println!("created {} ({})", template.id, file.display());
            Ok(0)
        }
        TemplateCommand::Edit { template, path } => {
            let project = path.canonicalize()?;
            let file = editable_file(&home, &project, &template)?;
            edit(&file)
        }
        TemplateCommand::Delete { template, path } => {
            let project = path.canonicalize()?;
            let file = editable_file(&home, &project, &template)?;
            std::fs::remove_file(&file)?;
            println!("deleted {}", file.display());
            Ok(0)
        }
        TemplateCommand::Export {
            template,
            output,
            path,
        } => {
            let project = path.canonicalize()?;
            let found = templates::resolve(Some(&template), &project, &home, None)?;
            let text = spec::to_yaml(&found.template)?;
            match output {
                Some(out) => {
                    std::fs::write(&out, text)?;
                    eprintln!("wrote {}", out.display());
                }
                None => print!("{text}"),
            }
            Ok(0)
        }
        TemplateCommand::Import {
            file, global, path, ..
        } => {
            let project = path.canonicalize()?;
            let mut template = spec::load::load_template(&file)?;
            template.is_global = global;
            let saved = save(&template, &target_dir(&home, &project, global))?;
            println!("imported {} ({})", template.id, saved.display());
            Ok(0)
        }
        TemplateCommand::SetDefault {
            template,
            global,
            path,
        } => {
            let project = path.canonicalize()?;
            let found = templates::resolve(Some(&template), &project, &home, None)?;
            let config = if global {
                home.config()
            } else {
                ProjectDir::new(&project).config()
            };
            set_key(&config, "default_template", &found.template.id)?;
            println!(
                "default template: {} (in {})",
                found.template.id,
                config.display()
            );
            Ok(0)
        }
        other => bail!("internal: `{other:?}` is not a template management command"),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A file-friendly id: lowercase words joined by `-`.
fn id_from(name: &str) -> String {
    let words: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() {
        "template".to_owned()
    } else {
        words.join("-")
    }
}

fn target_dir(home: &Home, project: &Path, global: bool) -> PathBuf {
    if global {
        home.templates()
    } else {
        ProjectDir::new(project).templates()
    }
}

fn save(template: &WorkflowTemplate, dir: &Path) -> Result<PathBuf> {
    let file = dir.join(format!("{}.yaml", template.id));
    if file.exists() {
        bail!(
            "{} exists already; delete it or pick another name",
            file.display()
        );
    }
    let text = spec::to_yaml(template)?;
    // What is written must load back: check it before it replaces anything.
    spec::load::parse_template(&text, &file)?;
    write_atomic(&file, text.as_bytes())?;
    Ok(file)
}

/// The file of a project or global template (built-in ones cannot be edited in place).
fn editable_file(home: &Home, project: &Path, wanted: &str) -> Result<PathBuf> {
    let (found, _) = templates::list(project, home);
    let f = found
        .into_iter()
        .find(|f| f.template.id == wanted || f.template.name == wanted)
        .ok_or_else(|| anyhow!("no template `{wanted}` (see `autowrkers template list`)"))?;
    if f.scope == "built-in" {
        bail!(
            "`{wanted}` is built in; copy it first: `autowrkers template create --name \"My pipeline\" --from {wanted}`"
        );
    }
    Ok(PathBuf::from(f.source))
}

/// Opens the template in $EDITOR on a copy; the file is replaced only by a valid template (on a
/// terminal, the editor opens again with the problems).
fn edit(file: &Path) -> Result<u8> {
    let original = std::fs::read_to_string(file)?;
    let scratch = tempfile::Builder::new().suffix(".yaml").tempfile()?;
    std::fs::write(scratch.path(), &original)?;
    loop {
        super::artifact::run_editor(scratch.path())?;
        let text = std::fs::read_to_string(scratch.path())?;
        if text == original {
            eprintln!("unchanged");
            return Ok(0);
        }
        match spec::load::parse_template(&text, file) {
            Ok(_) => {
                write_atomic(file, text.as_bytes())?;
                println!("saved {}", file.display());
                return Ok(0);
            }
            Err(e) if std::io::stdin().is_terminal() => {
                eprintln!("{e}\nopening the editor again (leave it unchanged to give up)")
            }
            Err(e) => {
                eprintln!("{e}\nnot saved");
                return Ok(2);
            }
        }
    }
}

/// Sets one top-level key of a YAML config file, keeping the others.
fn set_key(path: &Path, key: &str, value: &str) -> Result<()> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let text = spec::with_top_level_key(&current, key, value, path)?;
    spec::load::parse_config(&text, path)?;
    write_atomic(path, text.as_bytes())?;
    Ok(())
}
