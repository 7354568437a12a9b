//! The command line (DESIGN §8): clap types, handlers and output. Errors become exit codes here
//! and nowhere else.

pub mod args;
mod artifact;
mod book_check;
mod budget;
mod clean;
mod drive;
mod init;
mod live;
mod output;
mod output_args;
mod provider;
mod publish;
mod reconcile;
mod run;
mod scan;
mod serve;
mod start_args;
mod template;
mod template_manage;
mod template_test;
mod terminal;
mod watch;
mod workflow;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command, WorkflowCommand};
use autowrkers::engine::{Control, EngineError};
use autowrkers::spec::{SpecError, WorkflowStatus};
use autowrkers::store::{Home, StoreError};
use autowrkers::templates::TemplateError;

/// Exit code of a finished reconcile (DESIGN §8).
pub fn status_code(status: WorkflowStatus) -> u8 {
    match status {
        WorkflowStatus::Completed => 0,
        WorkflowStatus::Failed | WorkflowStatus::Cancelled => 1,
        WorkflowStatus::BudgetExceeded => 3,
        WorkflowStatus::Paused | WorkflowStatus::AwaitingApproval => 4,
        WorkflowStatus::Pending | WorkflowStatus::Running => 1,
    }
}

/// Exit code of an error: 2 for anything the user must fix in their input, else 1.
fn error_code(err: &anyhow::Error) -> u8 {
    let store_code = |e: &StoreError| match e {
        StoreError::Spec(_) | StoreError::NotFound(_) | StoreError::Ambiguous { .. } => 2,
        _ => 1,
    };
    if let Some(e) = err.downcast_ref::<EngineError>() {
        return match e {
            EngineError::Spec(_)
            | EngineError::Template(_)
            | EngineError::Prompt(_)
            | EngineError::Prompts(_)
            | EngineError::NotReady(_)
            | EngineError::Project(_) => 2,
            EngineError::Store(s) => store_code(s),
            _ => 1,
        };
    }
    if err.downcast_ref::<SpecError>().is_some()
        || err.downcast_ref::<TemplateError>().is_some()
        || matches!(
            err.downcast_ref::<autowrkers::server::ServeError>(),
            Some(autowrkers::server::ServeError::Remote(_))
        )
        || matches!(
            err.downcast_ref::<autowrkers::triggers::github::GitHubError>(),
            Some(autowrkers::triggers::github::GitHubError::NoRepository)
        )
    {
        return 2;
    }
    err.downcast_ref::<StoreError>().map_or(1, store_code)
}

/// `autowrkers workflow list | head -1`: when the reader of our output goes away, stop quietly
/// with success, as `ls` or `git log` do, instead of a panic about a broken pipe.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Parses the arguments, runs the command, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let mut builder = if cli.command.serves_many() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(error_code(&err))
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<u8> {
    let home = Home::from_env();
    match command {
        Command::Run(a) => run::start(a, home).await,
        Command::Resume(a) => run::resume(a, home).await,
        Command::Init(a) => init::run(a, home),
        Command::Workflow(w) => match w {
            WorkflowCommand::Start(a) => run::start(a, home).await,
            WorkflowCommand::Resume(a) => run::resume(a, home).await,
            WorkflowCommand::Status(a) => workflow::status(a, home),
            WorkflowCommand::List(a) => workflow::list(a, home),
            WorkflowCommand::Logs(a) => workflow::logs(a, home),
            WorkflowCommand::Artifacts(a) => workflow::artifacts(a, home),
            WorkflowCommand::Artifact(a) => artifact::run(a, home),
            WorkflowCommand::Delete(a) => clean::delete(a, home),
            WorkflowCommand::Clean(a) => clean::clean(a, home),
            WorkflowCommand::Publish(a) => publish::run(a, home).await,
            WorkflowCommand::Fetch(a) => publish::fetch(a, home),
            WorkflowCommand::Address(a) => publish::address(a, home).await,
            WorkflowCommand::Pause(a) => run::control(a, home, Control::Pause).await,
            WorkflowCommand::Cancel(a) => run::control(a, home, Control::Cancel).await,
            WorkflowCommand::SkipPhase(a) => run::skip_phase(a, home),
            WorkflowCommand::Approve(a) => run::control(a, home, Control::Approve).await,
            WorkflowCommand::Reject(a) => run::control(a, home, Control::Reject).await,
        },
        Command::Template(t) => template::run(t, home).await,
        Command::Provider(p) => provider::run(p, home).await,
        Command::Budget(b) => budget::run(b, home),
        Command::Schema(a) => template::schema(a),
        Command::Serve(a) => serve::run(a, home).await,
        Command::Reconcile(a) => reconcile::run(a, home).await,
        Command::Watch(a) => watch::run(a, home).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "autowrkers", &mut std::io::stdout());
            Ok(0)
        }
    }
}
