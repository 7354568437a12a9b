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
/// A request taken this close to its window's end may reach the server in the next window
/// (a busy machine, a slow connect): it is counted in the next window too.
const LATE_MS: u64 = 250;

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
    /// Requests taken late in this window ([`LATE_MS`]), counted again in the next one.
    #[serde(default)]
    carry: u64,
    /// Requests sent before anything was known of the limits (by any runner) and not answered
    /// yet: some may still be on their way when the first answer tells what is left.
    #[serde(default)]
    blind: u64,
}

impl Window {
    /// Takes one request at `now` (ms since the epoch); the wait until the window resets when
    /// none is left. A window whose end has passed is followed by a new one of the same length
    /// with the vendor's limit, less the requests taken late in it.
    fn take(&mut self, now: u64) -> Option<u64> {
        if now >= self.reset_at_ms && self.remaining.is_some() {
            self.remaining = self.limit.map(|l| l.saturating_sub(self.carry));
            self.carry = 0;
            self.reset_at_ms = now + self.window_ms.max(1) + MARGIN_MS;
        }
        match self.remaining {
            Some(0) => Some(self.reset_at_ms.saturating_sub(now).max(1)),
            Some(n) => {
                self.remaining = Some(n - 1);
                if self.reset_at_ms.saturating_sub(now) < LATE_MS {
                    self.carry += 1;
                }
                None
            }
            None => {
                self.blind += 1;
                None
            }
        }
    }
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
        loop {
            let wait = {
                let Ok(mut file) = Locked::open(account) else {
                    return;
                };
                let mut w = file.read();
                let wait = w.take(now_ms());
                if wait.is_none() {
                    file.write(&w);
                }
                wait
            };
            match wait {
                // A wait for a known deadline: the window's end.
                Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
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
            // No news (most local servers send none): one request sent blind has come back.
            if let Ok(mut file) = Locked::open(account) {
                let mut w = file.read();
                if w.blind > 0 {
                    w.blind -= 1;
                    file.write(&w);
                }
            }
            return;
        }
        let Ok(mut file) = Locked::open(account) else {
            return;
        };
        let mut w = file.read();
        let blind = std::mem::take(&mut w.blind);
        if let Some(after) = retry_after {
            w.remaining = Some(0);
            w.reset_at_ms = now + after.as_millis() as u64 + MARGIN_MS;
        } else if let (Some(left), Some(reset)) = (remaining, reset) {
            let ends = now + reset.as_millis() as u64 + MARGIN_MS;
            // The same window (requests of ours still on their way are not in the server's
            // count yet): the smaller count wins. A later window: the server's.
            w.remaining = Some(match w.remaining {
                Some(ours) if w.reset_at_ms + MARGIN_MS >= ends => ours.min(left),
                // The server's count of a later window holds the late requests that reached it.
                Some(_) => {
                    w.carry = 0;
                    left
                }
                // The first news: the other requests sent without it may not have reached the
                // server yet; they are counted against what it says is left.
                None => left.saturating_sub(blind.saturating_sub(1)),
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
    use super::{MARGIN_MS, RateLimits, Window, go_duration};
    use std::time::Duration;

    fn window_of(path: &std::path::Path) -> Window {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn requests_sent_before_the_first_news_are_counted_against_it() {
        let tmp = tempfile::tempdir().unwrap();
        let limits = RateLimits::new(tmp.path().to_path_buf());
        let account = limits.account("http://127.0.0.1:1/v1", Some("k"));
        // Two runners each send a request before any answer told the limits.
        limits.acquire(&account).await;
        limits.acquire(&account).await;
        assert_eq!(window_of(&account).blind, 2);
        // An answer without limits (a local server) is one blind request back.
        limits.acquire(&account).await;
        limits.learn(&account, 200, &reqwest::header::HeaderMap::new());
        assert_eq!(window_of(&account).blind, 2);
        // The first answer: 4 a second, 3 left (it counted its own request, maybe not the other).
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-ratelimit-limit-requests", "4".parse().unwrap());
        headers.insert("x-ratelimit-remaining-requests", "3".parse().unwrap());
        headers.insert("x-ratelimit-reset-requests", "900ms".parse().unwrap());
        limits.learn(&account, 200, &headers);
        let w = window_of(&account);
        assert_eq!(
            w.remaining,
            Some(2),
            "the other request still on its way is counted"
        );
        assert_eq!(w.blind, 0);
    }

    #[test]
    fn a_request_taken_at_a_windows_end_counts_in_the_next_window_too() {
        // 4 a second; the window ends at 1000 (and the margin).
        let mut w = Window {
            limit: Some(4),
            remaining: Some(4),
            reset_at_ms: 1000 + MARGIN_MS,
            window_ms: 1000,
            carry: 0,
            blind: 0,
        };
        assert_eq!(w.take(100), None);
        assert_eq!(w.take(200), None);
        assert_eq!(w.take(300), None);
        // Taken 50 ms before the server's window ends: it may land in the next one.
        assert_eq!(w.take(1000), None);
        assert_eq!(w.take(1010), Some(40), "none left: wait for the reset");
        // The next window: 4 less the late one.
        for now in [1100, 1101, 1102] {
            assert_eq!(w.take(now), None);
        }
        assert!(
            w.take(1103).is_some(),
            "the late request was counted here too"
        );
    }

    #[test]
    fn openai_reset_durations_parse() {
        assert_eq!(go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(go_duration("1m30.5s"), Some(Duration::from_secs_f64(90.5)));
        assert_eq!(go_duration("soon"), None);
    }
}
