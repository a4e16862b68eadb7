//! The real `gmp` binary, as a person would start it.

use crate::helpers::{Server, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

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
    server.wait_for(|line| line.contains("password:"));
    let stderr = server.output();
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
    assert!(!again.output().contains("password:"));
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
    let output = server.output();
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

#[tokio::test]
async fn the_healthcheck_command_reports_the_servers_health() {
    let db = TestDb::fresh().await;
    let server = Server::start(&db, &[]);
    let url = server.url("/healthz");
    let check = move |url: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gmp"))
            .args(["healthcheck", "--url", &url])
            .env_remove("GMP_DATABASE_URL")
            .output()
            .unwrap()
            .status
    };
    let healthy = tokio::task::spawn_blocking({
        let url = url.clone();
        move || check(url)
    })
    .await
    .unwrap();
    assert!(healthy.success());
    assert!(server.terminate().success());
    let down = tokio::task::spawn_blocking(move || check(url)).await.unwrap();
    assert!(!down.success(), "a stopped server fails the health check");
}
