//! Keys whose quota or credit ran out, remembered for a cool-down across runners: a phase that
//! meets `insufficient_quota` (or a 402, a credit-balance error, a daily quota) marks the key,
//! and every phase of every execution that would use it goes to its fallback at once instead of
//! calling again. Marks are files in `$AUTOWRKERS_HOME/exhausted/`, named by the provider and a
//! hash of the key — never the key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::types::{BoxFuture, ChatProvider, ChatRequest, ChatResponse, DeltaSink, ProviderError};
use crate::store::Home;

/// How long a key stays marked (quotas reset by the minute, the day or on payment; a later
/// run tries again).
pub const COOL_DOWN: Duration = Duration::from_secs(15 * 60);

/// The mark file of the account `key` opens at `url` of `provider` (keyless: the server).
fn mark_path(home: &Home, provider: &str, key: Option<&str>, url: &str) -> PathBuf {
    let digest = Sha256::digest(format!("{}@{url}", key.unwrap_or("")).as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    home.root()
        .join("exhausted")
        .join(format!("{provider}-{hex}.json"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The message of a live mark, if any.
fn read_mark(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let until = v["until"].as_u64()?;
    (until > now()).then(|| v["message"].as_str().unwrap_or("").to_owned())
}

fn write_mark(path: &std::path::Path, message: &str) {
    let body = serde_json::json!({"until": now() + COOL_DOWN.as_secs(), "message": message});
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = crate::store::write_replace(path, body.to_string().as_bytes());
}

/// An agent CLI (its own account, not a key of ours) found at its usage limit: the message,
/// while the mark lasts.
pub fn cli_marked(home: &Home, cli: &str) -> Option<String> {
    read_mark(&mark_path(home, cli, None, "agent-cli"))
}

/// Marks an agent CLI as at its usage limit for the cool-down.
pub fn mark_cli(home: &Home, cli: &str, message: &str) {
    write_mark(&mark_path(home, cli, None, "agent-cli"), message);
}

/// A chat provider whose key is checked against the marks before each call, and marked when
/// the call says its quota is gone.
pub struct QuotaGuard {
    inner: Arc<dyn ChatProvider>,
    mark: PathBuf,
}

impl QuotaGuard {
    /// Guards `inner`, the provider `provider` with `key` at `url`.
    pub fn new(
        inner: Arc<dyn ChatProvider>,
        home: &Home,
        provider: &str,
        key: Option<&str>,
        url: &str,
    ) -> Self {
        Self {
            inner,
            mark: mark_path(home, provider, key, url),
        }
    }

    fn marked(&self) -> Option<String> {
        read_mark(&self.mark)
    }

    fn set_mark(&self, message: &str) {
        write_mark(&self.mark, message);
    }

    async fn call(
        &self,
        request: &ChatRequest,
        on_delta: DeltaSink<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        if let Some(message) = self.marked() {
            return Err(ProviderError::QuotaExhausted {
                status: 0,
                message: format!(
                    "this key was found exhausted by an earlier call (skipped for {} min): {message}",
                    COOL_DOWN.as_secs() / 60
                ),
            });
        }
        let result = self.inner.chat(request, on_delta).await;
        if let Err(e) = &result
            && e.is_quota_exhausted()
        {
            let said = match e {
                ProviderError::QuotaExhausted { message, .. }
                | ProviderError::AgentCli { message, .. } => message.clone(),
                other => other.to_string(),
            };
            self.set_mark(&said);
        }
        result
    }
}

impl ChatProvider for QuotaGuard {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        on_delta: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(self.call(request, on_delta))
    }
}
