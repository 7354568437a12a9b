//! Just enough of the W3C WebDriver protocol to drive a real headless Chromium through
//! `chromedriver`: sessions, navigation, scripts, clicks and screenshots. Waits are promises in
//! the page that resolve on DOM mutations, never sleeps.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session; both end when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Browser {
    /// Ends the session (chromedriver then quits Chromium and waits for it), then kills
    /// chromedriver's process group: killing chromedriver alone left Chromium running.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Some((host, path)) = self
            .base
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
            && let Ok(mut sock) = std::net::TcpStream::connect(host)
        {
            let request = format!(
                "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(30)));
            if sock.write_all(request.as_bytes()).is_ok() {
                // Its answer comes once Chromium is gone.
                let _ = sock.read(&mut [0u8; 4096]);
            }
        }
        // SAFETY: signals the process group chromedriver leads (spawned with process_group(0)).
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

/// True when this machine has chromium and chromedriver.
pub fn available() -> bool {
    ["chromium", "chromedriver"].iter().all(|b| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session.
    pub async fn start() -> Self {
        use std::os::unix::process::CommandExt;
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let out = driver.stdout.take().expect("stdout");
        // It says the port it took once it listens.
        let port = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(out).lines();
            loop {
                let line = lines.next().expect("chromedriver exited").expect("line");
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().to_owned();
                }
            }
        })
        .await
        .expect("join");
        let http = crate::serve_support::plain_client();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run"]}
        }}});
        let res: Value = http
            .post(format!("http://127.0.0.1:{port}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("json");
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {res}"))
            .to_owned();
        let browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}/session/{session}"),
            http,
        };
        browser
            .call("POST", "/timeouts", json!({"script": 60_000}))
            .await;
        browser
    }

    /// The whole answer to a command: `value`, which holds `error` when it failed.
    async fn send(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        let res: Value = req
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("json");
        res["value"].clone()
    }

    /// A command that must succeed: its value.
    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let value = self.send(method, path, body).await;
        if let Some(err) = value["error"].as_str() {
            panic!("webdriver {path}: {err}: {}", value["message"]);
        }
        value
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url})).await;
    }

    /// Runs `script` (a function body) in the page with `args`; returns its value.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits until the JavaScript expression `condition` is truthy, re-checked on every change
    /// of the page; returns its value.
    pub async fn wait_for(&self, condition: &str) -> Value {
        let script = format!(
            "const done = arguments[arguments.length - 1];
             const check = () => {{ try {{ return ({condition}); }} catch (e) {{ return null; }} }};
             const first = check();
             if (first) {{ done(first); return; }}
             const obs = new MutationObserver(() => {{ const v = check(); if (v) {{ obs.disconnect(); done(v); }} }});
             obs.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}});"
        );
        self.call(
            "POST",
            "/execute/async",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Clicks the first element matching `css` (found again if the page replaced it between
    /// the find and the click).
    pub async fn click(&self, css: &str) {
        for _ in 0..3 {
            let el = self
                .call(
                    "POST",
                    "/element",
                    json!({"using": "css selector", "value": css}),
                )
                .await;
            let id = el[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("{css}: {el}"))
                .to_owned();
            let res = self
                .send("POST", &format!("/element/{id}/click"), json!({}))
                .await;
            match res["error"].as_str() {
                None => return,
                Some("stale element reference") => continue,
                Some(e) => panic!("click {css}: {e}: {}", res["message"]),
            }
        }
        panic!("click {css}: the element kept being replaced");
    }

    /// A PNG of the window, written to `path`; returns its size in bytes.
    pub async fn screenshot(&self, path: &std::path::Path) -> usize {
        let b64 = self.call("GET", "/screenshot", Value::Null).await;
        let png = base64_decode(b64.as_str().expect("base64"));
        assert_eq!(&png[1..4], b"PNG", "a PNG");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, &png).expect("write screenshot");
        png.len()
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|c| u32::from(value(*c))).collect();
        let n = v
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, x)| acc | (x << (18 - 6 * i)));
        out.push((n >> 16) as u8);
        if v.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if v.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}
