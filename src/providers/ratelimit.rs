//! One rate limiter per account (key and server), shared by every phase and every runner on
//! the machine: the vendor's rate-limit headers (`x-ratelimit-*-requests`, Anthropic's
//! `anthropic-ratelimit-requests-*`, a 429's `Retry-After`) are written to a small file per
//! account under `$AUTOWRKERS_HOME/ratelimit/`, and before each call a caller takes one of the
//! requests left in the window — or waits for the window to reset — under a file lock. Parallel
//! reviewers and several executions on one key slow down together instead of running into 429s.
//! Files are named by a hash of the key and server, never the key.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Margin added to a window's end: the server's clock and the way there.
const MARGIN_MS: u64 = 50;

/// What is known of one account's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Window {
    /// Requests allowed per window, when the vendor said.
    limit: Option<u64>,
    /// Requests left in the current window; `None`: unknown (no header yet).
    remaining: Option<u64>,
    /// When the current window ends (ms since the epoch).
    reset_at_ms: u64,
    /// The window's length, to start the next one before the vendor tells it.
    window_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The rate-limit files of one home.
#[derive(Debug, Clone)]
pub struct RateLimits {
    dir: PathBuf,
}

/// A file held under an exclusive `flock` until dropped.
struct Locked(std::fs::File);

impl Locked {
    fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // SAFETY: flock on a descriptor this struct owns; released when it is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(file))
    }

    fn read(&mut self) -> Window {
        let mut text = String::new();
        let _ = self.0.read_to_string(&mut text);
        serde_json::from_str(&text).unwrap_or_default()
    }

    fn write(&mut self, w: &Window) {
        let text = serde_json::to_string(w).unwrap_or_default();
        let _ = self.0.set_len(0);
        let _ = self.0.rewind();
        let _ = self.0.write_all(text.as_bytes());
    }
}

/// A duration as OpenAI writes it: `1s`, `20ms`, `6m0s`, `1h2m3.5s`.
fn go_duration(text: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = text.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return None,
        };
        total += value * unit;
        any = true;
    }
    (any && number.is_empty()).then(|| Duration::from_secs_f64(total))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl RateLimits {
    /// The limits kept under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The file of the account `secret` opens at the server of `url`.
    pub fn account(&self, url: &str, secret: Option<&str>) -> PathBuf {
        let origin: String = url.split('/').take(3).collect::<Vec<_>>().join("/");
        let digest = Sha256::digest(format!("{}@{origin}", secret.unwrap_or("")).as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.json"))
    }

    /// Takes one request of the account's window, waiting for the window to reset when none
    /// is left.
    pub async fn acquire(&self, account: &Path) {
        // Nothing learnt of this account yet (most local servers send no limits): no file,
        // no lock, no wait.
        if !account.exists() {
            return;
        }
        loop {
            let wait = {
                let Ok(mut file) = Locked::open(account) else {
                    return;
                };
                let mut w = file.read();
                let now = now_ms();
                if now >= w.reset_at_ms && w.remaining.is_some() {
                    // A new window: the vendor's limit again, for as long as the last one.
                    w.remaining = w.limit;
                    w.reset_at_ms = now + w.window_ms.max(1) + MARGIN_MS;
                }
                match w.remaining {
                    Some(0) => Some(w.reset_at_ms.saturating_sub(now)),
                    Some(n) => {
                        w.remaining = Some(n - 1);
                        file.write(&w);
                        None
                    }
                    None => None,
                }
            };
            match wait {
                // A wait for a known deadline: the window's end.
                Some(ms) => tokio::time::sleep(Duration::from_millis(ms.max(1))).await,
                None => return,
            }
        }
    }

    /// Records what a response of the account said of its limits.
    pub fn learn(&self, account: &Path, status: u16, headers: &HeaderMap) {
        let now = now_ms();
        let remaining = header(headers, "x-ratelimit-remaining-requests")
            .or_else(|| header(headers, "anthropic-ratelimit-requests-remaining"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        let limit = header(headers, "x-ratelimit-limit-requests")
            .or_else(|| header(headers, "anthropic-ratelimit-requests-limit"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        let reset = header(headers, "x-ratelimit-reset-requests")
            .and_then(go_duration)
            .or_else(|| {
                let at = header(headers, "anthropic-ratelimit-requests-reset")?;
                let at = chrono::DateTime::parse_from_rfc3339(at).ok()?;
                let ms = (at.timestamp_millis() as u64).saturating_sub(now);
                Some(Duration::from_millis(ms))
            });
        let retry_after = (status == 429)
            .then(|| header(headers, "retry-after"))
            .flatten()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64);
        if remaining.is_none() && retry_after.is_none() {
            return;
        }
        let Ok(mut file) = Locked::open(account) else {
            return;
        };
        let mut w = file.read();
        if let Some(after) = retry_after {
            w.remaining = Some(0);
            w.reset_at_ms = now + after.as_millis() as u64 + MARGIN_MS;
        } else if let (Some(left), Some(reset)) = (remaining, reset) {
            let ends = now + reset.as_millis() as u64 + MARGIN_MS;
            // The same window (requests of ours still on their way are not in the server's
            // count yet): the smaller count wins. A later window: the server's.
            w.remaining = Some(match w.remaining {
                Some(ours) if w.reset_at_ms + MARGIN_MS >= ends => ours.min(left),
                _ => left,
            });
            w.reset_at_ms = ends;
            w.limit = limit.or(w.limit);
            w.window_ms = w.window_ms.max(reset.as_millis() as u64);
        }
        file.write(&w);
    }
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn openai_reset_durations_parse() {
        assert_eq!(go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(go_duration("1m30.5s"), Some(Duration::from_secs_f64(90.5)));
        assert_eq!(go_duration("soon"), None);
    }
}
