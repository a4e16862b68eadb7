//! The database pool: every connection open from the start, and a connection the database
//! dropped costs one request a `503`, not a `500`, before the pool replaces it. The directory's
//! misses read on a connection outside the pool, which a lost connection costs nothing.

use crate::devices::{TestDevice, fast_tenant, pull, register};
use crate::helpers::{TestApp, assert_problem, stored_device};
use sea_orm::{ConnectionTrait, Database, Statement};
use std::time::Duration;

/// The pool's size once it has opened what it keeps open.
fn pool_size(app: &TestApp) -> u32 {
    if app.db.is_postgres() {
        app.state.db.get_postgres_connection_pool().size()
    } else {
        app.state.db.get_sqlite_connection_pool().size()
    }
}

#[tokio::test]
async fn the_pool_opens_every_connection_and_recovers_from_lost_ones() {
    let app = TestApp::spawn().await;
    let max = app.state.config.database_max_connections;
    // The pool opens its connections in the background after start; wait for them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pool_size(&app) < max && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        pool_size(&app),
        max,
        "every connection is open before any request needs it"
    );

    let token = app.platform.access.clone();
    if app.db.is_postgres() {
        // Drop every connection the server holds, as a database restart or a proxy would.
        let admin = Database::connect(&app.db.url).await.unwrap();
        let killed = admin
            .query_one_raw(Statement::from_string(
                admin.get_database_backend(),
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        admin.close().await.ok();
        assert!(
            killed >= i64::from(max),
            "the server's connections were dropped ({killed})"
        );
        // Each dropped connection fails at most the one request that meets it, with a 503.
        let mut unavailable = 0;
        for _ in 0..=max {
            let response = app.get("/api/v1/tenants", &token).await;
            if response.status() == 200 {
                break;
            }
            assert!(response.headers().contains_key("retry-after"));
            assert_problem(response, 503, "service_unavailable").await;
            unavailable += 1;
        }
        assert!(
            unavailable >= 1,
            "a dropped connection was met (it is no longer pinged at checkout)"
        );
    }
    let response = app.get("/api/v1/tenants", &token).await;
    assert_eq!(response.status(), 200, "the pool serves again");
}

/// The backends of the test's database named as the directory's reads and whose last
/// statement read devices by credential: the directory's misses, which run on a connection of
/// their own.
async fn device_read_backends(admin: &sea_orm::DatabaseConnection) -> Vec<i32> {
    admin
        .query_all_raw(Statement::from_string(
            admin.get_database_backend(),
            format!(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = '{}' AND query LIKE '%credential_hash IN%'",
                gmp::services::device_reads::READER_NAME
            ),
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<i32>(0).unwrap())
        .collect()
}

#[tokio::test]
async fn directory_misses_read_on_a_connection_of_their_own_that_outlives_its_loss() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let first = register(&app, &tenant.admin, "HW-DED-1", "appliance").await;
    let second = register(&app, &tenant.admin, "HW-DED-2", "appliance").await;
    let third = register(&app, &tenant.admin, "HW-DED-3", "appliance").await;
    // A device's first pull misses the directory and reads it from the database.
    assert_eq!(pull(&app, &first, None).await.status(), 200);
    assert_eq!(pull(&app, &second, None).await.status(), 200);

    if app.db.is_postgres() {
        let admin = Database::connect(&app.db.url).await.unwrap();
        let readers = device_read_backends(&admin).await;
        assert_eq!(
            readers.len(),
            1,
            "both misses were read on one connection: {readers:?}"
        );
        // Drop that connection alone, as a proxy's idle timeout would.
        admin
            .execute_raw(Statement::from_string(
                admin.get_database_backend(),
                format!("SELECT pg_terminate_backend({})", readers[0]),
            ))
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while device_read_backends(&admin).await.contains(&readers[0]) {
            assert!(std::time::Instant::now() < deadline, "the backend ends");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The next miss meets the lost connection and is read again on a new one: no 503.
        assert_pulls_its_own_config(&app, &third).await;
        let now = device_read_backends(&admin).await;
        assert!(
            now.len() == 1 && now[0] != readers[0],
            "a new connection reads the misses: {now:?} after {readers:?}"
        );
        admin.close().await.ok();
    } else {
        assert_pulls_its_own_config(&app, &third).await;
    }
}

/// The device gets its own config.
async fn assert_pulls_its_own_config(app: &TestApp, device: &TestDevice) {
    let response = pull(app, device, None).await;
    assert_eq!(response.status(), 200);
    let config: serde_json::Value = response.json().await.unwrap();
    assert_eq!(config["device_id"], device.id.as_str());
}

#[tokio::test]
async fn a_connection_of_its_own_writes_and_reads_as_the_pool_does() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let device = register(&app, &tenant.admin, "HW-DED-W", "appliance").await;
    let conn = gmp::db::Dedicated::new(app.state.db.clone(), "gmp-test");
    let backend = conn.get_database_backend();

    // Several statements in one unprepared call, as the pool runs them.
    conn.execute_unprepared(
        "CREATE TABLE dedicated_scratch (n INTEGER NOT NULL); \
         INSERT INTO dedicated_scratch (n) VALUES (1), (2), (3)",
    )
    .await
    .unwrap();
    let sum = app
        .state
        .db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT CAST(SUM(n) AS BIGINT) FROM dedicated_scratch",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(sum, 6, "the pool sees what the connection wrote");

    // A prepared write with bound values: a device's check-in.
    let stored = stored_device(&app.state.db, &device.credential).await.unwrap();
    let seen = chrono::DateTime::parse_from_rfc3339("2031-05-06T07:08:09Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let next = seen + chrono::Duration::hours(4);
    gmp::db::repo::device_checkins::record_checkins(&conn, &[(stored.tenant_id, stored.id, seen, next)])
        .await
        .unwrap();
    let after = stored_device(&app.state.db, &device.credential).await.unwrap();
    assert_eq!(
        (after.last_seen_at, after.next_pull_after),
        (Some(seen), Some(next))
    );
    // And a read with bound values on the connection itself.
    let read = stored_device(&conn, &device.credential).await.unwrap();
    assert_eq!(read.last_seen_at, Some(seen));
}
