//! The database pool: every connection open from the start, and a connection the database
//! dropped costs one request a `503`, not a `500`, before the pool replaces it.

use crate::helpers::{TestApp, assert_problem};
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
