//! Who may talk to the server (DESIGN §12): every request carries the token — a
//! `Authorization: Bearer` header for the API, `?token=` for the WebSocket (browsers cannot set
//! its headers), `?token=` or the cookie it sets for the page itself. A WebSocket or
//! state-changing request sent by a page of another origin is refused (CSWSH, CSRF), and so is
//! a `Host` the server was not bound as (DNS rebinding). No CORS header is ever sent.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::store::{self, Home, StoreError};

/// The cookie the first page load with `?token=` sets, so a reload needs no token in the URL.
pub const COOKIE: &str = "autowrkers_token";

/// The server's token: read from `$AUTOWRKERS_HOME/serve.token`, or made (and written with
/// mode 0600) when absent or when `fresh` asks for a new one.
pub fn token(home: &Home, fresh: bool) -> Result<String, StoreError> {
    let file = home.root().join("serve.token");
    if !fresh
        && let Ok(text) = std::fs::read_to_string(&file)
        && text.trim().len() >= 32
    {
        return Ok(text.trim().to_owned());
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    store::write_private(&file, token.as_bytes()).map_err(|e| StoreError::io(&file, e))?;
    Ok(token)
}

/// Compares in time independent of where the strings first differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The value of `name` in the request's query string, if any (tokens are URL-safe as made).
fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// How a request proved it knows the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// `Authorization: Bearer`.
    Header,
    /// `?token=` in the URL.
    Query,
    /// The page cookie.
    Cookie,
}

/// How `req` carries the right token, if it does.
pub fn proof(state: &AppState, headers: &HeaderMap, query: Option<&str>) -> Option<Proof> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|t| same(t.trim(), &state.token)) {
        return Some(Proof::Header);
    }
    if query_value(query, "token").is_some_and(|t| same(t, &state.token)) {
        return Some(Proof::Query);
    }
    if cookie_value(headers, COOKIE).is_some_and(|t| same(t, &state.token)) {
        return Some(Proof::Cookie);
    }
    None
}

/// True when the request's `Host` is one the server answers as: its bound address, or
/// `localhost` at its port when bound to loopback. `--allow-remote` accepts any.
fn host_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    if state.allow_remote {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let port = state.addr.port();
    host == state.addr.to_string()
        || host == format!("localhost:{port}")
        || host == format!("127.0.0.1:{port}")
        || host == format!("[::1]:{port}")
}

/// True when a browser sent the request from a page of another origin. Requests without an
/// `Origin` (curl, scripts) are not a browser's cross-site requests.
fn foreign_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin.to_str().ok(), host) {
        (Some(origin), Some(host)) => origin != format!("http://{host}"),
        _ => true,
    }
}

/// The guard in front of every route but the page's own assets: host, token, then origin.
pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if !host_allowed(&state, headers) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this Host is not the server's address (start it with --allow-remote to serve other names)",
        )
        .into_response();
    }
    let is_ws = req.uri().path().ends_with("/ws");
    let proof = proof(&state, headers, req.uri().query());
    // The API takes the header; the WebSocket the query (a browser cannot set its headers).
    let allowed = match proof {
        Some(Proof::Header) => true,
        Some(Proof::Query) => is_ws,
        _ => false,
    };
    if !allowed {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a token is needed: `Authorization: Bearer <token>` (the token is in serve.token under AUTOWRKERS_HOME)",
        )
        .into_response();
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if (changes || is_ws) && foreign_origin(headers) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "requests from another origin are refused",
        )
        .into_response();
    }
    next.run(req).await
}

/// Why the page was refused.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    /// A `Host` the server was not bound as.
    Host,
    /// No token, or a wrong one.
    Token,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Host => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", "unknown Host").into_response()
            }
            Self::Token => (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "Open the address `autowrkers serve` printed (it carries ?token=…).\n",
            )
                .into_response(),
        }
    }
}

/// The page's guard: the host, then the token by query (which sets the cookie and sends the
/// browser to the same page without it) or by the cookie.
pub fn page_allowed(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Proof, Refusal> {
    if !host_allowed(state, headers) {
        return Err(Refusal::Host);
    }
    match proof(state, headers, query) {
        Some(p @ (Proof::Query | Proof::Cookie)) => Ok(p),
        _ => Err(Refusal::Token),
    }
}
