//! `run`, `resume` and the control commands: they write `execution.yaml`, then reconcile in
//! the foreground while printing the events.

use anyhow::Result;

use super::args::{IdArgs, SkipArgs, StartArgs};
use super::drive::drive;
use super::status_code;
use autowrkers::engine::{
    Applier, Control, Engine, EngineError, RequestError, StartOptions, request, request_skip,
    submit,
};
use autowrkers::spec::TriggerMode;
use autowrkers::store::{self, Home};

/// What to tell a user whose providers are not set up.
const SETUP_HINT: &str = "\
Set a key or point the template at a local server, then run again:
  export OPENAI_API_KEY=…          (provider_type: openai)
  export OPENROUTER_API_KEY=…      (provider_type: openrouter)
  Ollama:    provider_type: openai_compatible, api_url: http://localhost:11434/v1
  LM Studio: provider_type: lm_studio (http://localhost:1234/v1, or LM_STUDIO_URL)
Built-in templates work by name: --template openai-only (one OpenAI key), --template ollama-local (a local Ollama);
`autowrkers template list` shows what each needs.";

/// `run` / `workflow start`.
pub async fn start(args: StartArgs, home: Home) -> Result<u8> {
    let path = match &args.project {
        Some(name) => autowrkers::triggers::project_by_name(&home, name)?,
        None => args.path.clone(),
    };
    let Ok(project) = path.canonicalize() else {
        // A usage error (exit 2), with what to do.
        eprintln!(
            "error: no such project directory: {}; give an existing folder with --path",
            path.display()
        );
        return Ok(2);
    };
    // The user's uncommitted files are looked for (a status of their whole checkout, which
    // takes a while in a large one) while the run is set up; the warning comes before it starts.
    let warn_dirty = !(args.include_uncommitted || args.in_place || args.dry_run || args.analyze);
    let dirty = warn_dirty.then(|| {
        let project = project.clone();
        std::thread::spawn(move || {
            autowrkers::git::ProjectRepo::open(&project)
                .map(|repo| repo.uncommitted())
                .unwrap_or_default()
        })
    });
    let engine = Engine::new(home.clone())?;
    let config = engine.project_config(&project)?;
    let mut github = None;
    let (trigger, task) = match (&args.task, args.issue) {
        (Some(task), _) => (TriggerMode::ManualTask, task.clone()),
        (None, Some(number)) => {
            let repo = autowrkers::triggers::github::repository(
                &project,
                args.repo.as_deref(),
                config.github_repo.as_deref(),
            )?;
            let gh = autowrkers::triggers::github::GitHub::new(engine.http(), repo.clone());
            let task = gh.issue_task(number).await?;
            github = Some(autowrkers::spec::GithubIssue { repo, number });
            (TriggerMode::GithubIssue, task)
        }
        (None, None) => (
            TriggerMode::DirectoryScan,
            autowrkers::triggers::ANALYZE_TASK.to_owned(),
        ),
    };
    let found = engine.resolve_template(args.template.as_deref(), &project)?;
    if args.dry_run {
        return dry_run(&engine, &found.template, &project, &task);
    }
    // Nothing is created, and no money spent, for a run that cannot start or cannot pass.
    if let Err(e) = engine.check_startable(&found.template, &project, args.no_verify) {
        if let EngineError::NotReady(lines) = &e {
            let about_keys = lines.iter().any(|u| u.needs_setup());
            let hint = if about_keys { SETUP_HINT } else { "" };
            eprintln!("error: {e}\n{hint}");
            // The default cannot run here: name the built-in template that can, if any.
            if args.template.is_none()
                && let Some(id) = super::init::runnable_built_in(&engine, &project, &home)
                && id != found.template.id
            {
                eprintln!(
                    "With what this machine has, `--template {id}` can run here (or `autowrkers init` makes it the project's default)."
                );
            }
            return Ok(2);
        }
        return Err(e.into());
    }
    if args.analyze {
        return super::scan::run(&engine, &args, &project, found).await;
    }
    let dir = engine.create(StartOptions {
        trigger,
        project,
        task,
        template: found.template,
        template_source: found.source,
        budget: args.budget.or(config.budget_limit),
        in_place: args.in_place,
        sandbox: args.sandbox,
        include_uncommitted: args.include_uncommitted,
        no_verify: args.no_verify,
        interactive: args.interactive,
        github: github.clone(),
    })?;
    let dirty = dirty
        .and_then(|status| status.join().ok())
        .unwrap_or_default();
    if let Some(first) = dirty.first() {
        eprintln!(
            "warning: {} uncommitted file(s) ({first}{}) are not where the implementer starts; pass --include-uncommitted to include them",
            dirty.len(),
            if dirty.len() > 1 { ", …" } else { "" }
        );
    }
    if !args.output.json {
        eprintln!("execution {} ({})", dir.id(), dir.root().display());
    }
    let code = drive(&engine, &dir, &args.output).await?;
    super::publish::tell_github_actions(&dir);
    // An issue's run that completed becomes a pull request.
    if code == 0 && github.is_some() {
        return super::publish::publish_and_say(&engine, &dir, None, "origin", args.output.json)
            .await;
    }
    Ok(code)
}

/// `resume`: clears a pause request and reconciles again.
pub async fn resume(args: IdArgs, home: Home) -> Result<u8> {
    let dir = store::find_execution(&home, Some(&args.path), &args.id)?;
    request(&dir, Control::Resume)?;
    let engine = Engine::new(home)?;
    drive(&engine, &dir, &args.output).await
}

/// The control commands: each only edits `execution.yaml`. A live runner acts on it at its
/// next safe point; when no runner is live, one reconcile pass applies it now (approve then
/// continues the run in the foreground).
pub async fn control(args: IdArgs, home: Home, what: Control) -> Result<u8> {
    let dir = store::find_execution(&home, Some(&args.path), &args.id)?;
    let engine = Engine::new(home)?;
    let applier = match submit(&engine, &dir, what) {
        Ok((_, applier)) => applier,
        Err(e @ RequestError::Ended { .. }) => {
            eprintln!("{e}");
            return Ok(status_code(dir.read_state()?.status));
        }
        Err(e @ RequestError::NotAwaiting { .. }) => {
            eprintln!("{e}");
            return Ok(2);
        }
        Err(e) => return Err(e.into()),
    };
    if applier == Applier::Runner {
        eprintln!(
            "requested {}; the running runner applies it at its next safe point",
            what.as_str()
        );
        return Ok(0);
    }
    drive(&engine, &dir, &args.output).await
}

/// `run --dry-run`: every prompt rendered and priced, nothing called.
fn dry_run(
    engine: &Engine,
    template: &autowrkers::spec::WorkflowTemplate,
    project: &std::path::Path,
    task: &str,
) -> Result<u8> {
    let problems = engine.prompts(project).check(template);
    if let Some((phase, e)) = problems.into_iter().next() {
        return Err(EngineError::Prompts(vec![format!("  {phase}: {e}")]).into());
    }
    let estimates = engine.estimate(template, project, task)?;
    let mut total = 0.0;
    let mut unknown = Vec::new();
    for e in &estimates {
        println!("─── {} [{}] ───", e.name, e.provider);
        println!("{}", e.prompt.trim_end());
        println!();
    }
    println!(
        "{:<24} {:<36} {:>8} {:>8} {:>12} {:>5} {:>10}",
        "phase", "provider", "prompt≈", "out cap", "per call", "runs", "subtotal"
    );
    for e in &estimates {
        let (per, sub) = match e.per_call_usd {
            Some(c) => {
                total += c * f64::from(e.runs);
                (format!("${c:.4}"), format!("${:.4}", c * f64::from(e.runs)))
            }
            None => {
                unknown.push(e.name.clone());
                ("unknown".to_owned(), "unknown".to_owned())
            }
        };
        println!(
            "{:<24} {:<36} {:>8} {:>8} {:>12} {:>5} {:>10}",
            e.name, e.provider, e.prompt_tokens, e.output_cap, per, e.runs, sub
        );
    }
    let unknown = if unknown.is_empty() {
        String::new()
    } else {
        format!(" + unknown for {}", unknown.join(", "))
    };
    println!(
        "total: ${total:.4}{unknown} — one worst-case call per phase run, up to {} iterations; tool-using phases make several calls each",
        template.max_iterations
    );
    Ok(0)
}

/// `workflow skip-phase`: adds the phase run to the skip requests in `execution.yaml`. A live
/// runner stops it at once; otherwise it is skipped when the execution next runs.
pub fn skip_phase(args: SkipArgs, home: Home) -> Result<u8> {
    let dir = store::find_execution(&home, Some(&args.path), &args.id)?;
    let (targets, iteration) = request_skip(&dir, args.phase.as_deref())?;
    eprintln!(
        "requested skip of {} (iteration {iteration})",
        targets.join(", ")
    );
    Ok(0)
}
