//! A small WebDriver client (JSON over HTTP, on the reqwest already in the tree) driving
//! Debian's Chromium through chromedriver, for the browser tests of the web UI.
//!
//! Without chromedriver and Chromium the browser tests print how to install them and return
//! (reported as passed but skipped); with `REQUIRE_BROWSER_TESTS=1` (set by `.ci/run`) a missing
//! browser fails them instead.

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The W3C key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const WAIT: Duration = Duration::from_secs(15);

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// chromedriver and the Chromium binary, or `None` (after saying how to install them) when
/// the browser tests should be skipped.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let given = |name: &str| std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_file());
    let driver = given("CHROMEDRIVER").or_else(|| which("chromedriver"));
    let chromium = given("CHROMIUM")
        .or_else(|| which("chromium"))
        .or_else(|| which("chromium-browser"));
    match (driver, chromium) {
        (Some(driver), Some(chromium)) => Some((driver, chromium)),
        _ => {
            let help = "the browser tests need Chromium and chromedriver: \
                        `apt-get install -y chromium chromium-driver` (Debian)";
            if std::env::var("REQUIRE_BROWSER_TESTS").is_ok_and(|v| v == "1") {
                panic!("REQUIRE_BROWSER_TESTS=1 but {help}");
            }
            eprintln!("SKIPPED: {help}");
            None
        }
    }
}

/// A running chromedriver with one Chromium session. Both end when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
    /// Where screenshots go: `target/ui-screenshots/`.
    pub screenshots: PathBuf,
}

/// An element found on the page.
#[derive(Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium at 1280×800; `None` when they are missing
    /// and not required.
    pub async fn start() -> Option<Self> {
        let (driver_path, chromium) = tools()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(response) = ready
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                break;
            }
            assert!(started.elapsed() < WAIT, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
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
            "--window-size=1280,800",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
        std::fs::create_dir_all(&screenshots).unwrap();
        Some(Self {
            driver,
            base,
            session,
            http,
            _profile: profile,
            screenshots,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let value = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(value.get("error").is_none(), "WebDriver POST {path}: {value}");
        value
    }

    async fn get(&self, path: &str) -> Value {
        let value = self.call(reqwest::Method::GET, path, None).await;
        assert!(value.get("error").is_none(), "WebDriver GET {path}: {value}");
        value
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub async fn current_url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_owned()
    }

    /// The element matching `css` now, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let value = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        value[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// Waits for an element matching `css`.
    pub async fn find(&self, css: &str) -> Element {
        let started = Instant::now();
        loop {
            if let Some(element) = self.try_find(css).await {
                return element;
            }
            if started.elapsed() > WAIT {
                let source = self.get("/source").await;
                panic!(
                    "no element matches `{css}` on {}: {source}",
                    self.current_url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Calls `/element/{id}{action}` on the element matching `css`. htmx may replace the
    /// element between the lookup and the call (a stale reference); then it is looked up again.
    async fn on_element(&self, css: &str, action: &str, body: Option<Value>) -> Value {
        let started = Instant::now();
        loop {
            let element = self.find(css).await;
            let method = match body {
                Some(_) => reqwest::Method::POST,
                None => reqwest::Method::GET,
            };
            let path = format!("/element/{}{action}", element.0);
            let value = self.call(method, &path, body.clone()).await;
            let Some(error) = value.get("error") else {
                return value;
            };
            let stale = error == "stale element reference"
                || value["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("does not belong to the document"));
            assert!(
                stale && started.elapsed() < WAIT,
                "WebDriver {path} on `{css}`: {value}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        self.on_element(css, "/click", Some(json!({}))).await;
    }

    /// Replaces the text of an input.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, "/clear", Some(json!({}))).await;
        self.on_element(css, "/value", Some(json!({"text": text}))).await;
    }

    pub async fn text(&self, css: &str) -> String {
        self.on_element(css, "/text", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the element's text contains `wanted`; returns the text.
    pub async fn wait_for_text(&self, css: &str, wanted: &str) -> String {
        let started = Instant::now();
        loop {
            let text = match self.try_find(css).await {
                Some(_) => self.text(css).await,
                None => String::new(),
            };
            if text.contains(wanted) {
                return text;
            }
            assert!(
                started.elapsed() < WAIT,
                "`{css}` never showed `{wanted}`; last text: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Chooses the option of select `css` whose value starts with `value_prefix` (waiting for
    /// it, as dropdowns fill from ConnectWise).
    pub async fn choose(&self, css: &str, value_prefix: &str) {
        self.click(&format!("{css} option[value^=\"{value_prefix}\"]"))
            .await;
        self.idle().await;
    }

    /// Waits until htmx has no request, swap or settle in progress, so content it swapped in
    /// is live before the next step.
    pub async fn idle(&self) {
        let script =
            "return document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling') === null";
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        while self
            .post("/execute/sync", json!({"script": script, "args": []}))
            .await
            != Value::Bool(true)
        {
            assert!(started.elapsed() < WAIT, "htmx never became idle");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The settle step ends with the class removal; give its callbacks a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Chooses `file` in the file input `css`.
    pub async fn send_file(&self, css: &str, file: &Path) {
        let text = file.to_str().unwrap();
        self.on_element(css, "/value", Some(json!({"text": text}))).await;
    }

    /// A DOM property of the element matching `css`.
    pub async fn property(&self, css: &str, name: &str) -> Value {
        self.on_element(css, &format!("/property/{name}"), None).await
    }

    /// Waits until the value of input `css` contains `wanted`.
    pub async fn wait_for_value(&self, css: &str, wanted: &str) {
        let started = Instant::now();
        loop {
            let value = self.property(css, "value").await;
            if value.as_str().is_some_and(|v| v.contains(wanted)) {
                return;
            }
            assert!(started.elapsed() < WAIT, "`{css}` never held `{wanted}`");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot of the page as `target/ui-screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let data = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; then chromedriver itself is stopped.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    let _ = reqwest::Client::new().delete(url).send().await;
                });
            }
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
