//! `template test FILE --script replies.yaml`: the template's whole control flow at $0. Every
//! phase's provider becomes the scripted one, the project is copied to a temporary folder (its
//! committed files, plus its `.autowrkers` settings), the run uses a throwaway home (no ledger
//! lines, no index entries), and the path taken is printed.

use std::path::Path;

use anyhow::{Context, Result};

use super::status_code;
use autowrkers::engine::{Engine, EventBus, EventKind, StartOptions};
use autowrkers::spec::{self, PhaseStatus, ProviderConfig, ProviderType};
use autowrkers::store::Home;

/// Copies `from` into `to`: a clone of the committed files for a git repository (uncommitted
/// work is not part of a run either), a plain copy otherwise; `.autowrkers` settings too.
fn copy_project(from: &Path, to: &Path) -> Result<()> {
    if !autowrkers::git::clone_committed(from, to)? {
        copy_tree(from, to, &[".git"])?;
    }
    let settings = from.join(".autowrkers");
    if settings.is_dir() {
        copy_tree(&settings, &to.join(".autowrkers"), &["executions"])?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(&name), skip)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

/// Runs the test and prints the path.
pub async fn run(file: &Path, script: &Path, project: &Path, task: &str) -> Result<u8> {
    let mut template = spec::load::load_template(file)?;
    let script = script
        .canonicalize()
        .with_context(|| format!("no such script {}", script.display()))?;
    for phase in &mut template.phases {
        if phase.provider_config.provider_type == ProviderType::None {
            continue;
        }
        let model = phase.provider_config.model_name.clone();
        let mut scripted = ProviderConfig {
            provider_type: ProviderType::Scripted,
            model_name: model,
            api_url: None,
            temperature: phase.provider_config.temperature,
            context_length: phase.provider_config.context_length,
            extra_params: Default::default(),
            fallback_provider: None,
        };
        scripted.extra_params.script = Some(script.to_string_lossy().into_owned());
        phase.provider_config = scripted;
    }
    let scratch = tempfile::tempdir()?;
    let copy = scratch.path().join("project");
    copy_project(&project.canonicalize()?, &copy)?;
    let engine = Engine::new(Home::at(scratch.path().join("home")))?;
    engine.preflight(&template, &copy)?;
    let dir = engine.create(StartOptions {
        trigger: autowrkers::spec::TriggerMode::ManualTask,
        project: copy,
        task: task.to_owned(),
        template,
        template_source: file.to_string_lossy().into_owned(),
        budget: None,
        in_place: false,
        sandbox: None,
        include_uncommitted: false,
        no_verify: false,
        interactive: false,
        github: None,
    })?;
    let bus = EventBus::new(&dir);
    let mut rx = bus.subscribe();
    let status = engine.reconcile(&dir, &bus).await?;
    bus.close();
    println!("path taken ({} with scripted replies, $0):", file.display());
    while let Ok(event) = rx.try_recv() {
        let line = match event.kind {
            EventKind::PhaseCompleted {
                phase_name,
                iteration,
                status,
                passed,
                error,
                ..
            } => {
                let verdict = match (status, passed) {
                    (PhaseStatus::Completed, Some(true)) => "passed".to_owned(),
                    (PhaseStatus::Completed, Some(false)) => "did not pass".to_owned(),
                    (PhaseStatus::Completed, None) => "completed".to_owned(),
                    (s, _) => format!("{s:?}: {error}").to_lowercase(),
                };
                format!("  iteration {iteration}: {phase_name} — {verdict}")
            }
            EventKind::Iteration { iteration, reason } => {
                format!("  → iteration {iteration} ({reason})")
            }
            EventKind::ApprovalNeeded { iteration, .. } => {
                format!("  ⏸ iteration {iteration} waits for approval")
            }
            _ => continue,
        };
        println!("{line}");
    }
    let state = dir.read_state()?;
    let message = if state.message.is_empty() {
        String::new()
    } else {
        format!(": {}", state.message)
    };
    println!(
        "outcome: {} after {} iteration(s){message}",
        status.as_str(),
        state.iteration
    );
    Ok(status_code(status))
}
