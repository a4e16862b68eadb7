//! Pulls answered from memory (the device directory): a steady-state pull reads no device row,
//! and every change an operator makes reaches the device's next pull at once.

use crate::devices::{TestDevice, pull, register};
use crate::helpers::{TestApp, etag_of, stored_device};
use crate::policies::{root_policy, save_ok};
use chrono::{Duration, Utc};
use gmp::auth::token;
use gmp::bench::BenchDevice;
use gmp::bench::seed::{self, SeedOptions};
use gmp::clock::Clock;
use gmp::domain::TenantId;
use gmp::services::device_reads;
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

/// Device read queries so far (`gmp_device_read_queries_total`).
fn read_queries(app: &TestApp) -> u64 {
    let text = app.state.metrics.render(None, false);
    text.lines()
        .find_map(|l| l.strip_prefix("gmp_device_read_queries_total "))
        .and_then(|n| n.parse().ok())
        .expect("gmp_device_read_queries_total in the metrics")
}

/// Two tenants' seeded fleets, each device in the steady state; all their devices.
async fn two_fleets(app: &TestApp, per_tenant: u64) -> Vec<(TenantId, BenchDevice)> {
    let fleet = SeedOptions {
        steady: per_tenant,
        new: 0,
        policies: 3,
        pull_interval_seconds: 3600,
        own_values_every: 0,
    };
    let mut devices = Vec::new();
    for _ in 0..2 {
        let seeded = seed::seed(&app.state, &fleet).await.unwrap();
        devices.extend(seeded.devices.into_iter().map(|d| (seeded.tenant, d)));
    }
    devices
}

#[tokio::test]
async fn misses_arriving_together_are_read_in_one_query_and_each_gets_its_own_device() {
    let app = TestApp::spawn().await;
    let devices = two_fleets(&app, 25).await;
    let mut digests: Vec<String> = devices
        .iter()
        .map(|(_, d)| token::digest(&d.credential))
        .collect();
    // The same device twice in one batch, and a credential nobody holds.
    digests.push(digests[0].clone());
    digests.push(token::digest("gmp_dc_nobody_holds_this"));

    let before = read_queries(&app);
    let found = futures_util::future::join_all(
        digests
            .iter()
            .map(|digest| device_reads::by_credential(&app.state, digest.clone())),
    )
    .await;
    let queries = read_queries(&app) - before;
    // The first miss is read at once, alone; the other 51 wait for it and go in one batch.
    assert!(queries <= 3, "52 misses took {queries} queries");

    for ((tenant, device), found) in devices.iter().zip(&found) {
        let found = found.as_ref().unwrap().as_ref().expect("a stored device");
        let stored = stored_device(&app.state.db, &device.credential).await.unwrap();
        assert_eq!((found.id, found.tenant_id), (stored.id, *tenant));
    }
    let twice = found[devices.len()]
        .as_ref()
        .unwrap()
        .as_ref()
        .expect("read twice");
    let first = found[0].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(twice.id, first.id);
    assert!(
        found[devices.len() + 1].as_ref().unwrap().is_none(),
        "unknown credential"
    );
}

#[tokio::test]
async fn concurrent_first_pulls_of_two_tenants_each_get_their_own_config() {
    let app = TestApp::spawn().await;
    let devices = two_fleets(&app, 40).await;
    let before = read_queries(&app);
    let pulls = devices.iter().map(|(_, device)| {
        app.client
            .get(app.url("/device/v1/config"))
            .bearer_auth(&device.credential)
            .header("if-none-match", &device.etag)
            .send()
    });
    let unknown = app
        .client
        .get(app.url("/device/v1/config"))
        .bearer_auth("gmp_dc_nobody_holds_this")
        .send();
    let (answers, unknown) = tokio::join!(futures_util::future::join_all(pulls), unknown);
    // Each device's own ETag (its tenant's, its policy's) matches only its own config.
    for answer in answers {
        assert_eq!(answer.unwrap().status(), StatusCode::NOT_MODIFIED);
    }
    assert_eq!(unknown.unwrap().status(), StatusCode::UNAUTHORIZED);
    // 81 misses at once: read together (3 or 4 queries here), not one query each.
    let queries = read_queries(&app) - before;
    assert!(
        (1..=20).contains(&queries),
        "81 misses took {queries} read queries"
    );
}
