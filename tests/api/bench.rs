//! The benchmark tooling (`gmp-bench`) works: a small fleet seeded through the service layer,
//! the load generator against the real server and the baseline, and onboarding through the API.

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, stored_device};
use gmp::bench::baseline::{self, Baseline};
use gmp::bench::impact;
use gmp::bench::load::{self, DevicePool, LoadOptions, Scenario};
use gmp::bench::onboard::{self, OnboardOptions};
use gmp::bench::scale;
use gmp::bench::seed::{self, SeedOptions};
use gmp::bench::{Group, of_group};
use std::sync::Arc;
use std::time::Duration;

fn options(base_url: &str, seconds: f64) -> LoadOptions {
    LoadOptions {
        base_url: base_url.to_owned(),
        connections: 4,
        duration: Duration::from_secs_f64(seconds),
        rate: None,
        server_pid: Some(std::process::id()),
        database_cpu: false,
    }
}

#[tokio::test]
async fn a_seeded_fleet_pulls_304_and_200_and_its_herd_pulls_once() {
    let app = TestApp::spawn().await;
    let fleet = SeedOptions {
        steady: 40,
        new: 10,
        policies: 2,
        pull_interval_seconds: 60,
        own_values_every: 0,
    };
    let seeded = seed::seed(&app.state, &fleet).await.unwrap();
    assert_eq!(seeded.devices.len(), 50);
    let steady = of_group(&seeded.devices, Group::Steady);
    let new = of_group(&seeded.devices, Group::New);
    assert_eq!((steady.len(), new.len()), (40, 10));

    // Stored as registration stores it: only the credential's SHA-256, and a steady device
    // already served the ETag the load generator will send.
    let stored = stored_device(&app.state.db, &steady[0].credential)
        .await
        .expect("the seeded credential authenticates");
    assert_eq!(stored.served_hash.as_deref(), Some(steady[0].etag.as_str()));
    let fresh = stored_device(&app.state.db, &new[0].credential).await.unwrap();
    assert_eq!(fresh.served_hash, None);
    assert_ne!(steady[0].etag, steady[1].etag, "two child policies, two configs");

    // Halves, so no device pulls twice within the server's 3 s floor (interval / 16).
    let rest = Duration::from_secs(4);
    let (first, second) = steady.split_at(20);
    let pool = |devices: &[gmp::bench::BenchDevice]| Arc::new(DevicePool::cycling(devices.to_vec(), rest));
    let not_modified = load::run(Scenario::NotModified, pool(first), &options(&app.address, 1.0)).await;
    assert!(
        not_modified.statuses.get(&304).copied().unwrap_or(0) > 0,
        "{not_modified:?}"
    );
    assert_eq!(not_modified.statuses.len(), 1, "{not_modified:?}");
    assert!(
        not_modified.requests <= 20,
        "each device at most once: {not_modified:?}"
    );
    assert_eq!((not_modified.errors, not_modified.throttled), (0, 0));
    assert!(not_modified.server_cpu_us_per_request.is_some());
    assert!(not_modified.p99_ms >= not_modified.p50_ms);

    let full = load::run(Scenario::Full, pool(second), &options(&app.address, 1.0)).await;
    assert!(full.statuses.get(&200).copied().unwrap_or(0) > 0, "{full:?}");
    assert_eq!((full.errors, full.throttled), (0, 0), "{full:?}");
    assert!(full.body_bytes > 500, "a whole config: {full:?}");

    let herd = load::run(
        Scenario::Herd,
        Arc::new(DevicePool::once(new.clone())),
        &options(&app.address, 30.0),
    )
    .await;
    assert_eq!(herd.statuses.get(&200), Some(&10), "{herd:?}");
    assert_eq!(herd.errors, 0);

    // The baseline answers the same credentials the same way, with a body of the same size.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let server = baseline::server(
        listener,
        Baseline::new(&seeded.devices, full.body_bytes as usize),
        Some(1),
    )
    .unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    let cycling = |devices: Vec<_>| Arc::new(DevicePool::cycling(devices, Duration::ZERO));
    let floor_304 = load::run(
        Scenario::NotModified,
        cycling(steady.clone()),
        &options(&address, 0.3),
    )
    .await;
    assert!(floor_304.requests > 0);
    assert_eq!(
        floor_304.statuses.get(&304),
        Some(&floor_304.requests),
        "{floor_304:?}"
    );
    let floor_200 = load::run(Scenario::Full, cycling(steady), &options(&address, 0.3)).await;
    assert_eq!(floor_200.errors, 0, "{floor_200:?}");
    assert_eq!(floor_200.body_bytes, full.body_bytes);
    handle.stop(false).await;
}

#[tokio::test]
async fn onboarding_registers_and_first_pulls_through_the_api() {
    let app = TestApp::spawn().await;
    let report = onboard::run(&OnboardOptions {
        base_url: app.address.clone(),
        admin_email: ADMIN_EMAIL.to_owned(),
        admin_password: ADMIN_PASSWORD.to_owned(),
        devices: 12,
        clients: 4,
        time_limit: Duration::from_secs(60),
    })
    .await
    .unwrap();
    assert_eq!(report.onboarded, 12, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.register_statuses.get(&201), Some(&12));
    assert_eq!(report.pull_statuses.get(&200), Some(&12));
    assert!(report.devices_per_second > 0.0);
}

#[tokio::test]
async fn the_impact_scenario_previews_a_draft_over_a_seeded_fleet() {
    let app = TestApp::spawn().await;
    // 60 devices over 2 policies; every 5th has values of its own, every 10th overrides the
    // field the draft changes.
    let prepared = impact::prepare(&app.state, 60, 2, 5).await.unwrap();
    assert_eq!(
        prepared.groups,
        2 + 12,
        "two shared groups, one per device with values"
    );
    let measured = impact::measure(&app.address, &prepared, 3, 10).await.unwrap();
    assert_eq!(measured.devices_in_scope, 60);
    assert_eq!(measured.hidden_by_override, 6);
    assert_eq!(measured.devices_changing, 54);
    assert_eq!(measured.listed, 10);
    assert_eq!(measured.times_ms.len(), 3);
    assert!(measured.times_ms.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test]
async fn a_fixed_rate_sends_each_device_once_on_schedule() {
    let app = TestApp::spawn().await;
    let fleet = SeedOptions {
        steady: 30,
        new: 0,
        policies: 1,
        pull_interval_seconds: 60,
        own_values_every: 0,
    };
    let seeded = seed::seed(&app.state, &fleet).await.unwrap();
    // 100/s for 0.5 s would be 50 pulls; the 30 devices are used once each.
    let at_rate = LoadOptions {
        rate: Some(100.0),
        database_cpu: true,
        ..options(&app.address, 0.5)
    };
    let report = load::run(
        Scenario::NotModified,
        Arc::new(DevicePool::once(seeded.devices)),
        &at_rate,
    )
    .await;
    assert_eq!(report.statuses.get(&304), Some(&30), "{report:?}");
    assert_eq!((report.errors, report.target_rate), (0, Some(100.0)));
    // The schedule, not the answers, sets the pace: 30 pulls take at least 0.3 s.
    assert!(report.seconds >= 0.3, "{report:?}");
    assert!(report.requests_per_second <= 100.0, "{report:?}");
    assert!(report.max_ms >= report.p99_ms && report.p99_ms >= report.p50_ms);
    assert!(report.database_cpu_us_per_request.is_some());
}

#[tokio::test]
async fn the_scale_scenario_edits_the_root_and_finds_every_overrider() {
    let app = TestApp::spawn().await;
    // 25 devices, every 10th reports an override: devices 0, 10 and 20.
    let fleet = scale::seed_fleet(&app.state, 25, 2, 10, "scale-test")
        .await
        .unwrap();
    assert_eq!((fleet.devices, fleet.overriders, fleet.pulls.len()), (25, 3, 25));
    let client = load::http_client(1);
    let edits = scale::time_edits(&client, &app.address, &fleet, 3, None)
        .await
        .unwrap();
    assert_eq!((edits.devices, edits.timed.runs), (25, 3));
    assert!(edits.timed.max_ms >= edits.timed.p50_ms);
    assert_eq!(edits.rows_written_per_edit, None);
    let overrides = scale::time_overrides(&client, &app.address, &fleet, 2)
        .await
        .unwrap();
    assert_eq!(
        (overrides.listed, overrides.wrong, overrides.timed.runs),
        (3, 0, 2)
    );
}
