//! An agent CLI as a phase's model: it runs its own agent loop in the worktree, inside the
//! phase's sandbox; we bill what it reports and turn its events into progress lines.

use std::path::Path;

use super::job::{Failure, PhaseEnv, PhaseJob};
use super::observer::PhaseObserver;
use crate::agent::{Observer, Tally};
use crate::budget::{BilledCall, Meter};
use crate::providers::agent_cli::{self, CliRun, Note};
use crate::providers::{ChatRequest, Message, Role};
use crate::sandbox::Sandbox;
use crate::spec::{PhaseRole, ProviderConfig};

/// One answer from an agent CLI: it runs its own agent loop in the worktree; we bill what it
/// reports and turn its events into progress lines. Retry reasons are appended to its prompt.
pub(super) async fn cli_answer(
    job: &PhaseJob<'_>,
    env: &PhaseEnv<'_>,
    observer: &PhaseObserver<'_>,
    (config, sandbox): (&ProviderConfig, Option<&Sandbox>),
    request: &mut ChatRequest,
    tally: &mut Tally,
    meter: &dyn Meter,
) -> Result<String, Failure> {
    let retries: Vec<&str> = request
        .messages
        .iter()
        .skip(2)
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .collect();
    let prompt = if retries.is_empty() {
        job.prompt.clone()
    } else {
        format!("{}\n\n{}", job.prompt, retries.join("\n\n"))
    };
    let kind = config.provider_type.as_str();
    let sandbox = sandbox
        .ok_or_else(|| Failure::Answer("internal: an agent CLI phase without a sandbox".into()))?;
    let ticket = meter.before_call(kind, request).map_err(Failure::Budget)?;
    let run = CliRun {
        config,
        sandbox,
        workdir: Path::new(&env.workspace.dir),
        system_prompt: &job.system_prompt,
        prompt: &prompt,
        can_edit: job.phase.role == PhaseRole::Implementer,
        max_budget_usd: meter.remaining(),
        keys: env.keys,
    };
    let on_note = |note: Note| match note {
        Note::Text(t) => observer.text(&format!("{t}\n")),
        Note::Delta(t) => observer.text(&t),
        Note::Tool(t) => observer.note(&t),
        Note::Raw(t) => observer.log(&format!("{t}\n")),
    };
    let result = match agent_cli::run(&run, &on_note).await {
        Ok(r) => r,
        Err(e) => {
            meter.release(ticket);
            return Err(Failure::Provider(format!("{kind}: {e}")));
        }
    };
    let cost = meter.after_call(
        ticket,
        &BilledCall {
            provider: kind,
            model: &config.model_name,
            served: result.served_model.as_deref(),
            usage: result.usage,
            reported_usd: result.reported_cost_usd,
        },
    );
    tally.calls += 1;
    tally.usage.add(&result.usage);
    tally.add_cost(cost);
    if result.served_model.is_some() {
        tally.served_model = result.served_model.clone();
    }
    request
        .messages
        .push(Message::text(Role::Assistant, &result.text));
    Ok(result.text)
}
