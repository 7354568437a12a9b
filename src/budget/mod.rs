//! Money (DESIGN §7, seed §2.2, §6.5, Appendix A): the price table, the append-only ledger,
//! the limits, and the guard that reserves every call's worst case before it is made.

mod estimate;
mod guard;
pub mod ledger;
pub mod limits;
pub mod prices;
pub mod report;
mod shared;

pub use estimate::{CallEstimate, DEFAULT_MAX_OUTPUT, output_cap, worst_case};
pub use guard::{
    BilledCall, BudgetExceeded, BudgetGuard, Meter, PhaseMeter, Ticket, Unmetered, Warning,
};
pub use ledger::{Ledger, LedgerEntry, Sum, Totals};
pub use limits::{Budgets, Limit, this_month};
pub use prices::{Price, PriceTable, Pricing};
