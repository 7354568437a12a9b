//! The one HTTP/streaming layer every chat vendor uses: POST a JSON body, map the status to a
//! [`ProviderError`] that says how to retry, and read the answer as SSE events or NDJSON lines
//! with an idle timeout. It knows nothing about any vendor.

use std::sync::Once;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::types::ProviderError;
use crate::secret::Secret;

/// How long a stream may stay silent before the call counts as cut.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A header of a request; secret values are redacted from every error.
pub enum Header {
    /// A plain value.
    Plain(&'static str, String),
    /// A value holding a key (`Authorization: Bearer …`, `x-api-key`).
    Secret(&'static str, String, Secret),
}

/// Shared HTTP client with vendor-neutral helpers. Plain `http://` servers (Ollama, a local
/// OpenAI-compatible server) get a client with no trust roots; the system's roots are loaded
/// only when the first `https://` request is made, once per process.
#[derive(Clone)]
pub struct HttpClient {
    plain: reqwest::Client,
    tls: std::sync::Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>,
    idle_timeout: Duration,
    /// Shared per-account rate limits, when the client belongs to a home.
    limits: Option<super::ratelimit::RateLimits>,
}

static CRYPTO: Once = Once::new();

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .user_agent(concat!("autowrkers/", env!("CARGO_PKG_VERSION")))
}

impl HttpClient {
    /// The client with the system's trust roots, for forwarding requests as they are (the
    /// budget watchdog) and for every `https://` URL.
    pub fn raw(&self) -> Result<&reqwest::Client, ProviderError> {
        self.tls
            .get_or_init(|| builder().build().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ProviderError::Transport(e.clone()))
    }

    /// The client for `url`: without trust roots for plain HTTP.
    fn client_for(&self, url: &str) -> Result<&reqwest::Client, ProviderError> {
        if url.starts_with("http://") {
            Ok(&self.plain)
        } else {
            self.raw()
        }
    }

    /// A client with rustls (ring) and connect timeouts set.
    pub fn new() -> Result<Self, ProviderError> {
        CRYPTO.call_once(|| {
            // Fails only when another provider was installed first, which is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let plain = builder()
            .tls_certs_only([])
            .build()
            .map_err(|e| ProviderError::Transport(e.to_string()))?;
        Ok(Self {
            plain,
            tls: Default::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            limits: None,
        })
    }

    /// This client with its calls' rate limits shared through the files under `dir` (one per
    /// account), with every other runner of the machine.
    pub fn with_rate_limits(mut self, dir: std::path::PathBuf) -> Self {
        self.limits = Some(super::ratelimit::RateLimits::new(dir));
        self
    }

    /// POSTs `body` as JSON and returns the response once its status is a success.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[Header],
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut map = HeaderMap::new();
        let mut secrets: Vec<&Secret> = Vec::new();
        for h in headers {
            let (name, value) = match h {
                Header::Plain(n, v) => (*n, v.as_str()),
                Header::Secret(n, v, s) => {
                    secrets.push(s);
                    (*n, v.as_str())
                }
            };
            let name = HeaderName::from_static(name);
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                ProviderError::NotConfigured(format!(
                    "header {name} holds characters HTTP cannot carry"
                ))
            })?;
            value.set_sensitive(matches!(h, Header::Secret(..)));
            map.insert(name, value);
        }
        let scrub = |text: String| secrets.iter().fold(text, |t, s| s.redact(&t));
        // The account's window is shared with every phase and runner using the same key.
        let account = self
            .limits
            .as_ref()
            .map(|l| (l, l.account(url, secrets.first().map(|s| s.expose()))));
        if let Some((limits, account)) = &account {
            limits.acquire(account).await;
        }
        let response = self
            .client_for(url)?
            .post(url)
            .headers(map)
            .json(body)
            .send()
            .await
            .map_err(|e| ProviderError::Transport(scrub(without_url(e))))?;
        let status = response.status().as_u16();
        if let Some((limits, account)) = &account {
            limits.learn(account, status, response.headers());
        }
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64);
        let text = response.text().await.unwrap_or_default();
        Err(status_error(status, retry_after, scrub(shorten(&text))))
    }

    /// GETs a JSON document (model lists).
    pub async fn get_json(&self, url: &str) -> Result<serde_json::Value, ProviderError> {
        self.get_json_with(url, &[]).await
    }

    /// GETs a JSON document with headers; secret header values are redacted from errors.
    pub async fn get_json_with(
        &self,
        url: &str,
        headers: &[Header],
    ) -> Result<serde_json::Value, ProviderError> {
        let mut request = self.client_for(url)?.get(url);
        let mut secrets: Vec<&Secret> = Vec::new();
        for h in headers {
            request = match h {
                Header::Plain(n, v) => request.header(*n, v.as_str()),
                Header::Secret(n, v, s) => {
                    secrets.push(s);
                    request.header(*n, v.as_str())
                }
            };
        }
        let scrub = |text: String| secrets.iter().fold(text, |t, s| s.redact(&t));
        let response = request
            .send()
            .await
            .map_err(|e| ProviderError::Transport(scrub(without_url(e))))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| ProviderError::Transport(scrub(without_url(e))))?;
        if !(200..300).contains(&status) {
            return Err(status_error(status, None, scrub(shorten(&text))));
        }
        serde_json::from_str(&text).map_err(|e| ProviderError::Protocol(format!("not JSON: {e}")))
    }

    /// POSTs JSON and reads a JSON answer (non-streaming helpers like Ollama's `/api/show`).
    pub async fn post_for_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ProviderError> {
        let response = self.post_json(url, &[], body).await?;
        let text = response
            .text()
            .await
            .map_err(|e| ProviderError::Transport(without_url(e)))?;
        serde_json::from_str(&text).map_err(|e| ProviderError::Protocol(format!("not JSON: {e}")))
    }

    /// The response body as SSE events, each awaited with the idle timeout.
    pub fn sse(
        &self,
        response: reqwest::Response,
    ) -> impl Stream<Item = Result<eventsource_stream::Event, ProviderError>> + use<> {
        let idle = self.idle_timeout;
        let events = Box::pin(response.bytes_stream().eventsource());
        with_idle_timeout(events, idle).map(|item| match item {
            Ok(Ok(event)) => Ok(event),
            Ok(Err(e)) => Err(ProviderError::Transport(format!("stream cut: {e}"))),
            Err(e) => Err(e),
        })
    }
}

impl HttpClient {
    /// The response body as newline-delimited JSON values (Ollama), with the idle timeout.
    pub fn ndjson(
        &self,
        response: reqwest::Response,
    ) -> impl Stream<Item = Result<serde_json::Value, ProviderError>> + use<> {
        let bytes = Box::pin(response.bytes_stream());
        let chunks = with_idle_timeout(bytes, self.idle_timeout);
        let state = (Box::pin(chunks), Vec::<u8>::new(), false);
        futures_util::stream::unfold(state, |(mut chunks, mut buf, mut done)| async move {
            loop {
                if let Some(n) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=n).collect();
                    let text = String::from_utf8_lossy(&line);
                    if text.trim().is_empty() {
                        continue;
                    }
                    let item = serde_json::from_str(text.trim()).map_err(|e| {
                        ProviderError::Protocol(format!("line is not JSON ({e}): {}", text.trim()))
                    });
                    return Some((item, (chunks, buf, done)));
                }
                if done {
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    let rest = String::from_utf8_lossy(&std::mem::take(&mut buf)).into_owned();
                    let item = serde_json::from_str(rest.trim()).map_err(|e| {
                        ProviderError::Protocol(format!("truncated line ({e}): {rest}"))
                    });
                    return Some((item, (chunks, buf, true)));
                }
                match chunks.next().await {
                    Some(Ok(Ok(bytes))) => buf.extend_from_slice(&bytes),
                    Some(Ok(Err(e))) => {
                        return Some((
                            Err(ProviderError::Transport(format!("stream cut: {e}"))),
                            (chunks, buf, true),
                        ));
                    }
                    Some(Err(e)) => return Some((Err(e), (chunks, buf, true))),
                    None => done = true,
                }
            }
        })
    }
}

fn with_idle_timeout<S, T>(
    stream: S,
    idle: Duration,
) -> impl Stream<Item = Result<T, ProviderError>>
where
    S: Stream<Item = T> + Unpin,
{
    futures_util::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(item)) => Some((Ok(item), Some(stream))),
            Ok(None) => None,
            Err(_) => Some((
                Err(ProviderError::Transport(format!(
                    "no data for {}s",
                    idle.as_secs()
                ))),
                None,
            )),
        }
    })
}

/// reqwest errors print the URL; a query string may hold a key, so keep only the kind.
/// A transport error in words a person can act on: the server's origin (scheme, host, port:
/// never a path or query, which could carry a key), what went wrong, and what to check.
fn without_url(e: reqwest::Error) -> String {
    let origin = e.url().map(|u| {
        let host = u.host_str().unwrap_or("?");
        match u.port() {
            Some(port) => format!("{}://{host}:{port}", u.scheme()),
            None => format!("{}://{host}", u.scheme()),
        }
    });
    let connect = e.is_connect();
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut text = e.to_string();
    if let Some(source) = std::error::Error::source(&e) {
        text.push_str(&format!(": {source}"));
    }
    let Some(origin) = origin else {
        return text;
    };
    if connect {
        format!(
            "cannot connect to {origin} ({text}); check that the server runs there, or the provider's api_url"
        )
    } else if timeout {
        format!("{origin} did not answer in time ({text})")
    } else {
        format!("{origin}: {text}")
    }
}

/// The error a non-2xx status means, so callers know how to retry (or not).
fn status_error(status: u16, retry_after: Option<Duration>, message: String) -> ProviderError {
    if status == 402 || (status >= 400 && super::types::quota_words(&message)) {
        return ProviderError::QuotaExhausted { status, message };
    }
    match status {
        429 => ProviderError::RateLimited {
            retry_after,
            message,
        },
        401 | 403 => ProviderError::Auth { status, message },
        400..=499 => ProviderError::BadRequest { status, message },
        _ => ProviderError::Server { status, message },
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 2000;
    let t = text.trim();
    if t.len() <= MAX {
        return t.to_owned();
    }
    let mut end = MAX;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &t[..end])
}
