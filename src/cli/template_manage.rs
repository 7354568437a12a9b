//! `template create|edit|delete|export|import|set-default`: templates are files; these commands
//! copy, open, remove and mark them, validating every template before it is written.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::args::TemplateCommand;
use autowrkers::spec;
use autowrkers::store::{Home, write_atomic};
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
            let from = from.as_deref().unwrap_or("default");
            let (template, file) = templates::create_from(&home, &project, from, &name, global)?;
            println!("created {} ({})", template.id, file.display());
            Ok(0)
        }
        TemplateCommand::Edit { template, path } => {
            let project = path.canonicalize()?;
            let file = PathBuf::from(templates::editable(&home, &project, &template)?.source);
            edit(&file)
        }
        TemplateCommand::Delete { template, path } => {
            let project = path.canonicalize()?;
            let file = templates::delete(&home, &project, &template)?;
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
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let (template, saved) = templates::import(&home, &project, &text, &file, global)?;
            println!("imported {} ({})", template.id, saved.display());
            Ok(0)
        }
        TemplateCommand::SetDefault {
            template,
            global,
            path,
        } => {
            let project = path.canonicalize()?;
            let (id, config) = templates::set_default(&home, &project, &template, global)?;
            println!("default template: {id} (in {})", config.display());
            Ok(0)
        }
        other => bail!("internal: `{other:?}` is not a template management command"),
    }
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
