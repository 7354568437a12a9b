//! The read-only workflow commands: `status`, `list`, `logs`, `artifacts`.

use anyhow::Result;

use super::args::{IdArgs, ListArgs, LogsArgs, StatusArgs};
use super::output::{cost, icon};
use autowrkers::engine::short;
use autowrkers::spec::{WorkflowStatus, public_artifact_id};
use autowrkers::store::{self, ExecutionDir, ExecutionSummary, Home};

fn print_run(run: &autowrkers::spec::PhaseExecution) {
    let verdict = match run.passed {
        Some(true) => "passed",
        Some(false) => "not passed",
        None => "",
    };
    let served = run
        .model_served
        .as_deref()
        .filter(|m| autowrkers::providers::model_mismatch(&run.model_used, m))
        .map(|m| format!(" (MISMATCH: served by {m})"))
        .unwrap_or_default();
    println!(
        "{} it.{} {:<22} {:<10} {:<24} {:>7} in {:>7} out  {:<10} {verdict}",
        icon(run.status),
        run.iteration,
        run.phase_name,
        run.provider_used,
        format!("{}{served}", run.model_used),
        run.tokens.input + run.tokens.cached_input,
        run.tokens.output,
        cost(run.cost_usd),
    );
    if !run.error_message.is_empty() {
        println!("      {}", run.error_message);
    }
}

/// `workflow status [id]`.
pub fn status(args: StatusArgs, home: Home) -> Result<u8> {
    let dir = match &args.id {
        Some(id) => store::find_execution(&home, Some(&args.path), id)?,
        None => newest(&home, &args.path)?,
    };
    let state = dir.read_state()?;
    // A broken hand edit must not hide the execution: show the state and the problem.
    let (request, problem) = match dir.read_request() {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e.to_string())),
    };
    if args.json {
        let result = autowrkers::engine::outcome(&dir, &state);
        let value = serde_json::json!({"result": result, "execution": request, "state": state, "problem": problem});
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(0);
    }
    let live = store::runner_alive(&dir);
    let mut status = state.status.as_str().to_owned();
    if state.status == WorkflowStatus::Running && !live {
        status.push_str(&format!(
            " (interrupted: no runner; `autowrkers resume {}`)",
            short(&state.id)
        ));
    }
    println!("execution  {}", state.id);
    if let Some(request) = &request {
        println!("task       {}", request.task_description);
        println!("project    {}", request.project_path);
        println!(
            "template   {} ({})",
            request.template.name, request.template_source
        );
    }
    println!("status     {status}");
    let max = request
        .as_ref()
        .map_or("?".to_owned(), |r| r.template.max_iterations.to_string());
    println!("iteration  {}/{max}", state.iteration);
    if let Some(ws) = &state.workspace {
        let branch = ws.branch.as_deref().unwrap_or("(in place)");
        println!("workspace  {} on {branch}", ws.dir);
    }
    if !state.message.is_empty() {
        println!("message    {}", state.message);
    }
    if let Some(problem) = &problem {
        println!("problem    {problem}");
        println!("           (a runner keeps the last valid execution.yaml; fix the file)");
    }
    println!();
    let iterations: Vec<u32> = {
        let mut v: Vec<u32> = state.phase_executions.iter().map(|r| r.iteration).collect();
        v.dedup();
        v
    };
    for it in iterations {
        let runs: Vec<_> = state
            .phase_executions
            .iter()
            .filter(|r| r.iteration == it)
            .collect();
        for run in &runs {
            print_run(run);
        }
        let mut tokens = autowrkers::spec::TokenUsage::default();
        let mut usd = Some(0.0);
        for r in &runs {
            tokens.add(&r.tokens);
            usd = usd.zip(r.cost_usd).map(|(a, b)| a + b);
        }
        let known = runs
            .iter()
            .filter_map(|r| r.cost_usd)
            .fold(0.0, |a, b| a + b);
        let usd = usd.map_or(format!("${known:.4} + unknown"), |u| format!("${u:.4}"));
        println!(
            "   iteration {it}: {} in / {} out tokens, {usd}\n",
            tokens.input + tokens.cached_input,
            tokens.output
        );
    }
    // The reviewers' findings, iteration by iteration, matched across them.
    if let Some(r) = &request {
        for h in autowrkers::engine::findings::track(&dir, &state, &r.template.convergence) {
            let ids = |v: &[String]| {
                if v.is_empty() {
                    "-".to_owned()
                } else {
                    v.join(",")
                }
            };
            println!(
                "findings   iteration {}: new {} · still open {} · resolved {} · reopened {}",
                h.iteration,
                ids(&h.new),
                ids(&h.open),
                ids(&h.resolved),
                ids(&h.reopened)
            );
        }
    }
    let total = if state.cost_incomplete {
        format!("${:.4} + unknown", state.total_cost_usd)
    } else {
        format!("${:.4}", state.total_cost_usd)
    };
    println!(
        "total: {} in, {} out tokens ({} cached) · cost {total} · {} artifacts",
        state.total_tokens.input + state.total_tokens.cached_input,
        state.total_tokens.output,
        state.total_tokens.cached_input,
        state.artifacts.len()
    );
    if let Some(limit) = request.as_ref().and_then(|r| r.budget_limit) {
        let unknown = if state.cost_incomplete {
            " (some costs unknown: not counted)"
        } else {
            ""
        };
        println!(
            "budget: ${:.4} / ${limit:.2}{unknown}",
            state.total_cost_usd
        );
    }
    Ok(0)
}

/// The newest execution of the project at `path`.
fn newest(home: &Home, path: &std::path::Path) -> Result<ExecutionDir> {
    let project = path.canonicalize()?;
    let found = match store::Catalog::open(home, Some(&project))? {
        Some(catalog) => catalog
            .of_project(&project)
            .next()
            .map(|s| ExecutionDir::new(s.dir)),
        None => {
            let mut all = store::executions_of(&project);
            all.sort_by_key(|d| d.read_request().map(|r| r.created_at).unwrap_or_default());
            all.pop()
        }
    };
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "no executions in {}; start one with `autowrkers run --task \"…\"`",
            project.display()
        )
    })
}

/// A task on one table row: its first line, with `…` when there is more.
fn one_line(task: &str) -> String {
    let mut lines = task.lines();
    let first = lines.next().unwrap_or("").trim();
    if lines.any(|l| !l.trim().is_empty()) {
        format!("{first} …")
    } else {
        first.to_owned()
    }
}

/// `workflow list`: newest first from the sled index, each row checked against its files;
/// from the files alone when the index cannot be opened.
pub fn list(args: ListArgs, home: Home) -> Result<u8> {
    let project = args.path.canonicalize().ok();
    let catalog = store::Catalog::open(&home, project.as_deref())?;
    let wanted = |status: &str| {
        args.status
            .as_deref()
            .is_none_or(|s| s == status || (s == "running" && status == "interrupted"))
    };
    let mut rows: Box<dyn Iterator<Item = ExecutionSummary>> = match &catalog {
        Some(c) if args.all => Box::new(c.all().into_iter()),
        Some(c) => Box::new(c.newest_first()),
        None => {
            let mut all: Vec<ExecutionSummary> = store::all_executions(&home, project.as_deref())?
                .iter()
                .map(store::summarize)
                .collect();
            all.sort_by(|a, b| b.created_at.cmp(&a.created_at));
            Box::new(all.into_iter())
        }
    };
    let limit = if args.all { usize::MAX } else { args.limit };
    let mut shown = 0;
    let mut more = false;
    // One buffered writer: ten thousand rows are a few writes, not one each.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for summary in rows.by_ref() {
        let status = store::shown_status(&summary.status, &ExecutionDir::new(&summary.dir));
        if !wanted(&status) {
            continue;
        }
        if shown == limit {
            more = true;
            break;
        }
        shown += 1;
        if let Err(e) = print_row(&mut out, &summary, &status, args.json) {
            return quiet_on_closed_pipe(e);
        }
    }
    if let Err(e) = std::io::Write::flush(&mut out) {
        return quiet_on_closed_pipe(e);
    }
    if more && !args.json {
        eprintln!("… and older ones (`--all` lists every execution, `--limit N` more)");
    }
    // The rows borrow the catalog; this command opens the index no more.
    drop(rows);
    if let Some(catalog) = catalog {
        catalog.leave();
    }
    Ok(0)
}

/// A reader that stopped reading (`| head`) ends the listing quietly; other errors stand.
fn quiet_on_closed_pipe(e: std::io::Error) -> Result<u8> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(0)
    } else {
        Err(e.into())
    }
}

fn print_row(
    out: &mut impl std::io::Write,
    s: &ExecutionSummary,
    status: &str,
    json: bool,
) -> std::io::Result<()> {
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"id": s.id, "status": status, "task": s.task, "project": s.project, "created_at": s.created_at})
        )
    } else {
        writeln!(
            out,
            "{}  {:<18} {}  {}  ({})",
            short(&s.id),
            status,
            s.created_at,
            one_line(&s.task),
            s.project
        )
    }
}

/// `workflow logs`.
pub fn logs(args: LogsArgs, home: Home) -> Result<u8> {
    let dir = store::find_execution(&home, Some(&args.path), &args.id)?;
    let state = dir.read_state()?;
    let mut printed = false;
    for run in &state.phase_executions {
        if let Some(p) = &args.phase
            && &run.phase_id != p
            && &run.phase_name != p
        {
            continue;
        }
        let path = dir.log_path(&run.phase_id, run.iteration);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        println!(
            "─── {} (iteration {}) [{}] ───",
            run.phase_name, run.iteration, run.provider_used
        );
        println!("{}", text.trim_end());
        printed = true;
    }
    if args.follow {
        return follow(&dir);
    }
    if !printed {
        eprintln!("no logs yet");
    }
    Ok(0)
}

/// `workflow artifacts`.
pub fn artifacts(args: IdArgs, home: Home) -> Result<u8> {
    let dir = store::find_execution(&home, Some(&args.path), &args.id)?;
    let state = dir.read_state()?;
    for a in &state.artifacts {
        let edited = if a.is_edited { " (edited)" } else { "" };
        let id = public_artifact_id(&state.id, a.iteration, &a.phase_id);
        if args.output.json {
            let mut value = serde_json::to_value(a)?;
            value["id"] = id.into();
            println!("{value}");
        } else {
            println!(
                "{id:<48} {:<20} {}{edited}",
                a.artifact_type.as_str(),
                dir.root().join(&a.file_path).display()
            );
        }
    }
    Ok(0)
}

/// Prints the execution's events as they are appended, until it stops: reattaches to a run
/// going on in another process. Woken by file events, not by polling.
fn follow(dir: &ExecutionDir) -> Result<u8> {
    use notify::Watcher;
    let mut tail = autowrkers::store::EventTail::from_end(dir);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if e.is_ok_and(|e| autowrkers::store::is_change(&e)) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(dir.root(), notify::RecursiveMode::NonRecursive)?;
    let color = super::output::use_color(
        super::output_args::ColorChoice::Auto,
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
    );
    loop {
        // Asked before the files are read: a runner lets go of its execution only after its
        // last event and state are written, so when it was already gone here, what is read
        // next is all there will be. Asked after, a runner that ended between the reads and the
        // question would leave its last event unread and its run taken for a dead one.
        let alive = autowrkers::store::runner_alive(dir);
        let fresh = tail.read_new()?;
        for (_, line) in &fresh {
            let Ok(event) = serde_json::from_str::<autowrkers::engine::Event>(line) else {
                continue;
            };
            if let Some(text) = super::output::describe(&event, color) {
                println!("{} {text}", event.ts.get(11..19).unwrap_or(""));
            }
        }
        let state = dir.read_state()?;
        let stopped = !matches!(
            state.status,
            WorkflowStatus::Running | WorkflowStatus::Pending
        );
        if stopped || (!alive && fresh.is_empty()) {
            eprintln!(
                "execution {} is {}",
                short(&state.id),
                state.status.as_str()
            );
            return Ok(super::status_code(state.status));
        }
        // Woken by any change in the folder; the timeout notices a runner that died silently.
        let _ = rx.recv_timeout(std::time::Duration::from_secs(2));
    }
}
