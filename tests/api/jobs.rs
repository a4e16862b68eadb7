//! The scheduled jobs, called directly, and the lease that keeps them to one replica.

use crate::devices::{enrollment_tokens_for, fast_tenant, inherited_report, pull, register, report};
use crate::helpers::{TestApp, stored_device};
use chrono::{Duration, Utc};
use gmp::clock::Clock;
use gmp::db::repo::device_checkins::record_checkins;
use gmp::jobs::{self, Outcome};
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

async fn sql(app: &TestApp, statement: &str) {
    app.state.db.execute_unprepared(statement).await.unwrap();
}

pub async fn actions(app: &TestApp, token: &str, device: &str) -> Vec<String> {
    let log: Value = app
        .get(&format!("/api/v1/audit/changes?target_id={device}"), token)
        .await
        .json()
        .await
        .unwrap();
    log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn connectivity_transitions_are_logged_once() {
    let clock = Clock::manual(Utc::now());
    let app = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let tenant = fast_tenant(&app, "Acme").await;
    let device = register(&app, &tenant.admin, "HW-CONN", "appliance").await;
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::OK);
    let token = &tenant.admin.access;

    assert_eq!(
        jobs::connectivity_job(&app.state, Utc::now()).await.unwrap(),
        Outcome { changed: 0 }
    );
    // Past its next pull plus the hour of grace: stale, logged once however often the job runs.
    let later = Utc::now() + Duration::hours(2);
    assert_eq!(
        jobs::connectivity_job(&app.state, later).await.unwrap().changed,
        1
    );
    assert_eq!(
        jobs::connectivity_job(&app.state, later).await.unwrap().changed,
        0
    );
    assert_eq!(actions(&app, token, &device.id).await[0], "device.stale");
    // A day without a pull: offline.
    let much_later = Utc::now() + Duration::hours(30);
    assert_eq!(
        jobs::connectivity_job(&app.state, much_later)
            .await
            .unwrap()
            .changed,
        1
    );
    assert_eq!(
        jobs::connectivity_job(&app.state, much_later)
            .await
            .unwrap()
            .changed,
        0
    );
    let view: Value = app
        .get(&format!("/api/v1/devices/{}", device.id), token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        view["connectivity"], "online",
        "the view reads the clock, the job records transitions"
    );

    // The next pull brings it back online, logged once.
    clock.advance(Duration::hours(31));
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::OK);
    clock.advance(Duration::minutes(1));
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::OK);
    let log = actions(&app, token, &device.id).await;
    assert_eq!(log[..3], ["device.online", "device.offline", "device.stale"]);
    assert_eq!(log.iter().filter(|a| *a == "device.online").count(), 1);
}

#[tokio::test]
async fn retention_deletes_only_old_rows_in_batches() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let (root, etag) = crate::policies::root_policy(&app, &tenant.admin).await;
    crate::policies::save_ok(
        &app,
        &tenant.admin,
        &root,
        &etag,
        crate::policies::seed_settings(),
    )
    .await;
    let device = register(&app, &tenant.admin, "HW-RET", "appliance").await;
    pull(&app, &device, None).await;
    let count = |table: &'static str| {
        let app = &app;
        async move {
            let row = app
                .state
                .db
                .query_one_raw(sea_orm::Statement::from_string(
                    app.state.db.get_database_backend(),
                    format!("SELECT COUNT(*) AS n FROM {table}"),
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<i64>("", "n").unwrap()
        }
    };
    let (history, log) = (count("device_field_history").await, count("audit_changes").await);
    assert!(history > 3 && log > 3);
    // Age every row but the newest of each table past the 400 days.
    sql(&app, "UPDATE device_field_history SET recorded_at = '2020-01-01T00:00:00+00:00' WHERE id <> (SELECT id FROM device_field_history ORDER BY id DESC LIMIT 1)").await;
    sql(&app, "UPDATE audit_changes SET created_at = '2020-01-01T00:00:00+00:00' WHERE id <> (SELECT id FROM audit_changes ORDER BY id DESC LIMIT 1)").await;
    let outcome = jobs::retention_job(&app.state, Utc::now(), 2).await.unwrap();
    assert_eq!(outcome.changed as i64, history - 1 + log - 1);
    assert_eq!(
        (count("device_field_history").await, count("audit_changes").await),
        (1, 1)
    );
    assert_eq!(
        jobs::retention_job(&app.state, Utc::now(), 2)
            .await
            .unwrap()
            .changed,
        0
    );
}

#[tokio::test]
async fn expired_tokens_are_deleted() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    enrollment_tokens_for(&app, &tenant.admin, 2).await;
    sql(
        &app,
        "UPDATE refresh_tokens SET expires_at = '2020-01-01T00:00:00+00:00'",
    )
    .await;
    sql(
        &app,
        "UPDATE enrollment_tokens SET expires_at = '2020-01-01T00:00:00+00:00'",
    )
    .await;
    let outcome = jobs::expiry_job(&app.state, Utc::now()).await.unwrap();
    assert!(
        outcome.changed >= 4,
        "{outcome:?}: the platform admin's and the tenant admin's sessions, two tokens"
    );
    let listed: Value = app
        .get("/api/v1/enrollment-tokens", &tenant.admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"], serde_json::json!([]));
}

#[tokio::test]
async fn racing_runners_run_a_tick_once() {
    let app = TestApp::spawn().await;
    let runs = Arc::new(AtomicU32::new(0));
    let lease = std::time::Duration::from_secs(30);
    let attempt = |holder: &'static str| {
        let (state, runs) = (app.state.clone(), runs.clone());
        async move {
            jobs::run_with_lease(&state, "race", holder, 7, lease, || async {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Ok(Outcome::default())
            })
            .await
            .unwrap()
        }
    };
    let results = futures_util::future::join_all(["a", "b", "c", "d"].map(attempt)).await;
    assert_eq!(results.iter().filter(|r| r.is_some()).count(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Finished and released: still nobody reruns tick 7, and tick 8 runs once.
    assert!(attempt("e").await.is_none());
    let next = jobs::run_with_lease(&app.state, "race", "f", 8, lease, || async {
        Ok(Outcome::default())
    })
    .await
    .unwrap();
    assert!(next.is_some());
}

#[tokio::test]
async fn a_dead_holders_lease_is_taken_over_after_it_expires() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    // Holder "dead" takes tick 1 and never finishes (a crashed replica).
    assert!(gmp_lease_acquire(&app, "dead", 1, now, now + Duration::seconds(2)).await);
    assert!(
        !gmp_lease_acquire(&app, "alive", 2, now, now + Duration::seconds(30)).await,
        "the lease is still live"
    );
    let after_expiry = now + Duration::seconds(3);
    assert!(
        gmp_lease_acquire(
            &app,
            "alive",
            2,
            after_expiry,
            after_expiry + Duration::seconds(30)
        )
        .await
    );
}

async fn gmp_lease_acquire(
    app: &TestApp,
    holder: &str,
    tick: i64,
    now: chrono::DateTime<Utc>,
    until: chrono::DateTime<Utc>,
) -> bool {
    gmp::db::repo::job_leases::acquire(&app.state.db, "takeover", holder, tick, now, until)
        .await
        .unwrap()
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let clock = Clock::manual(Utc::now());
    let app = TestApp::spawn_with_clock(clock.clone(), |config| {
        config.metrics_bind = Some("127.0.0.1:0".into())
    })
    .await;
    let tenant = app.create_tenant("Acme").await;
    let device = register(&app, &tenant.admin, "HW-MET", "vault").await;
    let first = pull(&app, &device, None).await;
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        pull(&app, &device, Some(&etag)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    clock.advance(Duration::hours(4));
    assert_eq!(
        pull(&app, &device, Some(&etag)).await.status(),
        StatusCode::NOT_MODIFIED
    );
    let stranger = crate::devices::TestDevice {
        id: String::new(),
        credential: "gmp_dc_unknown".into(),
    };
    assert_eq!(
        pull(&app, &stranger, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    jobs::run_with_lease(
        &app.state,
        "connectivity",
        "me",
        1,
        std::time::Duration::from_secs(30),
        || jobs::connectivity_job(&app.state, Utc::now()),
    )
    .await
    .unwrap();

    let metrics = app.metrics_address.as_ref().expect("a metrics listener");
    let text = app
        .client
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "gmp_device_pulls_total{outcome=\"200\"} 1",
        "gmp_device_pulls_total{outcome=\"304\"} 1",
        "gmp_device_pulls_total{outcome=\"401\"} 1",
        "gmp_device_pulls_total{outcome=\"429\"} 1",
        "gmp_devices{status=\"online\"} 1",
        "gmp_job_runs_total{job=\"connectivity\",outcome=\"success\"} 1",
        "gmp_http_requests_total{route=\"/device/v1/register\",method=\"POST\",status=\"201\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    assert!(
        text.contains("gmp_http_request_duration_seconds_bucket{route=\"/device/v1/config\",le=\"+Inf\"} 4")
    );
    assert!(text.contains("gmp_db_pool_connections{state=\"max\"} 5"));
    assert!(!text.contains(&device.id), "raw paths never become labels");
}

#[tokio::test]
async fn check_ins_are_buffered_and_flushed_in_batches() {
    let app = TestApp::spawn_with(|config| config.checkin_flush_interval_ms = 60_000).await;
    let tenant = app.create_tenant("Acme").await;
    let device = register(&app, &tenant.admin, "HW-BUF", "vault").await;
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::OK);
    let stored = |app: &TestApp| {
        let db = app.state.db.clone();
        async move {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    "SELECT (SELECT last_seen_at FROM device_checkins) AS last_seen_at".to_owned(),
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<Option<chrono::DateTime<Utc>>>("", "last_seen_at")
                .unwrap()
        }
    };
    assert_eq!(
        stored(&app).await,
        None,
        "the pull wrote nothing just to record the check-in"
    );
    // Yet the server knows: a second pull is still rate limited, and the device shows online.
    assert_eq!(
        pull(&app, &device, None).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let view: Value = app
        .get(&format!("/api/v1/devices/{}", device.id), &tenant.admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["connectivity"], "online");
    assert_eq!(gmp::services::checkins::flush(&app.state).await.unwrap(), 1);
    assert!(stored(&app).await.is_some());
    // Written, and no longer pending: the device's entry in the directory still carries the
    // pull, so the next one is still rate limited.
    assert_eq!(
        pull(&app, &device, None).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(gmp::services::checkins::flush(&app.state).await.unwrap(), 0);
}

/// A report between a pull and the flush of its check-in: the report's `last_seen_at` is
/// later than the pull's, yet the pull's `last_pull_at` and `next_pull_after` must still land.
/// (When both lived in the device row, the flush skipped a device seen later, so its stored
/// `next_pull_after` stayed the one before and the connectivity job would call it stale.)
#[tokio::test]
async fn a_report_before_the_flush_keeps_the_pulls_times() {
    // Whole seconds: both engines store the times exactly.
    let clock = Clock::manual(chrono::SubsecRound::trunc_subsecs(Utc::now(), 0));
    let app = TestApp::spawn_with_clock(clock.clone(), |config| {
        config.checkin_flush_interval_ms = 60_000;
    })
    .await;
    let tenant = app.create_tenant("Acme").await;
    let device = register(&app, &tenant.admin, "HW-REP", "vault").await;
    let pulled_at = clock.now();
    let pulled = pull(&app, &device, None).await;
    assert_eq!(pulled.status(), StatusCode::OK);
    let config: Value = pulled.json().await.unwrap();
    let next: chrono::DateTime<Utc> = config["next_pull_after"].as_str().unwrap().parse().unwrap();
    clock.advance(Duration::seconds(1));
    let receipt = report(&app, &device, &inherited_report(&config)).await;
    assert_eq!(receipt.status(), StatusCode::OK);
    assert_eq!(gmp::services::checkins::flush(&app.state).await.unwrap(), 1);

    let stored = stored_device(&app.state.db, &device.credential).await.unwrap();
    assert_eq!(
        (stored.last_pull_at, stored.next_pull_after, stored.last_seen_at),
        (Some(pulled_at), Some(next), Some(clock.now()))
    );
}

/// The check-in batch is one statement per chunk; a batch from a slower replica that carries an
/// older check-in never moves a device's times back.
#[tokio::test]
async fn batched_check_ins_never_move_a_device_back_in_time() {
    use gmp::db::repo::devices as device_repo;
    use gmp::domain::{DeviceId, TenantId};
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let first = register(&app, &tenant.admin, "HW-CI-1", "vault").await;
    let second = register(&app, &tenant.admin, "HW-CI-2", "vault").await;
    let tenant_id = TenantId(tenant.id.parse().unwrap());
    let [a, b] = [&first, &second].map(|d| DeviceId(d.id.parse().unwrap()));
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let later = now + Duration::minutes(5);
    let next = now + Duration::hours(4);
    record_checkins(
        &app.state.db,
        &[(tenant_id, a, later, next), (tenant_id, b, now, next)],
    )
    .await
    .unwrap();
    // An older check-in of `a` lands after the newer one; `b` moves forward.
    record_checkins(
        &app.state.db,
        &[(tenant_id, a, now, next), (tenant_id, b, later, next)],
    )
    .await
    .unwrap();
    let db = &app.state.db;
    let seen = |id| async move {
        device_repo::get(db, tenant_id, id)
            .await
            .unwrap()
            .unwrap()
            .last_seen_at
    };
    assert_eq!(seen(a).await, Some(later));
    assert_eq!(seen(b).await, Some(later));
    // Another tenant's id never matches.
    let other = TenantId(uuid::Uuid::new_v4());
    record_checkins(&app.state.db, &[(other, a, later + Duration::hours(1), next)])
        .await
        .unwrap();
    assert_eq!(seen(a).await, Some(later));
}

/// The connectivity job asks the database for the transitions and the counts: they follow the
/// rule of `domain::device::connectivity` for devices in every state, a device already
/// recorded stale is not logged again, and a check-in still buffered counts (the job writes it
/// first).
#[tokio::test]
async fn the_connectivity_job_counts_and_marks_devices_in_every_state() {
    use gmp::bench::seed::{self, SeedOptions};
    use gmp::db::repo::devices;
    use gmp::domain::device::Connectivity;
    let app = TestApp::spawn_with(|config| config.checkin_flush_interval_ms = 600_000).await;
    let fleet = SeedOptions {
        steady: 0,
        new: 6,
        policies: 1,
        pull_interval_seconds: 3600,
        own_values_every: 0,
    };
    let seeded = seed::seed(&app.state, &fleet).await.unwrap();
    let tenant = seeded.tenant;
    let mut stored = Vec::new();
    for device in &seeded.devices {
        stored.push(stored_device(&app.state.db, &device.credential).await.unwrap());
    }
    let ids: Vec<_> = stored.iter().map(|d| d.id).collect();
    let now = Utc::now();
    let thresholds = app.state.config.thresholds();
    let recent = now - thresholds.grace - Duration::minutes(10);
    let overdue = now - thresholds.grace - Duration::minutes(5);
    let long_ago = now - thresholds.offline_after - Duration::hours(1);
    // 0: never seen (new); 1: online; 2: stale; 3: offline; 4: stale and already recorded so;
    // 5: stale by its stored times, but a check-in in the buffer brings it back.
    let times = [
        (ids[1], now, now + Duration::hours(1)),
        (ids[2], recent, overdue),
        (ids[3], long_ago, long_ago + Duration::hours(1)),
        (ids[4], recent, overdue),
        (ids[5], recent, overdue),
    ];
    let rows: Vec<_> = times
        .iter()
        .map(|&(id, seen, next)| (tenant, id, seen, next))
        .collect();
    record_checkins(&app.state.db, &rows).await.unwrap();
    let txn = gmp::db::begin_write(&app.state.db).await.unwrap();
    devices::set_connectivity(&txn, &stored[4], Connectivity::Stale)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    gmp::services::checkins::record(&app.state, tenant, ids[5], now, now + Duration::hours(1))
        .await
        .unwrap();
    assert!(app.state.checkins.pending(ids[5]).is_some(), "buffered");

    let outcome = jobs::connectivity_job(&app.state, now).await.unwrap();
    assert_eq!(outcome.changed, 2, "device 2 went stale, device 3 offline");
    let recorded = |i: usize| {
        let credential = seeded.devices[i].credential.clone();
        let db = app.state.db.clone();
        async move {
            stored_device(&db, &credential)
                .await
                .unwrap()
                .recorded_connectivity
        }
    };
    assert_eq!(recorded(2).await, Connectivity::Stale);
    assert_eq!(recorded(3).await, Connectivity::Offline);
    assert_eq!(recorded(5).await, Connectivity::New, "not marked: it pulled");
    let text = app.state.metrics.render(None, true);
    for (state, expected) in [("new", 1), ("online", 2), ("stale", 2), ("offline", 1)] {
        let line = format!(
            "gmp_devices{{tenant=\"{}\",status=\"{state}\"}} {expected}",
            tenant.0
        );
        assert!(text.contains(&line), "missing `{line}` in\n{text}");
    }
    assert_eq!(
        jobs::connectivity_job(&app.state, now).await.unwrap().changed,
        0,
        "each transition is logged once"
    );
}

/// A run that outlasts its job's interval keeps its lease: the next tick, on the same replica,
/// is skipped rather than started beside it (a run over every device at 1,000,000 devices
/// once took longer than the interval, and the runs piled up); the tick after it ends runs.
#[tokio::test]
async fn a_run_longer_than_its_interval_is_not_overlapped() {
    let app = TestApp::spawn().await;
    let lease = std::time::Duration::from_secs(30);
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let (finish, finished) = tokio::sync::oneshot::channel::<()>();
    let long = {
        let state = app.state.clone();
        tokio::spawn(async move {
            jobs::run_with_lease(&state, "long", "me", 1, lease, || async move {
                started.send(()).unwrap();
                finished.await.unwrap();
                Ok(Outcome { changed: 1 })
            })
            .await
            .unwrap()
        })
    };
    running.await.unwrap();
    let runs = AtomicU32::new(0);
    let count = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok(Outcome::default())
    };
    let overlapping = jobs::run_with_lease(&app.state, "long", "me", 2, lease, count)
        .await
        .unwrap();
    assert!(overlapping.is_none(), "skipped while the first run goes on");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    finish.send(()).unwrap();
    assert_eq!(long.await.unwrap(), Some(Outcome { changed: 1 }));
    let next = jobs::run_with_lease(&app.state, "long", "me", 3, lease, count)
        .await
        .unwrap();
    assert!(next.is_some());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
