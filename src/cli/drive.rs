//! Following an execution while it runs in the foreground: plain or JSON events, or the live
//! view over a detached runner; and the lines a run ends with (where the change is, what to do
//! next), or `--json`'s `workflow:result` object.

use anyhow::Result;

use super::output::{choose, print_events};
use super::output_args::OutputArgs;
use super::status_code;
use autowrkers::engine::{Engine, EventBus, detached_runner, short};
use autowrkers::spec::WorkflowStatus;
use autowrkers::store::ExecutionDir;

/// Reconciles `dir` in the foreground, printing events, until it stops; Ctrl-C exits 130 and
/// leaves the execution resumable.
pub async fn drive(engine: &Engine, dir: &ExecutionDir, output: &OutputArgs) -> Result<u8> {
    let (mode, color) = choose(output);
    if mode == super::output::Mode::Live {
        return drive_live(dir, color).await;
    }
    let bus = EventBus::new(dir);
    let printer = tokio::spawn(print_events(bus.subscribe(), mode, color));
    // Registered before the run starts: a Ctrl-C at any instant is ours, never the default
    // action (which would kill the process without saying how to resume).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let result = tokio::select! {
        r = engine.reconcile(dir, &bus) => Some(r),
        _ = interrupt.recv() => None,
    };
    bus.close();
    let _ = printer.await;
    let id = dir.id();
    let code = match result {
        None => {
            eprintln!(
                "interrupted; `autowrkers resume {}` continues where it stopped",
                short(&id)
            );
            130
        }
        Some(Err(e)) => return Err(e.into()),
        Some(Ok(status)) => {
            if output.json {
                // The run's exit code stands even when the result cannot be read back.
                if let Err(e) = print_result(dir) {
                    eprintln!("warning: no result object: {e:#}");
                }
            } else {
                hint(dir, status, &id);
            }
            status_code(status)
        }
    };
    Ok(code)
}

/// `--json`'s last line: one `workflow:result` object with everything a script needs.
fn print_result(dir: &ExecutionDir) -> Result<()> {
    let state = dir.read_state()?;
    let result = autowrkers::engine::outcome(dir, &state);
    let mut value = serde_json::to_value(result)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("type".into(), "workflow:result".into());
        map.insert(
            "ts".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        map.insert("execution_id".into(), state.id.clone().into());
    }
    println!("{}", serde_json::to_string(&value)?);
    Ok(())
}

fn hint(dir: &ExecutionDir, status: WorkflowStatus, id: &str) {
    let s = short(id);
    // Read once: the state of a long run is large.
    let state = dir.read_state().ok();
    let message = state
        .as_ref()
        .map(|st| st.message.clone())
        .unwrap_or_default();
    let next = match status {
        WorkflowStatus::Completed => {
            let workspace = state.as_ref().and_then(|st| st.workspace.as_ref());
            match workspace
                .as_ref()
                .and_then(|w| w.branch.as_ref().zip(w.base_commit.as_ref()))
            {
                Some((b, base)) => format!(
                    "completed; the change is on branch {b}:\n  git diff --stat {base}..{b}   # what changed\n  git checkout {b}                # try it"
                ),
                None => "completed".to_owned(),
            }
        }
        // The engine's messages mostly name the command already; it is said once.
        WorkflowStatus::Paused if message.contains("`autowrkers resume") => {
            format!("paused: {message}")
        }
        WorkflowStatus::Paused => format!("paused: {message}\n`autowrkers resume {s}` continues"),
        WorkflowStatus::AwaitingApproval => format!(
            "awaiting approval: {message}\n`autowrkers workflow approve {s}` or `reject {s}`"
        ),
        // The engine's message names the budget to raise and the command that raises it.
        WorkflowStatus::BudgetExceeded if !message.is_empty() => {
            format!("budget exceeded: {message}")
        }
        WorkflowStatus::BudgetExceeded => {
            format!("budget exceeded; raise it, then `autowrkers resume {s}`")
        }
        other => format!("{}: {message}", other.as_str()),
    };
    if let (Ok(request), Some(state)) = (dir.read_request(), state) {
        let cost = super::output::usd_with_unknown(
            state.total_cost_usd,
            state.cost_incomplete,
            state.unknown_cost_calls,
        );
        match request.budget_limit {
            Some(limit) => eprintln!("budget: {cost} / ${limit:.2}"),
            None => eprintln!("cost: {cost}"),
        }
    }
    eprintln!("{next}\n`autowrkers workflow status {s}` shows the details");
}

/// On a terminal: the runner works in a detached process of its own (its output goes to
/// `logs/runner.log`) and the live view follows it; `q` leaves it running.
async fn drive_live(dir: &ExecutionDir, color: bool) -> Result<u8> {
    let exe = std::env::current_exe()?;
    // Its own process group: Ctrl-C in this terminal reaches the view, not the runner.
    let mut child = detached_runner(&exe, dir)?;
    let pid = child.id();
    let ending = super::live::watch(dir, &mut child, color).await?;
    let id = dir.id();
    match ending {
        super::live::Ending::Detached => Ok(0),
        super::live::Ending::Interrupted => {
            // Interrupt the runner as Ctrl-C would have: it stops, the execution stays resumable.
            // SAFETY: signals the runner's own process group, which we created.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGINT);
            }
            let _ = child.wait();
            eprintln!(
                "interrupted; `autowrkers resume {}` continues where it stopped",
                short(&id)
            );
            Ok(130)
        }
        super::live::Ending::Stopped(status) => {
            let _ = child.wait();
            hint(dir, status, &id);
            Ok(status_code(status))
        }
    }
}
