//! The live view (seed §7) on a terminal. The runner works in a detached process of its own
//! (so `q` can leave it running); this view follows its `events.ndjson` — woken by file
//! events — and draws the seed's box: header, one row per phase, the iteration / cost / elapsed
//! line, and the running phase's output collapsed to its last lines. Keys: `q` detach, `p`
//! pause, `s` skip the running phase (asking which when several run), `e` expand or collapse
//! the output.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use notify::Watcher;

use super::output::{cost, paint};
use super::terminal::{KeyMode, spawn_key_reader, width};
use autowrkers::engine::{Event, EventKind, short};
use autowrkers::spec::{ExecutionRequest, PhaseStatus, WorkflowStatus};
use autowrkers::store::ExecutionDir;

const COLLAPSED_LINES: usize = 5;
const EXPANDED_LINES: usize = 30;

#[derive(Default, Clone)]
struct Row {
    status: Option<PhaseStatus>,
    passed: Option<bool>,
    provider: String,
    started: Option<Instant>,
    duration_ms: Option<u64>,
    cost: Option<Option<f64>>,
}

/// What the view knows, built from events.
struct View {
    request: ExecutionRequest,
    rows: HashMap<String, Row>,
    iteration: u32,
    total_cost: f64,
    cost_unknown: bool,
    output: Vec<String>,
    running: Vec<String>,
    expanded: bool,
    started: Instant,
    color: bool,
    notes: Vec<String>,
    /// `s` pressed while several phases run: the phases offered, chosen by their number.
    choosing_skip: Option<Vec<String>>,
}

impl View {
    fn apply(&mut self, event: &Event) {
        match &event.kind {
            EventKind::PhaseStarted {
                phase_id,
                iteration,
                provider,
                model,
                ..
            } => {
                self.iteration = *iteration;
                let row = self.rows.entry(phase_id.clone()).or_default();
                *row = Row {
                    status: Some(PhaseStatus::Running),
                    provider: format!("{provider} {model}").trim().to_owned(),
                    started: Some(Instant::now()),
                    ..Row::default()
                };
                self.running.retain(|p| p != phase_id);
                self.running.push(phase_id.clone());
                self.output.clear();
            }
            EventKind::PhaseProgress { text, .. } => {
                self.output.extend(text.lines().map(str::to_owned));
                let keep = EXPANDED_LINES * 4;
                if self.output.len() > keep {
                    self.output.drain(..self.output.len() - keep);
                }
            }
            EventKind::PhaseCompleted {
                phase_id,
                status,
                passed,
                cost_usd,
                duration_ms,
                up_to_date,
                ..
            } => {
                let row = self.rows.entry(phase_id.clone()).or_default();
                row.status = Some(*status);
                row.passed = *passed;
                if !up_to_date {
                    row.duration_ms = Some(*duration_ms);
                    row.cost = Some(*cost_usd);
                    match cost_usd {
                        Some(c) => self.total_cost += c,
                        None => self.cost_unknown = true,
                    }
                }
                self.running.retain(|p| p != phase_id);
            }
            EventKind::Iteration { iteration, reason } => {
                self.iteration = *iteration;
                self.notes
                    .push(format!("🔁 iteration {iteration}: {reason}"));
                // The phases of the loop run again; the ones before it keep their results.
                let start = self.request.template.iteration_start_order();
                for phase in &self.request.template.phases {
                    if start.is_some_and(|o| phase.order >= o) {
                        self.rows.remove(&phase.id);
                    }
                }
            }
            other => {
                let line = match other {
                    EventKind::ControlNoticed { request, detail } => {
                        format!("⏯️  {request}: {detail}")
                    }
                    EventKind::BudgetWarning {
                        scope,
                        spent,
                        limit,
                    } => format!("⚠️  {scope} budget: ${spent:.4} of ${limit:.2}"),
                    EventKind::ProviderFallback { from, to, .. } => format!("↪ {from} → {to}"),
                    EventKind::ModelMismatch {
                        requested, served, ..
                    } => format!("⚠️  {requested} answered by {served}"),
                    _ => return,
                };
                self.notes.push(line);
            }
        }
    }

    fn frame(&self) -> String {
        let w = width().clamp(40, 160);
        let rule = |l: char, r: char| format!("{l}{}{r}", "═".repeat(w.saturating_sub(2)));
        let fit = |s: String| -> String { s.chars().take(w.saturating_sub(1)).collect() };
        let mut out = vec![rule('╔', '╗')];
        out.push(fit(format!(
            "║  🔄 WORKFLOW: {}",
            self.request.task_description
        )));
        out.push(fit(format!("║  📁 Path: {}", self.request.project_path)));
        out.push(fit(format!(
            "║  📋 Template: {}",
            self.request.template.name
        )));
        out.push(rule('╠', '╣'));
        let steps = self.request.template.steps();
        let total = self.request.template.phases.len();
        let mut n = 0;
        for step in steps {
            for phase in step {
                n += 1;
                let row = self.rows.get(&phase.id).cloned().unwrap_or_default();
                let status = row.status.unwrap_or(PhaseStatus::Pending);
                let icon = match (status, row.passed) {
                    (PhaseStatus::Completed, Some(false)) => "⚠️ ",
                    _ => super::output::icon(status),
                };
                let elapsed = match (row.duration_ms, row.started) {
                    (Some(ms), _) => human(Duration::from_millis(ms)),
                    (None, Some(t)) if status == PhaseStatus::Running => human(t.elapsed()),
                    _ => "-".to_owned(),
                };
                let money = row.cost.map_or("-".to_owned(), cost);
                let bar = match status {
                    PhaseStatus::Completed | PhaseStatus::Skipped | PhaseStatus::Failed => {
                        "████████████".to_owned()
                    }
                    PhaseStatus::Running => {
                        let filled = (self.started.elapsed().as_millis() / 250 % 12) as usize;
                        format!("{}{}", "█".repeat(filled), "░".repeat(12 - filled))
                    }
                    _ => "░░░░░░░░░░░░".to_owned(),
                };
                let provider = if row.provider.is_empty() {
                    phase.provider_config.provider_type.as_str().to_owned()
                } else {
                    row.provider.clone()
                };
                let line = fit(format!(
                    "║  {icon} Phase {n}/{total}: {:<20} [{:<22}] {:>7} {:>14}  {bar}",
                    phase.name.chars().take(20).collect::<String>(),
                    provider.chars().take(22).collect::<String>(),
                    elapsed,
                    money
                ));
                out.push(paint(&line, status, self.color));
            }
        }
        out.push(rule('╠', '╣'));
        let budget = self
            .request
            .budget_limit
            .map(|b| format!("/${b:.2}"))
            .unwrap_or_default();
        let unknown = if self.cost_unknown { "+?" } else { "" };
        out.push(fit(format!(
            "║  📊 Iteration: {}/{}  │  💰 Cost: ${:.4}{unknown}{budget}  │  ⏱️  Elapsed: {}",
            self.iteration.max(1),
            self.request.template.max_iterations,
            self.total_cost,
            human(self.started.elapsed())
        )));
        out.push(rule('╚', '╝'));
        for note in self.notes.iter().rev().take(3).rev() {
            out.push(fit(note.clone()));
        }
        if let Some(phase) = self
            .running
            .last()
            .and_then(|id| self.request.template.phase(id))
        {
            let row = self.rows.get(&phase.id).cloned().unwrap_or_default();
            let limit = if self.expanded {
                EXPANDED_LINES
            } else {
                COLLAPSED_LINES
            };
            let marker = if self.expanded { "[-]" } else { "[+]" };
            out.push(fit(format!(
                "─── {}: {} [{}] {marker} {}",
                "Phase",
                phase.name,
                row.provider,
                "─".repeat(w / 3)
            )));
            let hidden = self.output.len().saturating_sub(limit);
            if hidden > 0 {
                out.push(fit(format!(
                    "│ ... {hidden} lines hidden. Press 'e' to expand."
                )));
            }
            for line in &self.output[hidden..] {
                out.push(fit(format!("│ {line}")));
            }
            out.push(fit(format!("└{}", "─".repeat(w.saturating_sub(2)))));
        }
        if let Some(choices) = &self.choosing_skip {
            let listed: Vec<String> = choices
                .iter()
                .enumerate()
                .map(|(i, id)| format!("{} {id}", i + 1))
                .collect();
            out.push(fit(format!(
                "Skip which phase? {}  (another key: none)",
                listed.join("  ")
            )));
        }
        out.push(
            "[Press 'q' to detach, 'p' to pause, 's' to skip phase, 'e' to expand/collapse]"
                .to_owned(),
        );
        out.join("\n")
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// How the view ended.
pub enum Ending {
    /// The execution stopped with this status.
    Stopped(WorkflowStatus),
    /// The user pressed `q`; the runner goes on.
    Detached,
    /// The user pressed Ctrl-C.
    Interrupted,
}

/// Asks the runner to skip phase `id` of `iteration` (through `execution.yaml`).
fn skip(dir: &ExecutionDir, iteration: u32, id: &str) -> Result<()> {
    let key = autowrkers::spec::run_key(iteration, id);
    dir.edit_request(|r| {
        if !r.control.skip.contains(&key) {
            r.control.skip.push(key);
        }
    })?;
    Ok(())
}

/// Follows `dir` until the execution stops, the user detaches or interrupts.
pub async fn watch(
    dir: &ExecutionDir,
    runner: &mut std::process::Child,
    color: bool,
) -> Result<Ending> {
    let runner_pid = runner.id();
    let request = dir.read_request()?;
    let mut view = View {
        request,
        rows: HashMap::new(),
        iteration: 1,
        total_cost: 0.0,
        cost_unknown: false,
        output: Vec::new(),
        running: Vec::new(),
        expanded: false,
        started: Instant::now(),
        color,
        notes: Vec::new(),
        choosing_skip: None,
    };
    let (wake_tx, mut wake) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if e.is_ok_and(|e| autowrkers::store::is_change(&e)) {
            let _ = wake_tx.send(());
        }
    })?;
    watcher.watch(dir.root(), notify::RecursiveMode::NonRecursive)?;
    let _keys_mode = KeyMode::enter();
    let (key_tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    spawn_key_reader(key_tx);
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
    bar.set_style(
        ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut tail = autowrkers::store::EventTail::from_start(dir);
    // Events before this offset are history (an earlier run of the execution): they fill the
    // rows but cannot end the view.
    let history_end = autowrkers::store::EventTail::from_end(dir).offset();
    // The runner was seen holding the execution's lock: once it no longer does, it is gone.
    let mut seen_alive = false;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut skip_asked = false;
    let ending = loop {
        // New events since last time.
        let mut stop = None;
        for (at, line) in tail.read_new()? {
            let historic = at < history_end;
            let Ok(event) = serde_json::from_str::<Event>(&line) else {
                continue;
            };
            view.apply(&event);
            if historic {
                continue;
            }
            stop = stop.or(match &event.kind {
                EventKind::Completed { .. } => Some(WorkflowStatus::Completed),
                EventKind::Failed { status, .. } => Some(*status),
                EventKind::Cancelled {} => Some(WorkflowStatus::Cancelled),
                EventKind::Paused { .. } => Some(WorkflowStatus::Paused),
                EventKind::ApprovalNeeded { .. } => Some(WorkflowStatus::AwaitingApproval),
                _ => None,
            });
        }
        if std::mem::take(&mut skip_asked) {
            let skippable: Vec<String> = view
                .running
                .iter()
                .filter(|id| view.request.template.phase(id).is_some_and(|p| p.can_skip))
                .cloned()
                .collect();
            // One running phase is skipped at once; with several, the view asks which.
            match skippable.as_slice() {
                [] => {}
                [only] => skip(dir, view.iteration, only)?,
                _ => view.choosing_skip = Some(skippable),
            }
        }
        bar.set_message(view.frame());
        if let Some(status) = stop {
            break Ending::Stopped(status);
        }
        let alive = autowrkers::store::runner_alive(dir);
        seen_alive |= alive;
        // Before it takes the lock, the runner is starting; after, the lock is the word.
        let exited = matches!(runner.try_wait(), Ok(Some(_)));
        if !alive && (seen_alive || exited) {
            // The runner ended without a final event (killed): report the files' status.
            break Ending::Stopped(dir.read_state()?.status);
        }
        tokio::select! {
            _ = wake.recv() => {}
            _ = tick.tick() => {}
            _ = interrupt.recv() => break Ending::Interrupted,
            key = keys.recv() => match key {
                Some(b'q') => break Ending::Detached,
                Some(b'p') => {
                    dir.edit_request(|r| r.control.pause = true)?;
                }
                // Decided at the top of the loop, once the events written so far are read: the
                // phases running are the ones the file says, not the ones seen a moment ago.
                Some(b's') => skip_asked = true,
                Some(key) if view.choosing_skip.is_some() => {
                    let choices = view.choosing_skip.take().unwrap_or_default();
                    let picked = (key as char)
                        .to_digit(10)
                        .and_then(|n| choices.get((n as usize).checked_sub(1)?));
                    if let Some(id) = picked {
                        skip(dir, view.iteration, id)?;
                    }
                }
                Some(b'e') => view.expanded = !view.expanded,
                _ => {}
            },
        }
    };
    bar.finish();
    if let Ending::Detached = ending {
        eprintln!(
            "detached: the run goes on in the background (pid {runner_pid}).\n`autowrkers workflow status {s}` or `autowrkers workflow logs --follow {s}` reattach.",
            s = short(&dir.id())
        );
    }
    Ok(ending)
}
