//! The budget guard (DESIGN §7): before every model call — parallel ones included — it reserves
//! the call's worst case (estimated prompt tokens × input price + the output cap × output price)
//! against every budget that applies; a call that does not fit is never made. After the call
//! the reservation is replaced by the actual cost, which is written to the ledger. Project and
//! global budgets count what other live runners spend and hold (see `shared`).

use std::sync::Mutex;

use super::estimate::CallEstimate;
use super::ledger::{Ledger, LedgerEntry, execution_key, global_key, project_key};
use super::limits::{Budgets, this_month};
use super::prices::{PriceTable, Pricing};
use super::shared::{Cursor, Others, Shared};
use crate::spec::{ExecutionRequest, TokenUsage};
use crate::store::Home;

/// The next call does not fit a budget.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{scope} budget: ${spent:.4} spent + ${reserved:.4} reserved + up to ${needed:.4} for the next call exceeds the limit of ${limit:.2}"
)]
pub struct BudgetExceeded {
    /// `execution`, `project` or `global`.
    pub scope: String,
    /// The limit.
    pub limit: f64,
    /// Spent so far in the period.
    pub spent: f64,
    /// Held for calls in flight.
    pub reserved: f64,
    /// The worst case of the refused call.
    pub needed: f64,
}

/// A budget that crossed 80 %.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// The scope.
    pub scope: String,
    /// Spent.
    pub spent: f64,
    /// Limit.
    pub limit: f64,
}

/// What the agent loop asks around every model call.
pub trait Meter: Send + Sync {
    /// Reserves the worst case of `call` to `provider`; refuses when it does not fit.
    fn before_call(&self, provider: &str, call: &CallEstimate) -> Result<Ticket, BudgetExceeded>;
    /// Bills the call (ledger line), releases the reservation, returns the USD (None: unknown).
    fn after_call(&self, ticket: Ticket, call: &BilledCall<'_>) -> Option<f64>;
    /// Releases the reservation of a call that failed before using any tokens.
    fn release(&self, ticket: Ticket);
    /// Bills a call that ran but never said what it used (a CLI that died before its final
    /// report): its cost is unknown, and budgets count the reserved worst case as spent.
    fn spend_unknown(&self, ticket: Ticket, provider: &str, model: &str);
    /// USD left under the tightest budget (None: no budget applies), for CLIs that take a cap.
    fn remaining(&self) -> Option<f64> {
        None
    }
    /// The table price of `model` at `provider` (None: free or unknown), for the worst cases
    /// of calls this meter does not see one by one (an agent CLI's own).
    fn price(&self, _provider: &str, _model: &str) -> Option<crate::budget::Price> {
        None
    }
}

/// A reservation held while a call is in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ticket {
    reserved: f64,
}

impl Ticket {
    /// The USD reserved.
    pub fn reserved(&self) -> f64 {
        self.reserved
    }
}

/// What a finished (or cut) call used.
pub struct BilledCall<'a> {
    /// Provider type.
    pub provider: &'a str,
    /// Model requested.
    pub model: &'a str,
    /// Model that served it.
    pub served: Option<&'a str>,
    /// Tokens.
    pub usage: TokenUsage,
    /// USD the provider reported (OpenRouter, Claude Code), billed as is.
    pub reported_usd: Option<f64>,
    /// The reported USD is the provider's own guess (Claude Code's `costBasis: "unknown"`):
    /// the price table wins where it knows the model.
    pub reported_is_estimate: bool,
}

struct Scope {
    name: &'static str,
    limit: f64,
    spent_before: f64,
}

impl Scope {
    /// The part of the other runners' figure that counts against this scope.
    fn of(&self, others: &Others) -> f64 {
        match self.name {
            "project" => others.project,
            "global" => others.global,
            _ => 0.0,
        }
    }
}

#[derive(Default)]
struct Live {
    spent: f64,
    reserved: f64,
    warned: Vec<&'static str>,
    /// What other runners billed since this guard summed the ledger.
    others_spent: Others,
    cursor: Cursor,
}

/// The budgets of one reconcile pass of one execution.
pub struct BudgetGuard {
    prices: PriceTable,
    ledger: Ledger,
    execution: String,
    project: String,
    scopes: Vec<Scope>,
    live: Mutex<Live>,
    shared: Shared,
}

impl BudgetGuard {
    /// Reads the limits that apply to `request` and what was spent against them.
    pub fn new(home: &Home, request: &ExecutionRequest) -> Result<Self, crate::spec::SpecError> {
        let prices = PriceTable::load(home)?;
        let budgets = Budgets::load(home)?;
        let ledger = Ledger::new(home);
        let month = this_month();
        let mut scopes = Vec::new();
        let shared = Shared::new(
            &home.root().join("ledger"),
            &request.id,
            &request.project_path,
        );
        let mut live = Live::default();
        let needs_totals = request.budget_limit.is_some()
            || budgets.global.limit.is_some()
            || budgets.project(&request.project_path).limit.is_some();
        if needs_totals {
            // Under the lock, so no other runner's line falls between the sum and the cursor.
            let _lock = shared.lock();
            let totals = ledger.totals();
            live.cursor = shared.cursor_at_end(&month);
            if let Some(limit) = request.budget_limit {
                scopes.push(Scope {
                    name: "execution",
                    limit,
                    spent_before: totals.get(&execution_key(&request.id)).budget_usd(),
                });
            }
            let project = budgets.project(&request.project_path);
            if let Some(limit) = project.limit {
                let raw = totals
                    .get(&project_key(&month, &request.project_path))
                    .budget_usd();
                scopes.push(Scope {
                    name: "project",
                    limit,
                    spent_before: project.counted(&month, raw),
                });
            }
            if let Some(limit) = budgets.global.limit {
                let raw = totals.get(&global_key(&month)).budget_usd();
                scopes.push(Scope {
                    name: "global",
                    limit,
                    spent_before: budgets.global.counted(&month, raw),
                });
            }
        }
        Ok(Self {
            prices,
            shared,
            ledger,
            execution: request.id.clone(),
            project: request.project_path.clone(),
            scopes,
            live: Mutex::new(live),
        })
    }

    /// A meter for one phase run.
    pub fn meter<'a>(
        &'a self,
        phase: &str,
        iteration: u32,
        warn: &'a (dyn Fn(Warning) + Send + Sync),
    ) -> PhaseMeter<'a> {
        PhaseMeter {
            guard: self,
            phase: phase.to_owned(),
            iteration,
            warn,
        }
    }

    /// The worst case of a call, None when the model's price is unknown.
    pub fn worst_case(&self, provider: &str, call: &CallEstimate) -> Option<f64> {
        super::estimate::worst_case(&self.prices, provider, call)
    }

    /// The output cap to send with a call of `model` at `provider`: the template's
    /// `max_tokens`, else, for a priced model, the cap its reservation assumes, so that what is
    /// reserved is a true bound on what the call can cost. Free and unknown-price models get
    /// none: their servers' own limits apply and nothing is reserved for them.
    pub fn cap_to_send(&self, provider: &str, model: &str, max_tokens: Option<u32>) -> Option<u32> {
        if max_tokens.is_some() {
            return max_tokens;
        }
        match self.prices.pricing(provider, model) {
            pricing @ Pricing::Table(_) => {
                u32::try_from(super::estimate::output_cap(&pricing, None)).ok()
            }
            _ => None,
        }
    }

    fn publish_reserved(&self, reserved: f64) {
        // For the other runners and `budget status`: only worth writing when a budget applies.
        if !self.scopes.is_empty() {
            self.shared.publish(reserved);
        }
    }
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        self.shared.withdraw();
    }
}

/// The guard seen from one phase run.
pub struct PhaseMeter<'a> {
    guard: &'a BudgetGuard,
    phase: String,
    iteration: u32,
    warn: &'a (dyn Fn(Warning) + Send + Sync),
}

impl Meter for PhaseMeter<'_> {
    fn price(&self, provider: &str, model: &str) -> Option<crate::budget::Price> {
        match self.guard.prices.pricing(provider, model) {
            Pricing::Table(p) => Some(p),
            Pricing::Free | Pricing::Unknown => None,
        }
    }

    fn remaining(&self) -> Option<f64> {
        let g = self.guard;
        let live = g.live.lock().unwrap_or_else(|e| e.into_inner());
        g.scopes
            .iter()
            .map(|s| {
                let others = s.of(&live.others_spent);
                (s.limit - s.spent_before - others - live.spent - live.reserved).max(0.0)
            })
            .reduce(f64::min)
    }

    fn release(&self, ticket: Ticket) {
        let g = self.guard;
        let _lock = (!g.scopes.is_empty()).then(|| g.shared.lock());
        let mut live = g.live.lock().unwrap_or_else(|e| e.into_inner());
        live.reserved = (live.reserved - ticket.reserved).max(0.0);
        g.publish_reserved(live.reserved);
    }

    fn spend_unknown(&self, ticket: Ticket, provider: &str, model: &str) {
        let g = self.guard;
        let entry = LedgerEntry {
            worst_case_usd: (ticket.reserved > 0.0).then_some(ticket.reserved),
            ..self.entry(provider, model)
        };
        let _lock = (!g.scopes.is_empty()).then(|| g.shared.lock());
        let _ = g.ledger.append(&entry);
        let mut live = g.live.lock().unwrap_or_else(|e| e.into_inner());
        // What it may have spent stays spent: the reservation becomes spending.
        live.reserved = (live.reserved - ticket.reserved).max(0.0);
        live.spent += ticket.reserved;
        g.publish_reserved(live.reserved);
    }

    fn before_call(&self, provider: &str, call: &CallEstimate) -> Result<Ticket, BudgetExceeded> {
        let g = self.guard;
        let Some(needed) = g.worst_case(provider, call) else {
            // Unknown price: nothing to reserve; the cost shows as unknown.
            return Ok(Ticket { reserved: 0.0 });
        };
        if g.scopes.is_empty() {
            return Ok(Ticket { reserved: 0.0 });
        }
        // Check and reserve as one step across every runner on this machine.
        let _lock = g.shared.lock();
        let mut live = g.live.lock().unwrap_or_else(|e| e.into_inner());
        let live = &mut *live;
        g.shared
            .catch_up(&mut live.cursor, &this_month(), &mut live.others_spent);
        let held = g.shared.others_reserved();
        for s in &g.scopes {
            let spent = s.spent_before + s.of(&live.others_spent) + live.spent;
            let reserved = live.reserved + s.of(&held);
            if spent + reserved + needed > s.limit + 1e-12 {
                return Err(BudgetExceeded {
                    scope: s.name.to_owned(),
                    limit: s.limit,
                    spent,
                    reserved,
                    needed,
                });
            }
        }
        live.reserved += needed;
        g.publish_reserved(live.reserved);
        Ok(Ticket { reserved: needed })
    }

    fn after_call(&self, ticket: Ticket, call: &BilledCall<'_>) -> Option<f64> {
        let g = self.guard;
        // A CLI run without a model name is priced by the model that served it.
        let priced = match call.served {
            Some(served) if call.model.is_empty() => served,
            _ => call.model,
        };
        let table = match g.prices.pricing(call.provider, priced) {
            Pricing::Free => Some(0.0),
            Pricing::Table(p) => Some(p.cost(&call.usage)),
            Pricing::Unknown => None,
        };
        let free = matches!(g.prices.pricing(call.provider, priced), Pricing::Free);
        let (usd, source) = match (call.reported_usd, table) {
            (_, Some(t)) if free => (Some(t), "local"),
            (Some(_), Some(t)) if call.reported_is_estimate => (Some(t), "table"),
            (Some(r), None) if call.reported_is_estimate => (Some(r), "estimated"),
            (Some(r), _) => (Some(r), "provider"),
            (None, Some(t)) => (Some(t), "table"),
            (None, None) => (None, "unknown"),
        };
        let entry = LedgerEntry {
            model_served: call.served.map(str::to_owned),
            tokens: call.usage,
            usd,
            table_usd: if source == "provider" { table } else { None },
            price_source: source.to_owned(),
            ..self.entry(call.provider, call.model)
        };
        let _lock = (!g.scopes.is_empty()).then(|| g.shared.lock());
        // The ledger is a record: a full disk must not lose the work of the call.
        let _ = g.ledger.append(&entry);
        let mut warnings = Vec::new();
        {
            let mut live = g.live.lock().unwrap_or_else(|e| e.into_inner());
            live.reserved = (live.reserved - ticket.reserved).max(0.0);
            live.spent += usd.unwrap_or(0.0);
            g.publish_reserved(live.reserved);
            for s in &g.scopes {
                let spent = s.spent_before + s.of(&live.others_spent) + live.spent;
                if spent >= 0.8 * s.limit && !live.warned.contains(&s.name) {
                    live.warned.push(s.name);
                    warnings.push(Warning {
                        scope: s.name.to_owned(),
                        spent,
                        limit: s.limit,
                    });
                }
            }
        }
        for w in warnings {
            (self.warn)(w);
        }
        usd
    }
}

impl PhaseMeter<'_> {
    /// The ledger line of a call of this phase.
    fn entry(&self, provider: &str, model: &str) -> LedgerEntry {
        let g = self.guard;
        LedgerEntry {
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            execution: g.execution.clone(),
            project: g.project.clone(),
            phase: self.phase.clone(),
            iteration: self.iteration,
            provider: provider.to_owned(),
            model: model.to_owned(),
            model_served: None,
            tokens: TokenUsage::default(),
            usd: None,
            table_usd: None,
            price_source: "unknown".to_owned(),
            worst_case_usd: None,
        }
    }
}

/// A meter that counts nothing and refuses nothing (tests, `provider test`).
pub struct Unmetered;

impl Meter for Unmetered {
    fn before_call(&self, _: &str, _: &CallEstimate) -> Result<Ticket, BudgetExceeded> {
        Ok(Ticket { reserved: 0.0 })
    }
    fn after_call(&self, _: Ticket, call: &BilledCall<'_>) -> Option<f64> {
        call.reported_usd
    }
    fn release(&self, _: Ticket) {}
    fn spend_unknown(&self, _: Ticket, _: &str, _: &str) {}
}
