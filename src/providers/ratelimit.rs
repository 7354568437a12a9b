//! One rate limiter per account (key and server), shared by every phase and every runner on
//! the machine: the vendor's rate-limit headers (`x-ratelimit-*-requests`, Anthropic's
//! `anthropic-ratelimit-requests-*`, a 429's `Retry-After`) are written to a small file per
//! account under `$AUTOWRKERS_HOME/ratelimit/`, and before each call a caller takes one of the
//! requests left in the window — or waits for the window to reset — under a file lock. Parallel
//! reviewers and several executions on one key slow down together instead of running into 429s.
//! Files are named by a hash of the key and server, never the key.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
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

/// The rate-limit files of one home. Each account's file is opened once per process and kept
/// open: a call reads and rewrites it twice (take a request, learn from the answer), and an
/// open, a truncation and a close each time cost more than the call's own bookkeeping.
#[derive(Debug, Clone)]
pub struct RateLimits {
    dir: PathBuf,
    open: Arc<Mutex<HashMap<PathBuf, Arc<Mutex<File>>>>>,
}

/// An account's file, held under the process's lock of it and an exclusive `flock` (which
/// keeps other runners out) until dropped.
struct Locked<'a>(MutexGuard<'a, File>);

impl<'a> Locked<'a> {
    fn lock(file: &'a Mutex<File>) -> std::io::Result<Self> {
        // flock excludes other open files only, so the threads of this process that share
        // the one file take turns through the mutex first.
        let guard = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // SAFETY: flock on a descriptor the guarded file owns; unlocked in `drop`.
        if unsafe { libc::flock(guard.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(guard))
    }

    /// The window, and the file's length (what a shorter write pads to).
    fn read(&mut self) -> (Window, usize) {
        let mut bytes = Vec::new();
        let mut piece = [0u8; 512];
        while let Ok(n @ 1..) = self.0.read_at(&mut piece, bytes.len() as u64) {
            bytes.extend_from_slice(&piece[..n]);
        }
        let window = serde_json::from_slice(&bytes).unwrap_or_default();
        (window, bytes.len())
    }

    /// Writes `w` over the file from its start, padded with spaces to `len` (JSON allows
    /// trailing white space): the file is never truncated, which would free its block only
    /// for the write to take one again.
    fn write(&mut self, w: &Window, len: usize) {
        let mut text = serde_json::to_vec(w).unwrap_or_default();
        if text.len() < len {
            text.resize(len, b' ');
        }
        let _ = self.0.write_all_at(&text, 0);
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `lock`; the file stays open for the next call.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
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
        Self {
            dir,
            open: Arc::default(),
        }
    }

    /// The account's file, opened (and its folder made) at its first use in this process.
    fn file(&self, account: &Path) -> std::io::Result<Arc<Mutex<File>>> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(file) = open.get(account) {
            return Ok(file.clone());
        }
        if let Some(dir) = account.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(account)?;
        let file = Arc::new(Mutex::new(file));
        open.insert(account.to_path_buf(), file.clone());
        Ok(file)
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
            let Ok(file) = self.file(account) else {
                return;
            };
            let wait = {
                let Ok(mut locked) = Locked::lock(&file) else {
                    return;
                };
                let (mut w, len) = locked.read();
                let wait = w.take(now_ms());
                if wait.is_none() {
                    locked.write(&w, len);
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
        let Ok(file) = self.file(account) else {
            return;
        };
        let Ok(mut locked) = Locked::lock(&file) else {
            return;
        };
        let (mut w, len) = locked.read();
        if remaining.is_none() && retry_after.is_none() {
            // No news (most local servers send none): one request sent blind has come back.
            if w.blind > 0 {
                w.blind -= 1;
                locked.write(&w, len);
            }
            return;
        }
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
        locked.write(&w, len);
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

    #[tokio::test]
    async fn runners_with_their_own_open_files_count_in_one_window() {
        let tmp = tempfile::tempdir().unwrap();
        let (one, two) = (
            RateLimits::new(tmp.path().to_path_buf()),
            RateLimits::new(tmp.path().to_path_buf()),
        );
        let account = one.account("http://127.0.0.1:1/v1", Some("k"));
        // A long window (big numbers) first, then one whose text is shorter.
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-ratelimit-limit-requests", "1000000".parse().unwrap());
        headers.insert("x-ratelimit-remaining-requests", "999999".parse().unwrap());
        headers.insert("x-ratelimit-reset-requests", "1h".parse().unwrap());
        one.learn(&account, 200, &headers);
        headers.insert("x-ratelimit-remaining-requests", "7".parse().unwrap());
        two.learn(&account, 200, &headers);
        assert_eq!(window_of(&account).remaining, Some(7));
        // Each takes one through its own open file; each sees the other's.
        one.acquire(&account).await;
        two.acquire(&account).await;
        one.acquire(&account).await;
        assert_eq!(window_of(&account).remaining, Some(4));
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
