//! An agent CLI as a phase's model: it runs its own agent loop in the worktree, inside the
//! phase's sandbox; we bill what it reports — whatever the outcome, a timeout or cancel
//! included — and turn its events into progress lines.

use std::path::Path;
use std::sync::Mutex;

use super::job::{Failure, PhaseEnv, PhaseJob};
use super::observer::PhaseObserver;
use crate::agent::{Observer, Tally};
use crate::budget::{BilledCall, BudgetExceeded, CallEstimate, Meter, Ticket};
use crate::providers::ProviderError;
use crate::providers::agent_cli::{self, CliError, CliRun, Note, Spent};
use crate::sandbox::Sandbox;
use crate::spec::{PhaseRole, ProviderConfig};

/// One answer from an agent CLI: it runs its own agent loop in the worktree; we bill what it
/// reports and turn its events into progress lines. The reasons earlier answers were refused
/// follow its prompt.
pub(super) async fn cli_answer(
    job: &PhaseJob<'_>,
    env: &PhaseEnv<'_>,
    observer: &PhaseObserver<'_>,
    (config, sandbox): (&ProviderConfig, Option<&Sandbox>),
    retries: &[String],
    tally: &mut Tally,
    meter: &dyn Meter,
) -> Result<String, Failure> {
    let prompt = if retries.is_empty() {
        job.prompt.clone()
    } else {
        format!("{}\n\n{}", job.prompt, retries.join("\n\n"))
    };
    let kind = config.provider_type.as_str();
    // A CLI found at its usage limit by any runner is not started again for a while.
    let home = env.keys.home();
    if let Some(message) = crate::providers::exhausted::cli_marked(home, kind) {
        return Err(Failure::Provider(ProviderError::QuotaExhausted {
            status: 0,
            message: format!("{kind} reached its usage limit earlier: {message}"),
        }));
    }
    let sandbox = sandbox
        .ok_or_else(|| Failure::Answer("internal: an agent CLI phase without a sandbox".into()))?;
    let http = env.http.raw().map_err(|e| Failure::Answer(e.to_string()))?;
    let model = agent_cli::effective_model(config);
    // The reservation prices what will run (Codex's documented default included).
    let estimate = CallEstimate {
        model: model.clone(),
        prompt_chars: job.system_prompt.len() + prompt.len(),
        max_output: None,
    };
    let ticket = meter
        .before_call(kind, &estimate)
        .map_err(Failure::Budget)?;
    let spent = Mutex::new(Spent::default());
    // Bills what the run reported when it ends — or when a timeout or cancel drops it.
    let mut bill = Bill {
        meter,
        ticket: Some(ticket),
        spent: &spent,
        provider: kind,
        model: &model,
        tally,
    };
    let run = CliRun {
        config,
        sandbox,
        workdir: Path::new(&env.workspace.dir),
        system_prompt: &job.system_prompt,
        prompt: &prompt,
        can_edit: job.phase.role == PhaseRole::Implementer,
        // This run's own reservation is part of what it may spend.
        max_budget_usd: meter.remaining().map(|r| r + ticket.reserved()),
        price: meter.price(kind, &model),
        http,
        keys: env.keys,
        spent: &spent,
    };
    let on_note = |note: Note| match note {
        Note::Text(t) => observer.text(&format!("{t}\n")),
        Note::Delta(t) => observer.text(&t),
        Note::Tool(t) => observer.note(&t),
        Note::Raw(t) => observer.log(&format!("{t}\n")),
    };
    let outcome = agent_cli::run(&run, &on_note).await;
    bill.settle();
    let result = outcome.map_err(|e| match e {
        CliError::Budget(s) => Failure::Budget(BudgetExceeded {
            scope: "run".to_owned(),
            limit: s.cap,
            spent: s.spent,
            reserved: 0.0,
            needed: s.needed,
        }),
        CliError::Failed(message) => {
            let e = ProviderError::AgentCli { cli: kind, message };
            if e.is_quota_exhausted()
                && let ProviderError::AgentCli { message, .. } = &e
            {
                crate::providers::exhausted::mark_cli(home, kind, message);
            }
            Failure::Provider(e)
        }
    })?;
    Ok(result.text)
}

/// The bill of one CLI run: settled once, when the run returns or when its future is dropped.
struct Bill<'a> {
    meter: &'a dyn Meter,
    ticket: Option<Ticket>,
    spent: &'a Mutex<Spent>,
    provider: &'a str,
    model: &'a str,
    tally: &'a mut Tally,
}

impl Bill<'_> {
    /// Bills what the run reported: its usage and cost whatever its outcome; an unknown cost
    /// (with the worst case counted) when it started but never reported; nothing when it
    /// never started.
    fn settle(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let spent = self.spent.lock().map(|s| s.clone()).unwrap_or_default();
        if !spent.started {
            self.meter.release(ticket);
            return;
        }
        self.tally.calls += 1;
        if !spent.reported {
            self.meter.spend_unknown(ticket, self.provider, self.model);
            self.tally.add_cost(None);
            return;
        }
        self.tally.bill(
            self.meter,
            ticket,
            &BilledCall {
                provider: self.provider,
                model: self.model,
                served: spent.served_model.as_deref(),
                usage: spent.usage,
                reported_usd: spent.reported_cost_usd,
                reported_is_estimate: spent.cost_is_estimate,
            },
        );
    }
}

impl Drop for Bill<'_> {
    fn drop(&mut self) {
        self.settle();
    }
}
