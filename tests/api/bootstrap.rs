//! The real `gmp` binary, as a person would start it.

use crate::helpers::TestDb;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    port: u16,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    fn start(db: &TestDb, extra_env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gmp"));
        command
            .arg("serve")
            .env("GMP_BIND", "127.0.0.1:0")
            .env("GMP_DATA_DIR", db.dir.path().join("data"))
            .env("GMP_LOG_FORMAT", "json")
            .env("GMP_WORKERS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("GMP_")) {
            command.env_remove(name);
        }
        if db.is_postgres() {
            command.env("GMP_DATABASE_URL", &db.url);
        }
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("gmp starts");
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            let line = stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("gmp logs that it is listening");
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if entry["message"] == "listening" {
                break entry["port"].as_u64().unwrap() as u16;
            }
        };
        Self { child, port, stderr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn stderr_so_far(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// Stderr up to and including the first line containing `needle` (waits for it).
    fn stderr_until(&self, needle: &str) -> String {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let found = line.contains(needle);
            seen.push(line);
            if found {
                break;
            }
        }
        seen.join("\n")
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

async fn login(server: &Server, email: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

fn printed(stderr: &str, label: &str) -> String {
    stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("`{label}` not printed; stderr was:\n{stderr}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn first_start_prints_a_generated_admin_once_and_keys_persist() {
    let db = TestDb::fresh().await;
    let server = Server::start(&db, &[]);
    let stderr = server.stderr_until("password:");
    let email = printed(&stderr, "email:");
    let password = printed(&stderr, "password:");
    assert!(password.len() >= 32, "generated password is long");

    let response = login(&server, &email, &password).await;
    assert_eq!(response.status(), StatusCode::OK);
    let access = response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(server.terminate().success(), "graceful exit on SIGTERM");

    // Generated keys are owner-only files in the data directory.
    for key in ["jwt-secret", "master-key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(db.dir.path().join("data").join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    // Second start: no new admin, nothing printed, same keys (the old token still verifies).
    let again = Server::start(&db, &[]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!again.stderr_so_far().contains("password:"));
    assert_eq!(login(&again, &email, &password).await.status(), StatusCode::OK);
    let me = reqwest::Client::new()
        .get(again.url("/api/v1/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert!(again.terminate().success());
}

#[tokio::test]
async fn configured_bootstrap_admin_is_used_and_its_password_never_printed() {
    let db = TestDb::fresh().await;
    let server = Server::start(
        &db,
        &[
            ("GMP_BOOTSTRAP_ADMIN_EMAIL", "Root@Example.com"),
            ("GMP_BOOTSTRAP_ADMIN_PASSWORD", "configured admin passphrase"),
        ],
    );
    assert_eq!(
        login(&server, "root@example.com", "configured admin passphrase")
            .await
            .status(),
        StatusCode::OK
    );
    let output = server.stderr_so_far();
    assert!(!output.contains("configured admin passphrase"));
    assert!(server.terminate().success());
}

#[test]
fn unknown_configuration_keys_stop_the_server_with_the_key_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_gmp"))
        .arg("serve")
        .env("GMP_DATABSE_URL", "sqlite://typo.db")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("GMP_DATABSE_URL") && stderr.contains("databse_url"),
        "{stderr}"
    );
}

#[test]
fn the_openapi_command_prints_the_committed_document() {
    let output = Command::new(env!("CARGO_BIN_EXE_gmp"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), gmp::http::spec_json());
}
