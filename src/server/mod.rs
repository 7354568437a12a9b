//! `autowrkers serve` (seed §5, DESIGN §12): the REST API, the WebSocket of events and the web
//! dashboard, over the same files and engine functions as the CLI — no second source of
//! truth. Starting an execution launches the same detached runner as the live view; control
//! endpoints write `execution.yaml`; events come from following `events.ndjson`, so what the
//! CLI or an editor does shows up in the browser.
//!
//! One module a job: `auth` (token, host and origin checks), `error` (the JSON error shape),
//! `executions`, `artifacts`, `templates`, `providers`, `budget` (the REST routes), `ws` (the
//! event stream), `dashboard` (the page, embedded in the binary).

mod artifacts;
mod auth;
mod budget;
mod dashboard;
mod error;
mod executions;
mod providers;
mod templates;
mod ws;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

pub use auth::token;
pub use error::ApiError;

use crate::engine::{Engine, EngineError};
use crate::store::{self, Home, StoreError};

/// What `serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The address to listen on (`127.0.0.1:0` takes a free port).
    pub bind: SocketAddr,
    /// The projects served; empty serves every known project.
    pub paths: Vec<PathBuf>,
    /// Make a new token instead of keeping the one in `serve.token`.
    pub new_token: bool,
    /// Allow a non-loopback address (and any `Host`).
    pub allow_remote: bool,
    /// The binary that runs executions (`autowrkers resume`), normally the running one.
    pub exe: PathBuf,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without `--allow-remote`.
    #[error(
        "{0} is not a loopback address: anyone who can reach it could try the API. Pass --allow-remote to serve it anyway"
    )]
    Remote(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// A file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine could not be set up.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The server stopped with an error.
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// What every handler shares.
pub struct AppState {
    home: Home,
    token: String,
    addr: SocketAddr,
    allow_remote: bool,
    /// The projects named with `--path` (canonical); empty: every known project.
    paths: Vec<PathBuf>,
    exe: PathBuf,
    engine: Engine,
}

impl AppState {
    /// The project a request is about: the one it names (it must be served), else the first
    /// served, else the first known project.
    fn project(&self, named: Option<&str>) -> Result<PathBuf, ApiError> {
        if let Some(p) = named {
            let path = Path::new(p)
                .canonicalize()
                .map_err(|e| ApiError::bad_request(format!("no such project {p}: {e}")))?;
            // Only the projects served: a request cannot write templates or start runs in
            // any folder of the machine.
            if !self.projects()?.contains(&path) {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "{} is not a project this server serves (serve it with --path, or run in it once)",
                        path.display()
                    ),
                ));
            }
            return Ok(path);
        }
        if let Some(first) = self.paths.first() {
            return Ok(first.clone());
        }
        store::known_projects(&self.home)?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::bad_request("no project: pass `project` (a path)"))
    }

    /// The projects served.
    fn projects(&self) -> Result<Vec<PathBuf>, ApiError> {
        if self.paths.is_empty() {
            Ok(store::known_projects(&self.home)?)
        } else {
            Ok(self.paths.clone())
        }
    }

    /// Finds an execution the server serves by id or unique prefix.
    fn find(&self, id: &str) -> Result<crate::store::ExecutionDir, ApiError> {
        let dir = store::find_execution(&self.home, self.paths.first().map(|p| p.as_path()), id)?;
        if !dir.project().is_some_and(|p| self.serves(p)) {
            return Err(ApiError::not_found(format!(
                "no execution matches `{id}` in the projects served"
            )));
        }
        Ok(dir)
    }

    /// True when `project` is one this server serves.
    fn serves(&self, project: &Path) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| p == project)
    }
}

/// True for loopback addresses.
fn loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// The router: the API under `/api/workflow` behind the guard, the page and its assets.
fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .merge(templates::routes())
        .merge(executions::routes())
        .merge(artifacts::routes())
        .merge(providers::routes())
        .merge(budget::routes())
        .route("/ws", get(ws::upgrade))
        .route("/projects", get(projects))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ));
    Router::new()
        .nest("/api/workflow", api)
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

/// Binds, prints `autowrkers serve: http://ADDR/?token=TOKEN` through `announce`, and serves
/// until the process is stopped.
pub async fn serve(
    home: Home,
    opts: ServeOptions,
    announce: impl FnOnce(&str),
) -> Result<(), ServeError> {
    if !loopback(&opts.bind) && !opts.allow_remote {
        return Err(ServeError::Remote(opts.bind));
    }
    let paths = opts
        .paths
        .iter()
        .map(|p| p.canonicalize().map_err(|e| StoreError::io(p, e)))
        .collect::<Result<Vec<_>, _>>()?;
    for p in &paths {
        store::register_project(&home, p)?;
    }
    let token = token(&home, opts.new_token)?;
    let listener = tokio::net::TcpListener::bind(opts.bind)
        .await
        .map_err(|e| ServeError::Bind(opts.bind, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Bind(opts.bind, e))?;
    let state = Arc::new(AppState {
        engine: Engine::new(home.clone())?,
        home,
        token,
        addr,
        allow_remote: opts.allow_remote,
        paths,
        exe: opts.exe,
    });
    announce(&format!("http://{addr}/?token={}", state.token));
    axum::serve(listener, router(state))
        .await
        .map_err(ServeError::Serve)
}

/// Waits for a child runner in a thread of its own, so it never lingers as a zombie.
fn reap(mut child: std::process::Child) {
    std::thread::spawn(move || {
        let _ = child.wait();
    });
}

/// `GET /api/workflow/projects`: the projects this server serves.
async fn projects(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::json!({"projects": state.projects()?})))
}
