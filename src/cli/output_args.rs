//! How commands that follow a run show it: plain lines, the live view or JSON events, and
//! colour. Apart from `args` so every module that drives a run can take it without a circle.

use clap::{Args, ValueEnum};

/// Output format of commands that stream events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal unless NO_COLOR is set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// How a run's events are shown.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Print events as JSON, one per line, ending with one `workflow:result` object (status,
    /// branch, diff stat, verdicts, verification, cost), instead of the human view.
    #[arg(long)]
    pub json: bool,
    /// Plain lines even on a terminal.
    #[arg(long)]
    pub no_realtime: bool,
    /// When to use colour.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorChoice,
}
