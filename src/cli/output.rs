//! How a run's events reach a person or a program: JSON lines (`--json`), plain timestamped
//! lines (no terminal, CI), or a live line per phase on a terminal (indicatif + owo-colors).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use owo_colors::OwoColorize;
use tokio::sync::mpsc::UnboundedReceiver;

use super::output_args::{ColorChoice, OutputArgs};
use autowrkers::engine::{Event, EventKind};
use autowrkers::spec::PhaseStatus;

/// The chosen presentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One JSON event per line on stdout.
    Json,
    /// Timestamped lines.
    Plain,
    /// Live lines on a terminal.
    Live,
}

/// Decides the mode and colour from the flags, the terminal and NO_COLOR.
pub fn choose(args: &OutputArgs) -> (Mode, bool) {
    let tty = std::io::stdout().is_terminal();
    let mode = if args.json {
        Mode::Json
    } else if tty && !args.no_realtime {
        Mode::Live
    } else {
        Mode::Plain
    };
    (mode, use_color(args.color, tty))
}

/// Whether to colour output.
pub fn use_color(choice: ColorChoice, tty: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

/// `$0.0123`, or `$0.0123 + unknown (2 calls)` when some calls' cost is unknown.
pub fn usd_with_unknown(known: f64, incomplete: bool, unknown_calls: u32) -> String {
    match (incomplete, unknown_calls) {
        (false, _) => format!("${known:.4}"),
        (true, 0) => format!("${known:.4} + unknown"),
        (true, 1) => format!("${known:.4} + unknown (1 call)"),
        (true, n) => format!("${known:.4} + unknown ({n} calls)"),
    }
}

/// `$0.0123`, or `cost unknown` when a price is unknown.
pub fn cost(c: Option<f64>) -> String {
    c.map_or("cost unknown".to_owned(), |c| format!("${c:.4}"))
}

/// Status icon of a phase (seed §7).
pub fn icon(status: PhaseStatus) -> &'static str {
    match status {
        PhaseStatus::Completed => "✅",
        PhaseStatus::Running => "🔄",
        PhaseStatus::Pending => "⏸️",
        PhaseStatus::Failed => "❌",
        PhaseStatus::Skipped => "⏭️",
        PhaseStatus::Paused => "⏯️",
    }
}

/// A phase status as a word.
fn status_word(status: PhaseStatus) -> &'static str {
    match status {
        PhaseStatus::Pending => "pending",
        PhaseStatus::Running => "running",
        PhaseStatus::Paused => "paused",
        PhaseStatus::Completed => "completed",
        PhaseStatus::Failed => "failed",
        PhaseStatus::Skipped => "skipped",
    }
}

/// Colours `text` by phase status (seed §7.2) when `color` is on.
pub fn paint(text: &str, status: PhaseStatus, color: bool) -> String {
    if !color {
        return text.to_owned();
    }
    match status {
        PhaseStatus::Completed => text.green().to_string(),
        PhaseStatus::Running => text.yellow().to_string(),
        PhaseStatus::Pending => text.dimmed().to_string(),
        PhaseStatus::Failed => text.red().to_string(),
        PhaseStatus::Skipped => text.cyan().to_string(),
        PhaseStatus::Paused => text.magenta().to_string(),
    }
}

/// One human line for an event; None for events not worth a line of their own.
pub fn describe(event: &Event, color: bool) -> Option<String> {
    Some(match &event.kind {
        EventKind::Started {
            task,
            template,
            workspace,
            resumed,
        } => {
            let verb = if *resumed { "resuming" } else { "started" };
            format!("{verb} `{task}` with {template} in {workspace}")
        }
        EventKind::PhaseStarted {
            phase_name,
            iteration,
            provider,
            model,
            ..
        } => {
            format!(
                "{} {phase_name} [{provider} {model}] iteration {iteration}",
                icon(PhaseStatus::Running)
            )
        }
        // Prefixed with the phase: two reviewers' lines interleave when they run together.
        EventKind::PhaseProgress { phase_id, text, .. } => text
            .lines()
            .map(|l| format!("  │ {phase_id}: {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        EventKind::PhaseCompleted {
            phase_name,
            role,
            iteration,
            status,
            passed,
            tokens,
            cost_usd,
            duration_ms,
            up_to_date,
            error,
            ..
        } => {
            let (mark, shade, outcome) = match (status, passed) {
                (PhaseStatus::Completed, Some(false)) => (
                    "⚠️ ",
                    PhaseStatus::Failed,
                    if role.is_reviewer() {
                        "not approved"
                    } else {
                        "checks failed"
                    },
                ),
                (PhaseStatus::Completed, Some(true)) => (icon(*status), *status, "passed"),
                (s, _) => (icon(*s), *s, status_word(*s)),
            };
            let when = if *up_to_date {
                "up to date, not called".to_owned()
            } else {
                format!("{:.1}s", *duration_ms as f64 / 1000.0)
            };
            let usage = if tokens.input + tokens.output + tokens.cached_input == 0 {
                String::new()
            } else {
                format!(
                    ", {} in / {} out tokens, {}",
                    tokens.input + tokens.cached_input,
                    tokens.output,
                    cost(*cost_usd)
                )
            };
            let err = if error.is_empty() || *passed == Some(false) {
                String::new()
            } else {
                format!(" — {error}")
            };
            paint(
                &format!(
                    "{mark} {phase_name} (iteration {iteration}) {outcome}: {when}{usage}{err}"
                ),
                shade,
                color,
            )
        }
        EventKind::ArtifactCreated { path, .. } => format!("  artifact {path}"),
        EventKind::ControlNoticed { request, detail } => {
            format!("⏯️  {request} requested: {detail}")
        }
        EventKind::BudgetWarning {
            scope,
            spent,
            limit,
        } => {
            format!(
                "⚠️  {scope} budget at {:.0}%: ${spent:.4} of ${limit:.2}",
                spent / limit * 100.0
            )
        }
        EventKind::ModelMismatch {
            requested, served, ..
        } => {
            format!("  ⚠️  requested model {requested}, but {served} answered")
        }
        EventKind::ProviderFallback {
            from, to, reason, ..
        } => {
            format!("  ↪ {from} failed ({reason}); falling back to {to}")
        }
        EventKind::ProviderExhausted {
            provider, message, ..
        } => {
            format!("  ⛔ {provider}: quota or credit used up ({message}); not retried")
        }
        EventKind::Findings {
            iteration,
            new,
            open,
            resolved,
            reopened,
        } => format!(
            "  🔎 findings of iteration {iteration}: {} new, {} still open, {} resolved, {} reopened",
            new.len(),
            open.len(),
            resolved.len(),
            reopened.len()
        ),
        EventKind::Converged { reason, .. } => format!("🎯 converged: {reason}"),
        EventKind::Stalled { kind, reason, .. } => format!("🧱 stalled ({kind}): {reason}"),
        EventKind::Iteration { iteration, reason } => format!("🔁 iteration {iteration}: {reason}"),
        EventKind::ApprovalNeeded { iteration, reason } => {
            format!("⏸️  iteration {iteration} needs approval: {reason}")
        }
        EventKind::Paused { reason } => {
            paint(&format!("⏯️  paused: {reason}"), PhaseStatus::Paused, color)
        }
        EventKind::Completed {
            total_tokens,
            total_cost_usd,
            cost_incomplete,
            unknown_cost_calls,
        } => paint(
            &format!(
                "✅ completed: {} in / {} out tokens, {}",
                total_tokens.input + total_tokens.cached_input,
                total_tokens.output,
                usd_with_unknown(*total_cost_usd, *cost_incomplete, *unknown_cost_calls)
            ),
            PhaseStatus::Completed,
            color,
        ),
        EventKind::Failed { reason, .. } => {
            paint(&format!("❌ failed: {reason}"), PhaseStatus::Failed, color)
        }
        EventKind::Cancelled {} => "⏹️  cancelled".to_owned(),
    })
}

/// Prints events until the channel closes.
pub async fn print_events(mut rx: UnboundedReceiver<Event>, mode: Mode, color: bool) {
    match mode {
        Mode::Json => {
            while let Some(event) = rx.recv().await {
                if let Ok(line) = serde_json::to_string(&event) {
                    println!("{line}");
                }
            }
        }
        Mode::Plain => {
            while let Some(event) = rx.recv().await {
                if let Some(line) = describe(&event, color) {
                    let ts = event.ts.get(11..19).unwrap_or("");
                    println!("{ts} {line}");
                }
            }
        }
        Mode::Live => live(rx, color).await,
    }
}

async fn live(mut rx: UnboundedReceiver<Event>, color: bool) {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    while let Some(event) = rx.recv().await {
        match &event.kind {
            EventKind::PhaseStarted {
                phase_id,
                phase_name,
                iteration,
                provider,
                ..
            } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(format!("{phase_name} [{provider}] it.{iteration}"));
                bar.enable_steady_tick(Duration::from_millis(120));
                bars.insert(phase_id.clone(), bar);
            }
            EventKind::PhaseProgress { phase_id, text, .. } => {
                if let Some(bar) = bars.get(phase_id) {
                    let last = text.lines().last().unwrap_or_default();
                    let short: String = last.chars().take(100).collect();
                    bar.set_message(short);
                }
            }
            EventKind::PhaseCompleted { phase_id, .. } => {
                let line = describe(&event, color).unwrap_or_default();
                if let Some(bar) = bars.remove(phase_id) {
                    bar.finish_and_clear()
                }
                let _ = multi.println(line);
            }
            _ => {
                if let Some(line) = describe(&event, color) {
                    let _ = multi.println(line);
                }
            }
        }
    }
    for bar in bars.values() {
        bar.finish_and_clear();
    }
}
