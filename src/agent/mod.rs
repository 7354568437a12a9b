//! The built-in agent loop for chat providers (DESIGN §6): call the model, run the tools it
//! asks for, feed the results back, until it answers without tool calls or the turn limit is hit.

mod confine;
mod tools;

pub use confine::confine;
pub use tools::Toolbox;

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::budget::{BilledCall, BudgetExceeded, CallEstimate, Meter, Ticket};
use crate::providers::{ChatProvider, ChatRequest, Message, ProviderError, ReplyText, Role};
use crate::spec::TokenUsage;

/// What the loop gathered over all its calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Tokens of every call.
    pub usage: TokenUsage,
    /// Provider calls made.
    pub calls: u32,
    /// USD when every call reported or was priced; None once one was unknown.
    pub cost_usd: Option<f64>,
    /// USD of the calls whose cost is known (the whole cost when `cost_usd` is Some).
    pub known_usd: f64,
    /// Calls whose cost is unknown.
    pub unknown_calls: u32,
    /// The model that answered last.
    pub served_model: Option<String>,
}

impl Tally {
    /// A tally of nothing, priced at $0.
    pub fn new() -> Self {
        Self {
            cost_usd: Some(0.0),
            ..Self::default()
        }
    }

    /// Bills one call through `meter` (its ledger line, its reservation settled) and adds its
    /// tokens and cost here: the one place a call is billed, for chat models and agent CLIs.
    pub fn bill(
        &mut self,
        meter: &dyn Meter,
        ticket: Ticket,
        call: &BilledCall<'_>,
    ) -> Option<f64> {
        let cost = meter.after_call(ticket, call);
        self.usage.add(&call.usage);
        self.add_cost(cost);
        if let Some(served) = call.served {
            self.served_model = Some(served.to_owned());
        }
        cost
    }

    /// Adds one billed call's cost; None (unknown) makes the whole cost unknown from then on,
    /// while the known part and the number of unknown calls are kept.
    pub fn add_cost(&mut self, cost: Option<f64>) {
        match cost {
            Some(c) => self.known_usd += c,
            None => self.unknown_calls += 1,
        }
        self.cost_usd = self.cost_usd.zip(cost).map(|(a, b)| a + b);
    }
}

/// Why the loop stopped without a final answer.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The next call would not fit a budget; it was not made.
    #[error(transparent)]
    Budget(#[from] BudgetExceeded),
    /// The model kept calling tools past the limit.
    #[error("the model used all {0} turns without a final answer")]
    TurnLimit(u32),
    /// A reply streamed past the artifact limit and was stopped.
    #[error(
        "the reply passed {0} bytes and was stopped (output_limits.artifact_bytes in .autowrkers/config.yaml); its cost is unknown"
    )]
    ReplyTooLong(u64),
    /// A long reply's temporary file could not be read back.
    #[error("the reply could not be read back from its temporary file: {0}")]
    ReplyUnreadable(std::io::Error),
}

/// What the loop reports as it goes (for progress events and the phase log).
pub trait Observer: Send + Sync {
    /// Streamed text.
    fn text(&self, delta: &str);
    /// A tool call and how it went.
    fn tool(&self, name: &str, arguments: &str, result: &Result<String, String>);
    /// The most bytes one reply may stream before it is stopped; None for no limit.
    fn reply_limit(&self) -> Option<u64> {
        None
    }
}

/// What the budget needs to know of `request` before it is sent.
pub fn call_estimate(request: &ChatRequest) -> CallEstimate {
    let messages: usize = request
        .messages
        .iter()
        .map(|m| {
            m.content.len()
                + m.tool_calls
                    .iter()
                    .map(|c| c.arguments.len())
                    .sum::<usize>()
        })
        .sum();
    let tools: usize = request
        .tools
        .iter()
        .map(|t| t.description.len() + t.parameters.to_string().len())
        .sum();
    CallEstimate {
        model: request.model.clone(),
        prompt_chars: messages + tools,
        max_output: request.max_tokens.map(u64::from),
    }
}

/// The message that puts a final answer back into the conversation, before asking again.
pub fn answer_message(text: String) -> Message {
    Message {
        role: Role::Assistant,
        content: text,
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

/// Runs the loop on `request.messages`, appending every assistant turn that called tools and
/// every tool result to it, and returns the final answer's text (not appended: see
/// [`answer_message`]; a long one sits in a file, see [`ReplyText`]). `tally` accumulates usage
/// even when the loop fails.
pub async fn converse(
    provider: &dyn ChatProvider,
    request: &mut ChatRequest,
    toolbox: &Toolbox<'_>,
    max_turns: u32,
    observer: &dyn Observer,
    tally: &mut Tally,
    meter: &dyn Meter,
) -> Result<ReplyText, AgentError> {
    let limit = observer.reply_limit().unwrap_or(u64::MAX);
    for _ in 0..max_turns {
        let seen = AtomicU64::new(0);
        let over = Notify::new();
        let on_delta = |d: &str| {
            observer.text(d);
            if seen.fetch_add(d.len() as u64, Ordering::Relaxed) + d.len() as u64 > limit {
                over.notify_one();
            }
        };
        let ticket = meter.before_call(provider.name(), &call_estimate(request))?;
        let result = tokio::select! {
            r = provider.chat(request, &on_delta) => r,
            () = over.notified() => {
                // Dropping the call closes the stream: what it spent is unknown, so bill
                // a lower bound (the output seen, ~4 bytes a token) and mark the cost unknown.
                let usage = TokenUsage {
                    output: seen.load(Ordering::Relaxed) / 4,
                    ..TokenUsage::default()
                };
                tally.bill(
                    meter,
                    ticket,
                    &BilledCall {
                        provider: provider.name(),
                        model: &request.model,
                        served: None,
                        usage,
                        reported_usd: None,
                        reported_is_estimate: false,
                    },
                );
                tally.add_cost(None);
                tally.calls += 1;
                return Err(AgentError::ReplyTooLong(limit));
            }
        };
        let (usage, reported, served) = match &result {
            Ok(r) => (r.usage, r.reported_cost_usd, r.served_model.as_deref()),
            // Tokens streamed before a cut are billed by the provider: count them.
            Err(ProviderError::StreamCut { partial, .. }) => (*partial, None, None),
            Err(_) => (TokenUsage::default(), None, None),
        };
        if result.is_err() && usage == TokenUsage::default() {
            meter.release(ticket);
        } else {
            tally.bill(
                meter,
                ticket,
                &BilledCall {
                    provider: provider.name(),
                    model: &request.model,
                    served,
                    usage,
                    reported_usd: reported,
                    reported_is_estimate: false,
                },
            );
        }
        let response = result?;
        tally.calls += 1;
        if response.served_model.is_some() {
            tally.served_model = response.served_model.clone();
        }
        if response.tool_calls.is_empty() {
            // The answer is returned, not appended: a long reply is held once, and a caller
            // that asks again appends it itself (`answer_message`).
            return Ok(response.text);
        }
        request.messages.push(Message {
            role: Role::Assistant,
            content: response
                .text
                .into_string()
                .map_err(AgentError::ReplyUnreadable)?,
            tool_calls: response.tool_calls.clone(),
            tool_call_id: None,
        });
        for call in &response.tool_calls {
            let result = toolbox.call(&call.name, &call.arguments).await;
            observer.tool(&call.name, &call.arguments, &result);
            let content = match result {
                Ok(text) => text,
                Err(e) => format!("error: {e}"),
            };
            request.messages.push(Message {
                role: Role::Tool,
                content,
                tool_calls: Vec::new(),
                tool_call_id: Some(call.id.clone()),
            });
        }
    }
    Err(AgentError::TurnLimit(max_turns))
}
