//! Test harness: the real application on a random port with a fresh database per test —
//! an SQLite file by default, or a new PostgreSQL database when `TEST_DATABASE_URL` names a
//! PostgreSQL server.

use gmp::config::{Config, Secret};
use gmp::startup::Application;
use gmp::state::AppState;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use std::sync::Once;
use tempfile::TempDir;
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "platform@gmp.test";
pub const ADMIN_PASSWORD: &str = "platform admin passphrase";
pub const PASSWORD: &str = "a long test passphrase";

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
        jwt_secret: Some(Secret::new("test-jwt-secret-0123456789-abcdefghijklmnop")),
        master_key: Some(Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")),
        bootstrap_admin_email: Some(ADMIN_EMAIL.into()),
        bootstrap_admin_password: Some(Secret::new(ADMIN_PASSWORD)),
        workers: Some(1),
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
    pub platform: Session,
    /// Kept so the database lives (and is dropped) with the app.
    _db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        init_logging();
        let db = TestDb::fresh().await;
        let mut config = test_config(&db);
        adjust(&mut config);
        let app = Application::build(config).await.expect("application starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        tokio::spawn(app.run_until(std::future::pending()));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut test_app = Self {
            address,
            client,
            state,
            platform: placeholder_session(),
            _db: db,
        };
        test_app.platform = test_app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        test_app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
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

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.request(Method::POST, path, token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_with_if_match(&self, path: &str, token: &str, if_match: &str, body: &Value) -> Response {
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

pub fn etag_of(response: &Response) -> String {
    response
        .headers()
        .get("etag")
        .expect("response has an ETag")
        .to_str()
        .unwrap()
        .to_owned()
}
