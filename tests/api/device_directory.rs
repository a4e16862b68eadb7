//! Pulls answered from memory (the device directory): a steady-state pull reads no device row,
//! and every change an operator makes reaches the device's next pull at once.

use crate::devices::{TestDevice, pull, register};
use crate::helpers::{TestApp, etag_of};
use crate::policies::{root_policy, save_ok};
use chrono::{Duration, Utc};
use gmp::clock::Clock;
use gmp::services::served_audit;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The tenant's default pull interval; pulls a whole interval apart are never too often.
const INTERVAL: i64 = 14_400;

/// `(hits, misses)` of the device credential lookups so far.
fn lookups(app: &TestApp) -> (u64, u64) {
    let text = app.state.metrics.render(None, false);
    let count = |result: &str| {
        let prefix = format!("gmp_device_lookups_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in the metrics"))
    };
    (count("hit"), count("miss"))
}

/// Waits until the app hears changes (its listener started), so the directory keeps devices.
async fn until_tracking(app: &TestApp) {
    let started = std::time::Instant::now();
    while !app.state.directory.tracking() {
        assert!(
            started.elapsed().as_secs() < 10,
            "the directory never started listening"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A device pulled once, with the served audit written (which changes its row), and pulled
/// again: from here on it is in memory. Returns its current ETag.
async fn steady(app: &TestApp, clock: &Clock, device: &TestDevice) -> String {
    let first = pull(app, device, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    served_audit::flush(&app.state).await.unwrap();
    clock.advance(Duration::seconds(INTERVAL));
    let etag = etag_of(&first);
    assert_eq!(
        pull(app, device, Some(&etag)).await.status(),
        StatusCode::NOT_MODIFIED
    );
    etag
}

async fn pull_json(app: &TestApp, clock: &Clock, device: &TestDevice) -> Value {
    clock.advance(Duration::seconds(INTERVAL));
    let response = pull(app, device, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_steady_pull_reads_no_device_row() {
    let clock = Clock::manual(Utc::now());
    let app = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    until_tracking(&app).await;
    let tenant = app.create_tenant("Acme").await;
    let device = register(&app, &tenant.admin, "HW-STEADY", "appliance").await;
    let etag = steady(&app, &clock, &device).await;

    let (hits, misses) = lookups(&app);
    for _ in 0..5 {
        clock.advance(Duration::seconds(INTERVAL));
        assert_eq!(
            pull(&app, &device, Some(&etag)).await.status(),
            StatusCode::NOT_MODIFIED
        );
    }
    assert_eq!(lookups(&app), (hits + 5, misses), "five pulls, all from memory");
    let (devices, bytes) = app.state.directory.usage();
    assert_eq!(devices, 1);
    assert!(bytes > 0 && bytes < 2048, "one device costs {bytes} bytes");
}

#[tokio::test]
async fn every_change_reaches_the_next_pull_at_once() {
    let clock = Clock::manual(Utc::now());
    let app = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    until_tracking(&app).await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let device = register(&app, admin, "HW-CHANGES", "appliance").await;
    steady(&app, &clock, &device).await;

    // A device value of its own.
    let url = format!("/api/v1/devices/{}", device.id);
    let etag = etag_of(&app.get(&url, &admin.access).await);
    let board = json!({"id": 7, "name": "Vault board"});
    let saved = app
        .patch(
            &format!("{url}?validate=false"),
            &admin.access,
            Some(&etag),
            &json!({"set": {"ticketing.events.failed_backup.service_board": board}}),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    let config = pull_json(&app, &clock, &device).await;
    assert_eq!(
        config["settings"]["ticketing.events.failed_backup.service_board"],
        board
    );

    // A policy save (the tenant's revision).
    let (root, policy_etag) = root_policy(&app, admin).await;
    save_ok(
        &app,
        admin,
        &root,
        &policy_etag,
        json!({"set": {"ticketing.events.pool_status.enabled": false}}),
    )
    .await;
    let config = pull_json(&app, &clock, &device).await;
    assert_eq!(config["settings"]["ticketing.events.pool_status.enabled"], false);

    // The tenant's pull interval.
    let interval = app
        .patch(
            "/api/v1/device-settings",
            &admin.access,
            Some("*"),
            &json!({"pull_interval_seconds": 7200}),
        )
        .await;
    assert_eq!(interval.status(), StatusCode::OK);
    let config = pull_json(&app, &clock, &device).await;
    assert_eq!(config["pull_interval_seconds"], 7200);

    // A rotated credential: the old one is refused, the new one works.
    let rotated: Value = app
        .post(
            &format!("{url}/rotate-credential"),
            Some(&admin.access),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    clock.advance(Duration::seconds(INTERVAL));
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::UNAUTHORIZED);
    let device = TestDevice {
        id: device.id.clone(),
        credential: rotated["credential"].as_str().unwrap().to_owned(),
    };
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::OK);

    // Decommissioned: refused at once, although it was in memory.
    clock.advance(Duration::seconds(INTERVAL));
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::OK);
    let gone = app
        .post(&format!("{url}/decommission"), Some(&admin.access), &json!({}))
        .await;
    assert_eq!(gone.status(), StatusCode::OK);
    clock.advance(Duration::seconds(INTERVAL));
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::UNAUTHORIZED);
}
