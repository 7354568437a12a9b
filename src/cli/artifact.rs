//! `workflow artifact view|edit|export`: artifacts are addressed by the id `workflow artifacts`
//! prints, as `<iteration>/<phase-id>`, or by phase id alone for the latest iteration.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use owo_colors::OwoColorize;

use super::args::ArtifactCommand;
use super::output::use_color;
use autowrkers::engine::{Engine, json_artifact, short};
use autowrkers::spec::{Artifact, ArtifactType, parse_public_artifact_id, run_key};
use autowrkers::store::{self, ExecutionDir, Home, write_atomic};

/// Runs an `artifact` subcommand.
pub fn run(cmd: ArtifactCommand, home: Home) -> Result<u8> {
    match cmd {
        ArtifactCommand::View {
            id,
            artifact,
            path,
            color,
        } => {
            let (dir, a) = find(&home, &path, &id, &artifact)?;
            let text = dir.read_artifact(&a.file_path)?;
            print!(
                "{}",
                render(
                    &text,
                    a.artifact_type,
                    use_color(color, std::io::stdout().is_terminal())
                )
            );
            Ok(0)
        }
        ArtifactCommand::Export {
            id,
            artifact,
            path,
            output,
        } => {
            let (dir, a) = find(&home, &path, &id, &artifact)?;
            let text = dir.read_artifact(&a.file_path)?;
            match output {
                Some(out) => {
                    std::fs::write(&out, &text)?;
                    eprintln!("wrote {}", out.display());
                }
                None => print!("{text}"),
            }
            Ok(0)
        }
        ArtifactCommand::Edit { id, artifact, path } => edit(&home, &path, &id, &artifact),
    }
}

fn find(home: &Home, path: &Path, id: &str, artifact: &str) -> Result<(ExecutionDir, Artifact)> {
    let dir = store::find_execution(home, Some(path), id)?;
    let state = dir.read_state()?;
    // The id `workflow artifacts` prints, `<iteration>/<phase>`, or a phase id (latest).
    let public = parse_public_artifact_id(artifact)
        .filter(|(execution, _, _)| *execution == state.id)
        .map(|(_, iteration, phase)| run_key(iteration, &phase));
    let wanted: Vec<&Artifact> = state
        .artifacts
        .iter()
        .filter(|a| Some(&a.id) == public.as_ref() || a.id == artifact || a.phase_id == artifact)
        .collect();
    let found = wanted
        .into_iter()
        .max_by_key(|a| a.iteration)
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "no artifact `{artifact}` in {} (see `workflow artifacts {}`)",
                short(&dir.id()),
                short(&dir.id())
            )
        })?;
    Ok((dir, found))
}

/// Pretty-prints an artifact; colour only when asked.
pub fn render(text: &str, kind: ArtifactType, color: bool) -> String {
    let body = match kind {
        _ if kind.is_json() => serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .map(|s| s + "\n")
            .unwrap_or_else(|| text.to_owned()),
        _ => text.to_owned(),
    };
    if !color {
        return body;
    }
    body.lines()
        .map(|l| match kind {
            ArtifactType::CodeDiff if l.starts_with("+++") || l.starts_with("---") => {
                l.bold().to_string()
            }
            ArtifactType::CodeDiff if l.starts_with('+') => l.green().to_string(),
            ArtifactType::CodeDiff if l.starts_with('-') => l.red().to_string(),
            ArtifactType::CodeDiff if l.starts_with("@@") => l.cyan().to_string(),
            _ if kind.is_json() => match l.split_once("\": ") {
                Some((key, rest)) => format!("{}\": {rest}", key.blue()),
                None => l.to_owned(),
            },
            _ if l.starts_with('#') => l.bold().to_string(),
            _ => l.to_owned(),
        })
        .map(|l| l + "\n")
        .collect()
}

/// Opens `$VISUAL`, `$EDITOR` or `vi` on `file` and waits for it.
pub fn run_editor(file: &Path) -> Result<()> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_owned());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file)
        .status()
        .map_err(|e| anyhow!("cannot start the editor `{editor}`: {e}"))?;
    if !status.success() {
        bail!("the editor `{editor}` exited with {status}");
    }
    Ok(())
}

/// Opens `$EDITOR` on a copy; a JSON artifact must pass its schema (on a terminal the editor is
/// opened again with the reason; otherwise the edit is refused). The new version is written,
/// marked edited in `state.json` and committed on the execution's ref; the next reconcile
/// re-runs every phase whose prompt included it.
fn edit(home: &Home, path: &Path, id: &str, artifact: &str) -> Result<u8> {
    let (dir, a) = find(home, path, id, artifact)?;
    let original = dir.read_artifact(&a.file_path)?;
    let ext = a.artifact_type.extension();
    let scratch = tempfile::Builder::new()
        .suffix(&format!(".{ext}"))
        .tempfile()?;
    let scratch_path: PathBuf = scratch.path().to_path_buf();
    std::fs::write(&scratch_path, &original)?;
    let interactive = std::io::stdin().is_terminal();
    let edited = loop {
        run_editor(&scratch_path)?;
        let text = std::fs::read_to_string(&scratch_path)?;
        if text == original {
            eprintln!("unchanged; nothing to do");
            return Ok(0);
        }
        if !a.artifact_type.is_json() {
            break text;
        }
        match json_artifact(a.artifact_type, text.as_str()) {
            Ok(_) => break text,
            Err(reason) if interactive => {
                eprintln!(
                    "not saved: {reason}\nopening the editor again (leave the file unchanged to give up)"
                );
                let _ = std::fs::write(&scratch_path, &text);
            }
            Err(reason) => {
                eprintln!("refused: {reason}; {} is unchanged", a.file_path);
                return Ok(2);
            }
        }
    };
    let target = dir.artifact_path(&a.file_path)?;
    write_atomic(&target, edited.as_bytes())?;
    // Recorded and committed now, the same way the runner records an edit it finds; with a
    // runner live on the execution, that runner records it.
    if !autowrkers::store::runner_alive(&dir) {
        Engine::new(home.clone())?.record_hand_edits(&dir)?;
    }
    eprintln!(
        "saved {}; `autowrkers resume {}` re-runs the phases that read it",
        a.file_path,
        short(&dir.id())
    );
    Ok(0)
}
