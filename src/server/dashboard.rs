//! The web dashboard: one page and its script and style, embedded in the binary (no CDN, works
//! offline). The first load carries `?token=`: the server sets an HttpOnly, SameSite=Strict
//! cookie and sends the browser to the same page without the token in the URL; the page then
//! calls the API with `Authorization: Bearer` (the token is written into the page it is served,
//! which other origins cannot read).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Uri};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::auth::{COOKIE, Proof, page_allowed};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// The routes of the page.
pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
}

/// Headers every answer of the page carries: no framing by other sites, no sniffing, and
/// nothing loaded from anywhere but this server.
fn hardened(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn page(State(state): State<Arc<AppState>>, req: Request) -> Response {
    match page_allowed(&state, req.headers(), req.uri().query()) {
        Err(r) => r.into_response(),
        Ok(Proof::Query) => {
            let cookie = format!(
                "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
                state.token
            );
            hardened(
                (
                    StatusCode::SEE_OTHER,
                    [
                        (header::SET_COOKIE, cookie),
                        (header::LOCATION, "/".to_owned()),
                    ],
                )
                    .into_response(),
            )
        }
        Ok(_) => {
            let html = INDEX.replace("{{TOKEN}}", &state.token);
            hardened(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
        }
    }
}

fn asset(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    kind: &'static str,
    body: &'static str,
) -> Response {
    match page_allowed(state, headers, uri.query()) {
        Err(r) => r.into_response(),
        Ok(_) => hardened(([(header::CONTENT_TYPE, kind)], body).into_response()),
    }
}

async fn script(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Response {
    asset(
        &state,
        &headers,
        &uri,
        "text/javascript; charset=utf-8",
        SCRIPT,
    )
}

async fn style(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Response {
    asset(&state, &headers, &uri, "text/css; charset=utf-8", STYLE)
}
