//! Several `gmp serve` processes on one database, as behind a load balancer: every replica
//! sees every change at once, conflicts are caught across replicas, counts stay exact; and a
//! replica stopped under load finishes what it was doing.

use crate::helpers::{SERVER_ADMIN, Server, TestDb, test_jwt_secret, test_master_key};
use crate::policies::seed_settings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const SHARED: [(&str, &str); 5] = [
    ("GMP_BOOTSTRAP_ADMIN_EMAIL", SERVER_ADMIN.0),
    ("GMP_BOOTSTRAP_ADMIN_PASSWORD", SERVER_ADMIN.1),
    ("GMP_CHECKIN_FLUSH_INTERVAL_MS", "200"),
    ("GMP_JOB_CONNECTIVITY_INTERVAL_SECONDS", "1"),
    ("GMP_METRICS_BIND", "127.0.0.1:0"),
];

fn start(db: &TestDb, extra: &[(&str, &str)]) -> Server {
    let mut env: Vec<(&str, &str)> = SHARED.to_vec();
    env.push(("GMP_JWT_SECRET", test_jwt_secret()));
    env.push(("GMP_MASTER_KEY", test_master_key()));
    env.push(("GMP_DATABASE_URL", &db.url));
    env.extend_from_slice(extra);
    Server::start(db, &env)
}

#[tokio::test]
async fn replicas_on_one_database_stay_consistent() {
    let db = TestDb::fresh().await;
    let first = start(&db, &[]);
    let replicas = [first, start(&db, &[]), start(&db, &[])];
    let session = replicas[0].sign_in().await;
    let client = &session.client;
    let token = session.token.as_str();
    let url = |i: usize, path: &str| replicas[i % 3].url(path);

    // Devices of this tenant may pull every 3 s.
    let settings = client
        .patch(url(1, "/api/v1/device-settings"))
        .bearer_auth(token)
        .header("if-match", "*");
    assert_eq!(
        settings
            .json(&json!({"pull_interval_seconds": 60}))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Concurrent registrations on all replicas never use a token more often than allowed.
    let created: Value = client
        .post(url(2, "/api/v1/enrollment-tokens"))
        .bearer_auth(token)
        .json(&json!({"max_uses": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let enrollment = created["token"].as_str().unwrap();
    let attempts = (0..9).map(|i| {
        client
            .post(url(i, "/device/v1/register"))
            .json(&json!({"enrollment_token": enrollment, "kind": "vault", "hardware_id": format!("REPLICA-{i}"), "hostname": "h", "software_version": "1"}))
            .send()
    });
    let results = futures_util::future::join_all(attempts).await;
    let mut credentials = Vec::new();
    for result in results {
        let response = result.unwrap();
        if response.status() == StatusCode::CREATED {
            credentials.push(
                response.json::<Value>().await.unwrap()["credential"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        } else {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
    }
    assert_eq!(credentials.len(), 4, "exactly max_uses registrations succeed");
    let read: Value = client
        .get(url(
            0,
            &format!("/api/v1/enrollment-tokens/{}", created["id"].as_str().unwrap()),
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["uses"], 4);

    // Replica 1 keeps the device in memory after its first pull there.
    let device = &credentials[0];
    let first = client
        .get(url(1, "/device/v1/config"))
        .bearer_auth(device)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);

    // A policy saved through replica 0 is served by replica 1 within the documented bound
    // (one second; the pull-rate limit makes the device wait longer anyway).
    let saved = client
        .patch(&session.policy_url)
        .bearer_auth(token)
        .header("if-match", "\"1\"")
        .json(&seed_settings())
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let pulled: Value = client
        .get(url(1, "/device/v1/config"))
        .bearer_auth(device)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pulled["settings"]["connectwise.site"], "na.myconnectwise.invalid");
    let policy_path = session
        .policy_url
        .split_once("/api/")
        .map(|(_, p)| format!("/api/{p}"))
        .unwrap();
    let moved = client
        .patch(url(2, &policy_path))
        .bearer_auth(token)
        .header("if-match", "\"2\"")
        .json(&json!({"set": {"connectwise.public_key": "RotatedKey9876"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let again: Value = client
        .get(url(1, "/device/v1/config"))
        .bearer_auth(device)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["settings"]["connectwise.public_key"], "RotatedKey9876");

    // A device decommissioned through replica 0 is refused by replica 1, which had it in
    // memory, within the bound.
    let other = &credentials[1];
    let pulled = client
        .get(url(1, "/device/v1/config"))
        .bearer_auth(other)
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), StatusCode::OK);
    let other_id = pulled.json::<Value>().await.unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let decommissioned = client
        .post(url(0, &format!("/api/v1/devices/{other_id}/decommission")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(
        decommissioned.status().is_success(),
        "{}",
        decommissioned.status()
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let refused = client
        .get(url(1, "/device/v1/config"))
        .bearer_auth(other)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // Two replicas saving from the same version: exactly one wins; no version repeats.
    let body = json!({"set": {"ticketing.events.pool_status.enabled": false}});
    let racing = [1, 2].map(|i| {
        client
            .patch(url(i, &policy_path))
            .bearer_auth(token)
            .header("if-match", "\"3\"")
            .json(&body)
            .send()
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(racing)
        .await
        .into_iter()
        .map(|r| r.unwrap().status())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::PRECONDITION_FAILED));
    let versions: Value = client
        .get(url(0, &format!("{policy_path}/versions")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let numbers: Vec<i64> = versions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4]);

    // The jobs run every second on whichever replica holds the lease: one run per tick.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut runs = 0;
    for replica in &replicas {
        let metrics = client
            .get(crate::edge::metrics_url(replica))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        runs += metrics
            .lines()
            .filter(|l| l.starts_with("gmp_job_runs_total{job=\"connectivity\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    assert!(runs >= 1, "the connectivity job ran somewhere");
    for replica in replicas {
        assert!(replica.terminate().success());
    }
}

#[tokio::test]
async fn sigterm_under_load_finishes_requests_and_writes_check_ins() {
    let db = TestDb::fresh().await;
    let server = start(&db, &[("GMP_CHECKIN_FLUSH_INTERVAL_MS", "600000")]);
    let session = server.sign_in().await;
    let client = session.client.clone();
    let created: Value = client
        .post(server.url("/api/v1/enrollment-tokens"))
        .bearer_auth(&session.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let registered: Value = client
        .post(server.url("/device/v1/register"))
        .json(&json!({"enrollment_token": created["token"], "kind": "vault", "hardware_id": "SIGTERM-1", "hostname": "h", "software_version": "1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let credential = registered["credential"].as_str().unwrap().to_owned();
    assert_eq!(
        client
            .get(server.url("/device/v1/config"))
            .bearer_auth(&credential)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Slow requests in flight (password hashing), then SIGTERM. Four accounts, four sign-ins
    // each: under the sign-in throttle's free tries per account and per address.
    let mut accounts = vec![SERVER_ADMIN.0.to_owned()];
    for i in 0..3 {
        let email = format!("sigterm-{i}@example.test");
        let created = client
            .post(server.url("/api/v1/operators"))
            .bearer_auth(&session.token)
            .json(&json!({"email": email, "role": "viewer", "password": SERVER_ADMIN.1}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        accounts.push(email);
    }
    let logins = (0..16).map(|i| {
        let request = client
            .post(server.url("/api/v1/auth/login"))
            .json(&json!({"email": accounts[i % 4], "password": SERVER_ADMIN.1}))
            .send();
        async move {
            let response = request.await;
            (response, std::time::Instant::now())
        }
    });
    let in_flight = tokio::spawn(futures_util::future::join_all(logins));
    // Long enough for the requests to be accepted, short of the time sixteen hashes take.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let output = server.output_handle();
    let signalled = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success());
    let finished = in_flight.await.unwrap();
    assert!(
        finished.iter().any(|(_, at)| *at > signalled),
        "some requests were still in flight at SIGTERM"
    );
    for (response, _) in finished {
        assert_eq!(response.expect("no request was cut off").status(), StatusCode::OK);
    }

    // The check-in only lived in memory (ten-minute flush); shutdown wrote it.
    let conn = sea_orm::Database::connect(db.url.clone()).await.unwrap();
    use sea_orm::ConnectionTrait;
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT (SELECT last_seen_at FROM device_checkins) AS last_seen_at".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    let seen: Option<chrono::DateTime<chrono::Utc>> = row.try_get("", "last_seen_at").unwrap();
    let log = output.lock().unwrap().join("\n");
    assert!(
        seen.is_some(),
        "check-ins were flushed on shutdown; the server said:\n{log}"
    );
}
