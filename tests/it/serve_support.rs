//! A running `autowrkers serve` for the tests: the real binary on a free port, its address and
//! token read from the line it prints, an HTTP client that sends the token, and a WebSocket
//! reader of events.

use std::io::BufRead;
use std::process::{Child, Stdio};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::fake_llm::{Reply, Rule};
use crate::support::Project;

/// The two-iteration pipeline's rules, with the analyzer's first answer held: a run stays in
/// its first phase until the server releases it.
pub fn held_analyzer_rules() -> Vec<Rule> {
    let tasks = "```json\n{\"summary\": \"add --verbose\", \"tasks\": [{\"id\": 1, \"title\": \"flag\", \"files\": [\"greet.sh\"]}]}\n```\n/analysis-complete";
    let mut rules = vec![Rule::new("analyzer", None, Reply::text(tasks).held()).times(1)];
    rules.extend(crate::pipeline::two_iteration_rules(
        std::time::Duration::ZERO,
    ));
    rules
}

/// `serve` on 127.0.0.1 and a free port, serving one project; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The token it printed.
    pub token: String,
    /// The line it printed.
    pub line: String,
    http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `serve --bind 127.0.0.1:0 --path <project>` plus `extra` arguments and waits for
    /// the line with its address.
    pub async fn start(p: &Project, extra: &[&str]) -> Self {
        let mut cmd = p.cmd();
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--path"])
            .arg(p.path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .expect("read");
            line
        })
        .await
        .expect("join");
        let url = line
            .trim()
            .strip_prefix("autowrkers serve: ")
            .unwrap_or_else(|| panic!("no address line: {line:?}"))
            .to_owned();
        let (base, token) = url.split_once("/?token=").expect("token in the URL");
        Self {
            child,
            base: base.to_owned(),
            token: token.to_owned(),
            line,
            http: plain_client(),
        }
    }

    /// `http://127.0.0.1:PORT/api/workflow` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/workflow{path}", self.base)
    }

    /// A request to the API carrying the token.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    /// A request without the token.
    pub fn bare(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// GET with the token: (status, JSON body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        answer(self.req(reqwest::Method::GET, path)).await
    }

    /// POST of a JSON body with the token: (status, JSON body).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        answer(self.req(reqwest::Method::POST, path).json(&body)).await
    }

    /// PUT of a raw body with the token: (status, JSON body).
    pub async fn put_raw(&self, path: &str, body: &str) -> (u16, Value) {
        answer(self.req(reqwest::Method::PUT, path).body(body.to_owned())).await
    }

    /// The event WebSocket of one execution from offset `since`.
    pub async fn events(&self, execution: &str, since: u64) -> Events {
        let url = format!(
            "ws://{}/api/workflow/ws?token={}&execution_id={execution}&since={since}",
            self.base.trim_start_matches("http://"),
            self.token
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        Events { ws }
    }
}

/// An HTTP client for `http://` (reqwest is built without a default TLS provider).
pub fn plain_client() -> reqwest::Client {
    plain_builder().build().expect("client")
}

/// The builder of `plain_client`, for clients with other settings.
pub fn plain_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().tls_certs_only([])
}

/// Sends a request: (status, JSON body, or the text as a JSON string).
pub async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// A reader of the events a WebSocket sends.
pub struct Events {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Events {
    /// The next event.
    pub async fn next(&mut self) -> Value {
        loop {
            match self.ws.next().await.expect("socket open").expect("frame") {
                Message::Text(t) => return serde_json::from_str(&t).expect("JSON event"),
                Message::Close(_) => panic!("socket closed"),
                _ => {}
            }
        }
    }

    /// Events up to and including the first of type `kind`.
    pub async fn until(&mut self, kind: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let e = self.next().await;
            let done = e["type"] == kind;
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
}
