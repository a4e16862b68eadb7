//! The web UI's sessions live in the database: a browser signed in through one replica is
//! served by every other, signing out on one ends it on all, the database holds only a hash of
//! the cookie, a changed role or a deleted operator is seen at once, and sessions end after
//! their idle time and at their absolute expiry (by the injectable clock), after which the
//! expiry job deletes them.

use crate::helpers::{PASSWORD, TestApp, contains_bytes};
use crate::ui_client::{Browser, hidden, location};
use chrono::{Duration, Utc};
use gmp::auth::token;
use gmp::clock::Clock;
use gmp::jobs;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

/// The `id_hash` of every stored session.
async fn stored_hashes(app: &TestApp) -> Vec<String> {
    let db = &app.state.db;
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT id_hash FROM ui_sessions",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "id_hash").unwrap())
    .collect()
}

/// Whether the browser's session still opens a page (else it is sent to sign in).
async fn signed_in(browser: &Browser<'_>) -> bool {
    let response = browser.get("/dashboard").await;
    match response.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            assert_eq!(location(&response), "/login");
            false
        }
        other => panic!("GET /dashboard answered {other}"),
    }
}

#[tokio::test]
async fn a_session_works_on_every_replica_and_signing_out_on_one_ends_it_on_all() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let replica = app.start_replica().await;
    let here = Browser::sign_in(&app, &tenant.admin.email, PASSWORD).await;
    let there = here.on(&replica);

    let page = there.page("/dashboard").await;
    assert!(
        page.contains("Acme") && page.contains(&tenant.admin.email),
        "{page}"
    );
    let policies = there.get("/policies").await;
    assert!(
        location(&policies).starts_with("/policies/"),
        "signed in on the other replica"
    );

    // The database holds the SHA-256 of the session id, never the id.
    let id = here.cookie.strip_prefix("gmp_session=").unwrap();
    assert_eq!(stored_hashes(&app).await, [token::digest(id)]);
    assert!(
        !contains_bytes(&app.db.dump(), id),
        "the cookie value is not stored"
    );

    // Signing out on the other replica ends the session here too, at once.
    let csrf = hidden(&page, "csrf");
    let out = there.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(!signed_in(&here).await);
    assert!(!signed_in(&there).await);
    assert!(stored_hashes(&app).await.is_empty());
}

#[tokio::test]
async fn a_role_change_or_a_deletion_ends_the_session_at_once_on_every_replica() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let editor = app.create_operator(&tenant.admin, "editor").await;
    let replica = app.start_replica().await;
    let path = format!("/api/v1/operators/{}", editor.operator_id);
    let admin = &tenant.admin.access;

    // An API sign-out of the same operator leaves the browser signed in.
    let browser = Browser::sign_in(&app, &editor.email, PASSWORD).await;
    let there = browser.on(&replica);
    assert!(signed_in(&there).await);
    let logout = json!({"refresh_token": editor.refresh});
    let out = app.post("/api/v1/auth/logout", None, &logout).await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert!(signed_in(&there).await);

    // A role change through this replica ends it on the other without waiting.
    let demoted = app
        .patch(&path, admin, Some("*"), &json!({"role": "viewer"}))
        .await;
    assert_eq!(demoted.status(), StatusCode::OK);
    assert!(!signed_in(&there).await);

    // Signed in again (as a viewer now): deleting the operator ends it too.
    let browser = Browser::sign_in(&app, &editor.email, PASSWORD).await;
    let there = browser.on(&replica);
    let page = there.page("/dashboard").await;
    assert!(page.contains("viewer"), "the role of the new sign-in is shown");
    let deleted = app.delete(&path, admin, Some("*")).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(!signed_in(&there).await);
    assert!(!signed_in(&browser).await);
    assert!(stored_hashes(&app).await.is_empty());
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_their_absolute_expiry_and_the_expiry_job_deletes_them() {
    let clock = Clock::manual(Utc::now());
    let app = TestApp::spawn_with_clock(clock.clone(), |config| {
        config.refresh_token_ttl_seconds = 2 * 24 * 3600;
    })
    .await;
    let tenant = app.create_tenant("Acme").await;
    let email = &tenant.admin.email;

    // Used every 11 hours, a session lives on; 12 hours unused end it.
    let browser = Browser::sign_in(&app, email, PASSWORD).await;
    for _ in 0..2 {
        clock.advance(Duration::hours(11));
        assert!(signed_in(&browser).await);
    }
    clock.advance(Duration::hours(12) + Duration::minutes(1));
    assert!(!signed_in(&browser).await);
    assert!(
        stored_hashes(&app).await.is_empty(),
        "an ended session is deleted when seen"
    );

    // However often used, it ends at its absolute expiry (here the two-day refresh-token TTL).
    let browser = Browser::sign_in(&app, email, PASSWORD).await;
    for _ in 0..4 {
        clock.advance(Duration::hours(10));
        assert!(signed_in(&browser).await);
    }
    clock.advance(Duration::hours(10));
    assert!(!signed_in(&browser).await);

    // Sessions nobody comes back to are deleted by the expiry job once they ended.
    let _idle = Browser::sign_in(&app, email, PASSWORD).await;
    let kept = Browser::sign_in(&app, email, PASSWORD).await;
    clock.advance(Duration::hours(6));
    assert!(signed_in(&kept).await);
    clock.advance(Duration::hours(7));
    let ran = jobs::expiry_job(&app.state, clock.now()).await.unwrap();
    assert!(ran.changed >= 1);
    let id = kept.cookie.strip_prefix("gmp_session=").unwrap();
    assert_eq!(stored_hashes(&app).await, [token::digest(id)]);
    assert!(signed_in(&kept).await);
}
