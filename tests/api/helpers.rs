//! Test harness: the real application on a random port with a fresh database per test —
//! an SQLite file by default, or a new PostgreSQL database when `TEST_DATABASE_URL` names a
//! PostgreSQL server.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use gmp::clock::Clock;
use gmp::config::{Config, Secret};
use gmp::startup::Application;
use gmp::state::AppState;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "platform@gmp.test";
pub const ADMIN_PASSWORD: &str = "platform admin passphrase";
pub const PASSWORD: &str = "a long test passphrase";

/// The JWT key of this test run: random, so no usable key is written in the repository (the
/// server refuses the ones that are).
pub fn test_jwt_secret() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| BASE64.encode(rand::random::<[u8; 48]>()))
}

/// The master key of this test run, random like `test_jwt_secret`.
pub fn test_master_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| BASE64.encode(rand::random::<[u8; 32]>()))
}

static LOGGING: Once = Once::new();

/// `TEST_LOG=1` shows the server's logs.
fn init_logging() {
    LOGGING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            gmp::telemetry::init(gmp::config::LogFormat::Pretty, "info,gmp=debug");
        }
    });
}

/// A database for one test, dropped with it.
pub struct TestDb {
    pub url: String,
    pub dir: TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn fresh() -> Self {
        // Every HTTP client in this process needs rustls's crypto provider selected.
        gmp::connectwise::client::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        {
            Some(server_url) => {
                let name = format!("gmp_test_{}", Uuid::new_v4().simple());
                let admin = Database::connect(&server_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                Self {
                    url: with_database(&server_url, &name),
                    dir,
                    postgres: Some((server_url, name)),
                }
            }
            None => Self {
                url: format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display()),
                dir,
                postgres: None,
            },
        }
    }

    /// The database the `gmp` binary uses with `gmp_command`: the same PostgreSQL database, or
    /// the default SQLite file in its data directory.
    pub fn binary_url(&self) -> String {
        match self.postgres {
            Some(_) => self.url.clone(),
            None => format!(
                "sqlite://{}?mode=ro",
                self.dir.path().join("data").join("gmp.db").display()
            ),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server_url, name)) = self.postgres.take() {
            // Drop runs inside the test's runtime; a fresh thread with its own runtime may block.
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    if let Ok(admin) = Database::connect(&server_url).await {
                        let _ = admin
                            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .await;
                        admin.close().await.ok();
                    }
                });
            })
            .join()
            .ok();
        }
    }
}

/// The same server URL pointing at another database.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{name}?{query}"),
        None => format!("{host_part}/{name}"),
    }
}

/// The test configuration: known bootstrap admin and keys, a fresh database.
pub fn test_config(db: &TestDb) -> Config {
    Config {
        bind: "127.0.0.1:0".into(),
        data_dir: db.dir.path().join("data"),
        database_url: Some(Secret::new(db.url.clone())),
        database_max_connections: 5,
        jwt_secret: Some(Secret::new(test_jwt_secret())),
        master_key: Some(Secret::new(test_master_key())),
        bootstrap_admin_email: Some(ADMIN_EMAIL.into()),
        bootstrap_admin_password: Some(Secret::new(ADMIN_PASSWORD)),
        workers: Some(1),
        // Tests call the jobs directly and read check-ins at once; the tests of batching and
        // scheduling turn these back on.
        jobs_enabled: false,
        checkin_flush_interval_ms: 0,
        ..Config::default()
    }
}

/// A signed-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub operator_id: String,
    pub tenant_id: String,
    pub email: String,
}

/// A tenant made for a test, with its admin signed in.
#[derive(Debug, Clone)]
pub struct TenantFixture {
    pub id: String,
    pub name: String,
    pub admin: Session,
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// `http://127.0.0.1:<port>` of the `/metrics` listener, when `metrics_bind` is set.
    pub metrics_address: Option<String>,
    pub platform: Session,
    /// The app's database; dropped with the app.
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_with_clock(Clock::system(), adjust).await
    }

    /// A server whose services and jobs go by `clock` (a manual one moves only when told).
    pub async fn spawn_with_clock(clock: Clock, adjust: impl FnOnce(&mut Config)) -> Self {
        init_logging();
        let db = TestDb::fresh().await;
        let mut config = test_config(&db);
        adjust(&mut config);
        let app = Application::build_with_clock(config, clock)
            .await
            .expect("application starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let metrics_address = app.metrics_port().map(|port| format!("http://127.0.0.1:{port}"));
        tokio::spawn(app.run_until(std::future::pending()));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut test_app = Self {
            address,
            client,
            state,
            metrics_address,
            platform: placeholder_session(),
            db,
        };
        test_app.platform = test_app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        test_app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Starts another replica of this app: a second server on the same database and clock,
    /// with caches of its own. Returns its address.
    pub async fn start_replica(&self) -> String {
        let replica = Application::build_with_clock(test_config(&self.db), self.state.clock.clone())
            .await
            .expect("the second replica starts");
        let address = format!("http://127.0.0.1:{}", replica.port());
        tokio::spawn(replica.run_until(std::future::pending()));
        address
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, Some(token)).send().await.unwrap()
    }

    /// A `GET` that must succeed, as JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        let response = self.get(path, token).await;
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("a JSON body")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.request(Method::POST, path, token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_with_if_match(
        &self,
        path: &str,
        token: &str,
        if_match: &str,
        body: &Value,
    ) -> Response {
        self.request(Method::POST, path, Some(token))
            .header("if-match", if_match)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, token: &str, if_match: Option<&str>, body: &Value) -> Response {
        let mut request = self.request(Method::PATCH, path, Some(token)).json(body);
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        request.send().await.unwrap()
    }

    pub async fn delete(&self, path: &str, token: &str, if_match: Option<&str>) -> Response {
        let mut request = self.request(Method::DELETE, path, Some(token));
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        request.send().await.unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post(
            "/api/v1/auth/login",
            None,
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Session {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), StatusCode::OK, "sign-in of {email} failed");
        session_from(&response.json::<Value>().await.unwrap())
    }

    /// A new tenant with its admin signed in.
    pub async fn create_tenant(&self, name: &str) -> TenantFixture {
        let email = format!(
            "admin-{}@{}.test",
            Uuid::new_v4().simple(),
            name.to_lowercase().replace(' ', "-")
        );
        let response = self
            .post(
                "/api/v1/tenants",
                Some(&self.platform.access),
                &json!({"name": name, "admin": {"email": email, "password": PASSWORD}}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "creating tenant {name}");
        let body: Value = response.json().await.unwrap();
        TenantFixture {
            id: body["tenant"]["id"].as_str().unwrap().to_owned(),
            name: name.to_owned(),
            admin: self.sign_in(&email, PASSWORD).await,
        }
    }

    /// A new operator with `role` in the tenant of `admin`, signed in.
    pub async fn create_operator(&self, admin: &Session, role: &str) -> Session {
        let email = format!("{role}-{}@example.test", Uuid::new_v4().simple());
        let response = self
            .post(
                "/api/v1/operators",
                Some(&admin.access),
                &json!({"email": email, "role": role, "password": PASSWORD}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "creating {role}");
        self.sign_in(&email, PASSWORD).await
    }
}

fn placeholder_session() -> Session {
    Session {
        access: String::new(),
        refresh: String::new(),
        operator_id: String::new(),
        tenant_id: String::new(),
        email: String::new(),
    }
}

pub fn session_from(body: &Value) -> Session {
    Session {
        access: body["access_token"].as_str().expect("access_token").to_owned(),
        refresh: body["refresh_token"].as_str().expect("refresh_token").to_owned(),
        operator_id: body["operator"]["id"].as_str().unwrap().to_owned(),
        tenant_id: body["operator"]["tenant_id"].as_str().unwrap().to_owned(),
        email: body["operator"]["email"].as_str().unwrap().to_owned(),
    }
}

/// Asserts an RFC 9457 error with this status and code; returns the body.
pub async fn assert_problem(response: Response, status: u16, code: &str) -> Value {
    let actual_status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(actual_status, status, "unexpected status; body: {body}");
    assert_eq!(content_type, "application/problem+json", "body: {body}");
    assert_eq!(body["code"], code, "body: {body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("urn:gmp:problem:{code}"));
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

/// The stored device presenting this credential, read as a directory miss reads it.
pub async fn stored_device(
    db: &impl ConnectionTrait,
    credential: &str,
) -> Option<gmp::domain::device::Device> {
    let digest = gmp::auth::token::digest(credential);
    gmp::db::repo::devices::find_by_credentials(db, &[digest.as_str()])
        .await
        .unwrap()
        .remove(&digest)
}

pub fn etag_of(response: &Response) -> String {
    response
        .headers()
        .get("etag")
        .expect("response has an ETag")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The `gmp` binary on the test's database, with only the `GMP_*` variables given.
pub fn gmp_command(db: &TestDb, extra_env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gmp"));
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("GMP_")) {
        command.env_remove(name);
    }
    command.env("GMP_DATA_DIR", db.dir.path().join("data"));
    if db.is_postgres() {
        command.env("GMP_DATABASE_URL", &db.url);
    }
    for (name, value) in extra_env {
        command.env(name, value);
    }
    command
}

/// The real `gmp` binary, started as a person would, with its output captured.
pub struct Server {
    child: Child,
    port: u16,
    output: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(db: &TestDb, extra_env: &[(&str, &str)]) -> Self {
        let mut command = gmp_command(db, extra_env);
        command
            .arg("serve")
            .env("GMP_BIND", "127.0.0.1:0")
            .env("GMP_LOG_FORMAT", "json")
            .env("GMP_WORKERS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("gmp starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        capture(child.stdout.take().unwrap(), output.clone());
        capture(child.stderr.take().unwrap(), output.clone());
        let mut server = Self {
            child,
            port: 0,
            output,
        };
        let listening = server.wait_for(|line| line.contains("\"listening\""));
        let entry: Value = serde_json::from_str(&listening).expect("a JSON log line");
        server.port = entry["port"].as_u64().expect("the port is logged") as u16;
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's output, readable after the server is gone.
    pub fn output_handle(&self) -> Arc<Mutex<Vec<String>>> {
        self.output.clone()
    }

    /// Everything the server printed so far, logs and banner, stdout and stderr.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// The first line of output matching `wanted`, waiting for it.
    pub fn wait_for(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self.output.lock().unwrap().iter().find(|l| wanted(l)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "gmp never printed the expected line:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (a name such as `HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal}");
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "gmp did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The credentials tests give the binary's bootstrap admin.
pub const SERVER_ADMIN: (&str, &str) = ("root@example.com", "configured admin passphrase");

/// The bootstrap admin signed in to a `Server`, with the URL of its tenant's root policy.
pub struct ServerSession {
    pub client: reqwest::Client,
    pub token: String,
    pub policy_url: String,
}

impl Server {
    /// Signs in as `SERVER_ADMIN` (pass it as `GMP_BOOTSTRAP_ADMIN_*` on start).
    pub async fn sign_in(&self) -> ServerSession {
        let client = reqwest::Client::new();
        let login: Value = client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"email": SERVER_ADMIN.0, "password": SERVER_ADMIN.1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["access_token"].as_str().expect("signed in").to_owned();
        let list: Value = client
            .get(self.url("/api/v1/policies"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let policy_url = self.url(&format!(
            "/api/v1/policies/{}",
            list["items"][0]["id"].as_str().unwrap()
        ));
        ServerSession {
            client,
            token,
            policy_url,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn capture(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
}

impl TestDb {
    /// Everything the database holds, as text: the SQLite files byte for byte, or a
    /// `pg_dump` of the PostgreSQL database.
    pub fn dump(&self) -> Vec<u8> {
        match &self.postgres {
            Some((server_url, name)) => {
                let output = Command::new("pg_dump")
                    .arg("--dbname")
                    .arg(with_database(server_url, name))
                    .output()
                    .expect("pg_dump runs");
                assert!(
                    output.status.success(),
                    "pg_dump: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                output.stdout
            }
            None => {
                let mut bytes = Vec::new();
                // The tests' own file, or the binary's default one in its data directory.
                for dir in [self.dir.path().to_owned(), self.dir.path().join("data")] {
                    for entry in std::fs::read_dir(dir).into_iter().flatten() {
                        let path = entry.unwrap().path();
                        let name = path.file_name().unwrap().to_string_lossy().into_owned();
                        if name.starts_with("test.db") || name.starts_with("gmp.db") {
                            bytes.extend(std::fs::read(path).unwrap());
                        }
                    }
                }
                assert!(!bytes.is_empty(), "the SQLite files exist");
                bytes
            }
        }
    }
}

/// True when `needle` occurs anywhere in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}
