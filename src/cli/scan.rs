//! `run --analyze`: a directory scan (seed §2.1). The template's analyzer reads the project's
//! files and proposes tasks (a `task_list`: title, description, files, priority, estimated
//! cost); the user chooses on a terminal, or `--pick 1,3` / `--max-tasks N` choose without one;
//! each chosen task becomes its own execution, one after another or `--parallel K` at once,
//! within the budget given (`--budget` counts the scan and every run).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Result, anyhow, bail};

use super::args::StartArgs;
use super::drive::drive;
use autowrkers::engine::{Engine, StartOptions, short};
use autowrkers::spec::{
    ArtifactType, IterationBehavior, PhaseRole, Task, TaskList, TriggerMode, WorkflowTemplate,
};
use autowrkers::store::ExecutionDir;
use autowrkers::templates::Found;
use autowrkers::triggers::pool::RunnerPool;

/// How many files the scan lists, and how much of the small ones' text it shows.
const LISTED: usize = 300;
const SHOWN_FILE: u64 = 4096;
const SHOWN_TOTAL: usize = 48 * 1024;

/// The scan's task: what to propose, and the project's files (the smaller ones in full).
fn scan_task(project: &Path) -> String {
    let mut files = Vec::new();
    if let Ok(repo) = git2::Repository::open(project)
        && let Ok(index) = repo.index()
    {
        for entry in index.iter().take(LISTED) {
            files.push(String::from_utf8_lossy(&entry.path).into_owned());
        }
    }
    let mut text = String::from(
        "Scan this project and propose independent, well-scoped tasks worth doing now: bugs, \
missing tests, unclear or duplicated code, missing documentation. For each task give a title, \
a description of the change, the files it touches, a priority (high, medium or low) and \
estimated_cost_usd, what carrying it out with this pipeline may cost. Put the most valuable \
first.\n\nThe project's files:\n",
    );
    for f in &files {
        let size = std::fs::metadata(project.join(f)).map_or(0, |m| m.len());
        text.push_str(&format!("- {f} ({size} bytes)\n"));
    }
    let mut shown = 0;
    text.push_str("\nThe smaller files, in full:\n");
    for f in &files {
        let path = project.join(f);
        if std::fs::metadata(&path).map_or(true, |m| m.len() > SHOWN_FILE) {
            continue;
        }
        let Ok(body) = std::fs::read_to_string(&path) else {
            continue;
        };
        if shown + body.len() > SHOWN_TOTAL {
            break;
        }
        shown += body.len();
        text.push_str(&format!("\n--- {f} ---\n{}\n", body.trim_end()));
    }
    text
}

/// The template of the scan: the analyzer of `template` alone, one iteration.
fn scan_template(template: &WorkflowTemplate) -> Result<WorkflowTemplate> {
    let mut analyzer = template
        .phases
        .iter()
        .find(|p| p.role == PhaseRole::Analyzer)
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "the template `{}` has no analyzer phase to scan with: pick one that has (--template)",
                template.id
            )
        })?;
    analyzer.order = 1;
    analyzer.parallel_with = None;
    let mut scan = template.clone();
    scan.name = format!("{} (scan)", template.name);
    scan.phases = vec![analyzer];
    scan.max_iterations = 1;
    scan.iteration_behavior = IterationBehavior::AutoIterate;
    Ok(scan)
}

/// The tasks the scan's analyzer proposed.
fn proposed(dir: &ExecutionDir) -> Result<Vec<Task>> {
    let state = dir.read_state()?;
    let artifact = state
        .artifacts
        .iter()
        .rfind(|a| a.artifact_type == ArtifactType::TaskList)
        .ok_or_else(|| anyhow!("the scan wrote no task list"))?;
    let list: TaskList = serde_json::from_str(&dir.read_artifact(&artifact.file_path)?)?;
    Ok(list.tasks)
}

/// The 1-based numbers of the tasks to start.
fn choose(tasks: &[Task], args: &StartArgs) -> Result<Vec<usize>> {
    if !args.pick.is_empty() {
        if let Some(bad) = args.pick.iter().find(|n| **n == 0 || **n > tasks.len()) {
            bail!("--pick {bad}: the scan proposed tasks 1 to {}", tasks.len());
        }
        return Ok(args.pick.clone());
    }
    if let Some(n) = args.max_tasks {
        return Ok((1..=n.min(tasks.len())).collect());
    }
    if !std::io::stdin().is_terminal() {
        bail!("choose the tasks to start: --pick 1,3 or --max-tasks N (no terminal to ask on)");
    }
    eprint!("Start which tasks? Numbers like 1,3, `all`, or Enter for none: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim();
    if line == "all" {
        return Ok((1..=tasks.len()).collect());
    }
    line.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.trim().parse::<usize>() {
            Ok(n) if (1..=tasks.len()).contains(&n) => Ok(n),
            _ => Err(anyhow!("`{s}` is not a task number (1 to {})", tasks.len())),
        })
        .collect()
}

fn task_text(t: &Task) -> String {
    let mut text = t.title.clone();
    if !t.description.is_empty() {
        text.push_str(&format!("\n\n{}", t.description));
    }
    if !t.files.is_empty() {
        text.push_str(&format!("\n\nFiles: {}", t.files.join(", ")));
    }
    text
}

/// Runs the scan, then the chosen tasks. The exit code is the worst of the runs.
pub async fn run(engine: &Engine, args: &StartArgs, project: &Path, found: Found) -> Result<u8> {
    // The caller checked the whole template can start here; the scan runs its analyzer.
    let scan = scan_template(&found.template)?;
    let config = engine.project_config(project)?;
    let budget = args.budget.or(config.budget_limit);
    let options = |task: String, template: WorkflowTemplate, budget: Option<f64>| StartOptions {
        trigger: TriggerMode::DirectoryScan,
        project: project.to_path_buf(),
        task,
        template,
        template_source: found.source.clone(),
        budget,
        in_place: false,
        sandbox: args.sandbox,
        include_uncommitted: args.include_uncommitted,
        no_verify: args.no_verify,
        interactive: false,
        github: None,
    };
    let dir = engine.create(options(scan_task(project), scan, budget))?;
    eprintln!(
        "scanning {} (execution {})",
        project.display(),
        short(&dir.id())
    );
    let code = drive(engine, &dir, &args.output).await?;
    if code != 0 {
        return Ok(code);
    }
    let mut spent = dir.read_state()?.total_cost_usd;
    let tasks = proposed(&dir)?;
    if tasks.is_empty() {
        eprintln!("the scan proposed no task");
        return Ok(0);
    }
    for (n, t) in tasks.iter().enumerate() {
        let priority = t.priority.as_deref().unwrap_or("-");
        let cost = t
            .estimated_cost_usd
            .map_or(String::new(), |c| format!(" (≈${c:.2})"));
        eprintln!(
            "{:>3}. [{priority}] {}{cost} — {}",
            n + 1,
            t.title,
            t.files.join(", ")
        );
    }
    let chosen = choose(&tasks, args)?;
    let mut worst = 0;
    let exe = std::env::current_exe()?;
    let mut pool = (args.parallel > 1).then(|| RunnerPool::new(exe, args.parallel));
    for (k, n) in chosen.iter().enumerate() {
        let left = budget.map(|b| b - spent);
        if left.is_some_and(|l| l <= 0.0) {
            eprintln!(
                "budget used up: {} chosen task(s) not started",
                chosen.len() - k
            );
            return Ok(3);
        }
        // Runs at once share what is left; one after another, each may use it all.
        let share = match &pool {
            Some(_) => left.map(|l| l / (chosen.len() - k) as f64),
            None => left,
        };
        let full = found.template.clone();
        let dir = engine.create(options(task_text(&tasks[n - 1]), full, share))?;
        eprintln!("task {n}: execution {}", short(&dir.id()));
        match &mut pool {
            Some((p, _)) => p.submit(dir)?,
            None => {
                worst = worst.max(drive(engine, &dir, &args.output).await?);
                spent += dir.read_state()?.total_cost_usd;
            }
        }
    }
    if let Some((mut p, mut endings)) = pool {
        while let Some(done) = p.next_finished(&mut endings).await {
            let status = done.dir.read_state().map(|s| s.status).ok();
            eprintln!(
                "{}  {}",
                short(&done.dir.id()),
                status.map_or("unreadable", |s| s.as_str())
            );
            worst = worst.max(status.map_or(1, super::status_code));
        }
    }
    Ok(worst)
}
