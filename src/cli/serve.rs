//! `serve`: its arguments, and starting the server of the library's `server` module.

use std::path::PathBuf;

use autowrkers::store::Home;
use clap::Args;

/// `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 takes a free one.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub bind: std::net::SocketAddr,
    /// A project to serve (repeatable); none serves every known project.
    #[arg(long)]
    pub path: Vec<PathBuf>,
    /// Make a new token (the old address stops working) instead of keeping serve.token's.
    #[arg(long)]
    pub new_token: bool,
    /// Allow an address other than loopback (anyone who can reach it may try the API).
    #[arg(long)]
    pub allow_remote: bool,
}

pub const SERVE_HELP: &str = "\
It prints one line, the address with its token: open it. The token is kept in
$AUTOWRKERS_HOME/serve.token (mode 0600) across restarts; every API call needs it as
`Authorization: Bearer TOKEN` (the WebSocket takes `?token=`). Requests from other origins are
refused. Executions started here run in detached runner processes, as the live view starts
them; Ctrl-C stops the server, not them. The book's serve chapter lists every endpoint.

Examples:
  autowrkers serve --path .
  autowrkers serve --bind 127.0.0.1:0 --path ~/src/app --path ~/src/lib";

/// `serve`: prints the address with its token (the only line on stdout) and serves until
/// stopped; Ctrl-C stops the server, not the runners it started.
pub async fn run(a: ServeArgs, home: Home) -> anyhow::Result<u8> {
    let opts = autowrkers::server::ServeOptions {
        bind: a.bind,
        paths: a.path,
        new_token: a.new_token,
        allow_remote: a.allow_remote,
        exe: std::env::current_exe()?,
    };
    let server = autowrkers::server::serve(home, opts, |url| {
        println!("autowrkers serve: {url}");
        // A reader waiting for the address (a script, a test) gets it now.
        let _ = std::io::Write::flush(&mut std::io::stdout());
    });
    tokio::select! {
        r = server => r?,
        _ = tokio::signal::ctrl_c() => eprintln!("stopped; executions started here keep running"),
    }
    Ok(0)
}
