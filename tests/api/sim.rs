//! The device simulator against a real server: a small fleet end to end.

use crate::devices::{enrollment_token, fast_tenant};
use crate::helpers::TestApp;
use crate::policies::{root_policy, save_ok, seed_settings};
use gmp::sim::{SimOptions, run};
use serde_json::{Value, json};
use std::time::Duration;

fn options(app: &TestApp, token: &str, devices: u32) -> SimOptions {
    SimOptions {
        server: app.address.clone(),
        enrollment_token: Some(token.to_owned()),
        devices,
        kind: "mixed".into(),
        rounds: 2,
        interval: Some(Duration::from_millis(3200)),
        override_fraction: 0.0,
        fail_fraction: 0.0,
        seed: 3,
        hardware_prefix: "SIM".into(),
        max_wait: Duration::from_secs(10),
        state_file: None,
        progress: None,
    }
}

#[tokio::test]
async fn a_simulated_fleet_pulls_overrides_fails_and_reports() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = root_policy(&app, admin).await;
    save_ok(&app, admin, &root, &etag, seed_settings()).await;
    let token = enrollment_token(&app, admin, json!({"max_uses": 6})).await;

    let summary = run(SimOptions {
        override_fraction: 0.2,
        fail_fraction: 0.34,
        ..options(&app, token["token"].as_str().unwrap(), 6)
    })
    .await
    .unwrap();
    assert_eq!(summary.errors, 0, "{summary:?}");
    assert_eq!(summary.registered, 6);
    assert_eq!((summary.pulls_200, summary.reports), (6, 6), "one config each");
    assert_eq!(
        summary.pulls_304, 6,
        "the second round finds nothing new: {summary:?}"
    );
    assert!(
        summary.overriding_devices > 0 && summary.failing_devices > 0,
        "the seed exercises both: {summary:?}"
    );

    let devices: Value = app
        .get("/api/v1/devices?limit=200", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let devices = devices["items"].as_array().unwrap();
    assert_eq!(devices.len(), 6);
    assert_eq!(devices.iter().filter(|d| d["kind"] == "vault").count(), 3);
    let overrides: Value = app
        .get("/api/v1/audit/overrides", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        overrides["items"].as_array().unwrap().len() as u64,
        summary.overridden_fields
    );
    let dashboard: Value = app
        .get("/api/v1/dashboard/policies", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let default = &dashboard["policies"][0];
    assert_eq!(default["assigned"], 6);
    assert_eq!(default["overridden"].as_u64(), Some(summary.overriding_devices));
    assert_eq!(default["failed"].as_u64(), Some(summary.failing_devices));
    assert_eq!(default["in_sync"].as_u64(), Some(6 - summary.failing_devices));
}

#[tokio::test]
async fn the_simulator_honours_retry_after() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let token = enrollment_token(&app, &tenant.admin, json!({"max_uses": 2})).await;
    let summary = run(SimOptions {
        interval: Some(Duration::from_millis(100)),
        ..options(&app, token["token"].as_str().unwrap(), 2)
    })
    .await
    .unwrap();
    assert_eq!(summary.errors, 0, "{summary:?}");
    assert!(
        summary.pulls_429 >= 2,
        "pulling every 100 ms is refused: {summary:?}"
    );
    assert_eq!(
        summary.pulls_200 + summary.pulls_304,
        4,
        "and each device still completes its rounds"
    );
}

#[tokio::test]
async fn the_simulator_binary_prints_its_summary() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let token = enrollment_token(&app, &tenant.admin, json!({"max_uses": 3})).await;
    let (server, token) = (app.address.clone(), token["token"].as_str().unwrap().to_owned());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gmp-device-sim"))
            .args(["--server", &server, "--enrollment-token", &token])
            .args(["--devices", "3", "--rounds", "1", "--kind", "vault", "--no-state"])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (summary["registered"].as_u64(), summary["reports"].as_u64()),
        (Some(3), Some(3))
    );
}

#[tokio::test]
async fn a_second_run_reuses_the_saved_credentials_instead_of_registering() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let token = enrollment_token(&app, &tenant.admin, json!({"max_uses": 2})).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("sim.json");
    let first = run(SimOptions {
        rounds: 1,
        state_file: Some(state.clone()),
        ..options(&app, token["token"].as_str().unwrap(), 2)
    })
    .await
    .unwrap();
    assert_eq!((first.registered, first.errors), (2, 0), "{first:?}");

    // The token's two uses are spent: only saved credentials can pull now.
    let second = run(SimOptions {
        enrollment_token: None,
        rounds: 1,
        state_file: Some(state),
        ..options(&app, "", 2)
    })
    .await
    .unwrap();
    assert_eq!(second.errors, 0, "{second:?}");
    assert_eq!((second.registered, second.reused_credentials), (0, 2));
    assert_eq!(second.pulls_200, 2, "the same devices pull their config");
    let devices = app.get_json("/api/v1/devices", &tenant.admin.access).await;
    assert_eq!(devices["items"].as_array().unwrap().len(), 2, "no new devices");
}

#[tokio::test]
async fn a_wait_longer_than_the_bound_stops_the_device_with_an_error_saying_so() {
    let app = TestApp::spawn().await;
    // The default pull interval (4 hours): pulling again at once is refused for minutes.
    let tenant = app.create_tenant("Acme").await;
    let token = enrollment_token(&app, &tenant.admin, json!({"max_uses": 1})).await;
    let started = std::time::Instant::now();
    let summary = run(SimOptions {
        interval: Some(Duration::from_millis(10)),
        max_wait: Duration::from_secs(2),
        ..options(&app, token["token"].as_str().unwrap(), 1)
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it did not wait it out"
    );
    assert_eq!(summary.pulls_429, 1, "{summary:?}");
    assert_eq!(summary.errors, 1, "{summary:?}");
    assert_eq!(
        summary.error_kinds.keys().collect::<Vec<_>>(),
        ["wait: longer than --max-wait-s (Retry-After)"]
    );
}

#[tokio::test]
async fn the_simulator_binary_prints_each_error_and_counts_it_by_kind() {
    let app = TestApp::spawn().await;
    let server = app.address.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gmp-device-sim"))
            .args(["--server", &server, "--enrollment-token", "gmp_et_wrong"])
            .args(["--devices", "2", "--rounds", "1", "--no-state"])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(!output.status.success(), "errors fail the run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for device in ["SIM-00000", "SIM-00001"] {
        assert!(
            stderr.contains(&format!(
                "gmp-device-sim: {device}: register: the server answered 401"
            )),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("devices 0/2 ready"),
        "a final progress line: {stderr}"
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["errors"], 2);
    assert_eq!(
        summary["error_kinds"],
        json!({"register: 401 invalid_enrollment_token": 2})
    );
}
