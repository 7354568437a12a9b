//! A fake GitHub REST API on 127.0.0.1 (`GITHUB_API_URL` points at it): an issue with a
//! comment, the repository's default branch, pull requests and issue comments, each request
//! recorded; failures switched on and off by the test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What the fake does wrong, as a test asks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Mode {
    /// Everything works.
    #[default]
    Ok,
    /// 401 to every request.
    BadToken,
    /// The first pull request is refused: one exists already for the branch.
    PrExists,
}

/// One request it received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub auth: Option<String>,
}

#[derive(Default)]
struct Shared {
    mode: Mode,
    seen: Vec<Seen>,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeGitHub {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl FakeGitHub {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Self {
            addr,
            shared: Arc::default(),
        };
        let app = Router::new().fallback(answer).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    /// For `GITHUB_API_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.shared.lock().unwrap().mode = mode;
    }

    /// The requests whose method and path start as given.
    pub fn seen(&self, method: &str, path: &str) -> Vec<Seen> {
        self.shared
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.method == method && s.path.starts_with(path))
            .cloned()
            .collect()
    }
}

async fn answer(
    State(fake): State<FakeGitHub>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mode = {
        let mut s = fake.shared.lock().unwrap();
        s.seen.push(Seen {
            method: method.to_string(),
            path: uri.to_string(),
            body: body.clone(),
            auth,
        });
        s.mode
    };
    if mode == Mode::BadToken {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["repos", _, _, "issues", "42"]) => ok(json!({"number": 42,
            "title": "Crash on empty input", "body": "Steps: run with no arguments."})),
        ("GET", ["repos", _, _, "issues", "42", "comments"]) => ok(json!([
            {"user": {"login": "ada"}, "body": "It also happens with -v"}])),
        ("GET", ["repos", _, _]) => ok(json!({"default_branch": "main"})),
        ("POST", ["repos", o, r, "pulls"]) => {
            if mode == Mode::PrExists {
                return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"message": "Validation Failed",
                    "errors": [{"message": format!("A pull request already exists for {o}:{}.", body["head"].as_str().unwrap_or(""))}]})))
                    .into_response();
            }
            (
                StatusCode::CREATED,
                axum::Json(json!({"number": 7,
                "html_url": format!("https://github.example/{o}/{r}/pull/7")})),
            )
                .into_response()
        }
        ("GET", ["repos", _, _, "pulls", "7", "comments"]) => ok(json!([
            {"path": "greet.sh", "line": 2, "user": {"login": "ada"}, "body": "Please handle the empty name here."},
            {"path": "greet.sh", "line": 3, "user": {"login": "bob"}, "body": "Use printf instead of echo."}])),
        ("GET", ["repos", _, _, "pulls", "7"]) => {
            ok(json!({"number": 7, "head": {"sha": "abc123"}}))
        }
        ("GET", ["repos", _, _, "commits", "abc123", "check-runs"]) => ok(json!({"check_runs": [
            {"name": "ci/test", "conclusion": "failure", "output": {"title": "1 test failed", "summary": "test_empty_name failed"}},
            {"name": "lint", "conclusion": "success", "output": {"title": "ok", "summary": ""}}]})),
        ("GET", ["repos", o, r, "pulls"]) => ok(json!([{"number": 5,
            "html_url": format!("https://github.example/{o}/{r}/pull/5")}])),
        ("PATCH", ["repos", _, _, "pulls", _]) => ok(json!({})),
        ("POST", ["repos", _, _, "issues", "42", "comments"]) => {
            (StatusCode::CREATED, axum::Json(json!({"id": 1}))).into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Not Found"})),
        )
            .into_response(),
    }
}
