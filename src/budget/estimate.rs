//! The worst case of one model call, computed once for the guard, the dry run and the budget
//! watchdog alike: the prompt at three characters a token, and the call's output cap (its
//! `max_tokens`, else the model's own limit, else 4096 tokens).

use super::prices::{PriceTable, Pricing};
use crate::spec::TokenUsage;

/// Output tokens assumed for a call whose model has no known cap and no `max_tokens`.
pub const DEFAULT_MAX_OUTPUT: u64 = 4096;

/// What the budget needs to know of a call before it is made, in no provider's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEstimate {
    /// The model asked for.
    pub model: String,
    /// Characters of everything sent: messages, tool calls, tool definitions.
    pub prompt_chars: usize,
    /// The call's own output cap (`max_tokens`), when it sets one.
    pub max_output: Option<u64>,
}

impl CallEstimate {
    /// Prompt tokens, conservatively: three characters a token.
    pub fn prompt_tokens(&self) -> u64 {
        (self.prompt_chars / 3) as u64
    }
}

/// The output cap a call is reserved for at `pricing`.
pub fn output_cap(pricing: &Pricing, max_output: Option<u64>) -> u64 {
    match pricing {
        Pricing::Table(p) => max_output.or(p.max_output).unwrap_or(DEFAULT_MAX_OUTPUT),
        _ => max_output.unwrap_or(DEFAULT_MAX_OUTPUT),
    }
}

/// The worst case of `call` at `provider` in USD: $0 for a free provider, None when the
/// model's price is unknown.
pub fn worst_case(prices: &PriceTable, provider: &str, call: &CallEstimate) -> Option<f64> {
    let pricing = prices.pricing(provider, &call.model);
    let output = output_cap(&pricing, call.max_output);
    match pricing {
        Pricing::Free => Some(0.0),
        Pricing::Unknown => None,
        Pricing::Table(p) => Some(p.cost(&TokenUsage {
            input: call.prompt_tokens(),
            output,
            ..TokenUsage::default()
        })),
    }
}
