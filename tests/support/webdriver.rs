//! A small WebDriver client (W3C WebDriver over HTTP+JSON, with ureq) that
//! drives Debian's headless Chromium through `chromedriver`, for the admin
//! page's browser tests. Blocking: call it from a plain thread, not from
//! inside the runtime that serves the relay.
//!
//! `.ci/run` installs `chromium` and `chromium-driver`; without them the
//! tests fail (never pass silently) and say so.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The browser binary itself (Debian's `/usr/bin/chromium` is a wrapper
/// script that reads settings files; the tests want none of them).
const CHROMIUM: &[&str] = &["/usr/lib/chromium/chromium", "/usr/bin/chromium"];
/// W3C's key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a wait for the page lasts.
pub const WAIT: Duration = Duration::from_secs(15);

/// One headless Chromium, and the chromedriver that drives it.
pub struct Browser {
    driver: Child,
    url: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

/// A found element.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless browser
    /// with a fresh profile, window `width`×`height`.
    pub fn start(width: u32, height: u32) -> Browser {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: the admin page's browser tests need Debian's `chromium` and `chromium-driver` \
             packages, which `.ci/run` installs (apt-get install -y chromium chromium-driver)"
        );
        let binary = CHROMIUM.iter().find(|p| std::path::Path::new(p).exists()).unwrap_or_else(|| {
            panic!("no Chromium at {CHROMIUM:?}: `.ci/run` installs it (apt-get install -y chromium chromium-driver)")
        });
        // A port picked free may be taken by someone else before
        // chromedriver binds it; then chromedriver exits, and we try again.
        let mut tries = 0;
        let mut browser = loop {
            tries += 1;
            let port = free_port();
            let driver = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
            let profile = tempfile::tempdir().unwrap();
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
            let url = format!("http://127.0.0.1:{port}");
            let mut browser = Browser { driver, url, session: String::new(), agent, _profile: profile };
            match browser.wait_ready() {
                Ok(()) => break browser,
                Err(e) if tries < 3 => {
                    eprintln!("chromedriver on {}: {e}; trying another port", browser.url);
                    let _ = browser.driver.kill();
                }
                Err(e) => panic!("chromedriver never became ready ({e}); is `.ci/run`'s chromium-driver installed?"),
            }
        };
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--no-pings",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            // Nothing leaves the machine: every name but loopback's is
            // unknown, and any request that is not to loopback goes to a
            // closed loopback port (Chromium never proxies loopback).
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--proxy-server=http://127.0.0.1:9",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": args},
        }}});
        let answer = browser.raw("POST", "/session", Some(caps)).unwrap_or_else(|e| panic!("chromedriver refused a session: {e}"));
        browser.session = answer["sessionId"].as_str().expect("a session id").to_string();
        browser
    }

    /// Waits until chromedriver answers `/status` with ready.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(v) = self.raw("GET", "/status", None)
                && v["ready"].as_bool() == Some(true)
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(format!("it exited ({status})"));
            }
            if Instant::now() > deadline {
                return Err("no answer in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One WebDriver command; the `value` of its answer, or its error.
    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let request = self.agent.request(method, &format!("{}{path}", self.url));
        let result = match body {
            Some(b) => request.send_json(b),
            None => request.call(),
        };
        let text = match result {
            Ok(r) => r.into_string().map_err(|e| e.to_string())?,
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                return Err(format!("HTTP {code}: {text}"));
            }
            Err(e) => return Err(e.to_string()),
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        Ok(v.get("value").cloned().unwrap_or(Value::Null))
    }

    /// A command in this session; panics on a WebDriver error.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.raw(method, &path, body).unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// The first element matching `css` now, if any.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let path = format!("/session/{}/element", self.session);
        let v = self.raw("POST", &path, Some(json!({"using": "css selector", "value": css}))).ok()?;
        v.get(ELEMENT).and_then(Value::as_str).map(|id| Element(id.to_string()))
    }

    /// Every element matching `css` now.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.cmd("POST", "/elements", Some(json!({"using": "css selector", "value": css})));
        v.as_array().into_iter().flatten().filter_map(|e| e.get(ELEMENT).and_then(Value::as_str)).map(|id| Element(id.to_string())).collect()
    }

    /// Waits for an element matching `css` that is displayed.
    pub fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.try_find(css).filter(|e| self.displayed(e)) {
                return e;
            }
            assert!(Instant::now() < deadline, "no visible `{css}` on the page; it shows:\n{}", self.body_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn displayed(&self, e: &Element) -> bool {
        let path = format!("/session/{}/element/{}/displayed", self.session, e.0);
        self.raw("GET", &path, None).ok().and_then(|v| v.as_bool()).unwrap_or(false)
    }

    /// The rendered text of an element (what a person reads).
    pub fn text_of(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), None).as_str().unwrap_or_default().to_string()
    }

    /// The text of `e`, or `None` once it has left the page.
    fn try_text(&self, e: &Element) -> Option<String> {
        let path = format!("/session/{}/element/{}/text", self.session, e.0);
        self.raw("GET", &path, None).ok().map(|v| v.as_str().unwrap_or_default().to_string())
    }

    /// The rendered text of the first visible `css` (waiting for it, and
    /// looking again when the page replaced it meanwhile).
    pub fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let e = self.find(css);
            if let Some(text) = self.try_text(&e) {
                return text;
            }
            assert!(Instant::now() < deadline, "`{css}` kept being replaced");
        }
    }

    /// Waits until the text of `css` contains `want`; returns the text.
    pub fn wait_text(&self, css: &str, want: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.try_find(css).and_then(|e| self.try_text(&e)).unwrap_or_default();
            if text.contains(want) {
                return text;
            }
            assert!(Instant::now() < deadline, "`{css}` never said {want:?}; it says {text:?}; the page shows:\n{}", self.body_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    /// Clears the field `css` and types `text` into it.
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{}/clear", e.0), Some(json!({})));
        self.cmd("POST", &format!("/element/{}/value", e.0), Some(json!({ "text": text })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// Runs an async `script`; it ends by calling `arguments[arguments.length - 1]`.
    pub fn exec_async(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/async", Some(json!({ "script": script, "args": [] })))
    }

    pub fn body_text(&self) -> String {
        self.try_find("body").and_then(|b| self.try_text(&b)).unwrap_or_default()
    }

    /// Grants the page a permission, e.g. `clipboard-read` (W3C
    /// Permissions, "Set Permission" extension command).
    pub fn grant(&self, name: &str) {
        self.cmd("POST", "/permissions", Some(json!({ "descriptor": { "name": name }, "state": "granted" })));
    }

    pub fn set_window(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", Some(json!({ "width": width, "height": height })));
    }

    /// Saves a PNG of the viewport as `target/screenshots/<name>.png`, and
    /// returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.as_str().unwrap_or_default()).unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Saves a PNG of the whole page (as tall as its content), by making
    /// the window that tall first.
    pub fn full_screenshot(&self, name: &str, width: u32) -> PathBuf {
        // The height depends on the width: set the width, then measure.
        self.set_window(width, 900);
        let height = self.exec("return Math.ceil(document.documentElement.scrollHeight);", json!([])).as_u64().unwrap_or(900);
        self.set_window(width, (height as u32).clamp(400, 6000) + 140);
        self.screenshot(name)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `target/screenshots` (or under `CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("screenshots")
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
