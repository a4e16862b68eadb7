use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, TestApp, assert_problem, session_from};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gmp::auth::{Claims, JwtKeys};
use gmp::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn sign_in_then_me_shows_operator_and_tenant() {
    let app = TestApp::spawn().await;
    let response = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["refresh_token"].as_str().unwrap().starts_with("gmp_rt_"));
    assert!(body["operator"].get("password_hash").is_none());

    let me: Value = app
        .get("/api/v1/me", body["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["operator"]["email"], ADMIN_EMAIL);
    assert_eq!(me["operator"]["role"], "admin");
    assert_eq!(me["operator"]["platform_admin"], true);
    assert_eq!(me["tenant"]["name"], "Platform");
    assert_eq!(me["tenant"]["id"], me["operator"]["tenant_id"]);
}

#[tokio::test]
async fn email_is_case_insensitive_on_sign_in() {
    let app = TestApp::spawn().await;
    let response = app.login(&ADMIN_EMAIL.to_uppercase(), ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = TestApp::spawn().await;
    let wrong_password = assert_problem(
        app.login(ADMIN_EMAIL, "not the password").await,
        401,
        "invalid_credentials",
    )
    .await;
    let unknown = assert_problem(
        app.login("nobody@example.com", ADMIN_PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    let malformed = assert_problem(
        app.login("not-an-email", ADMIN_PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(wrong_password["detail"], unknown["detail"]);
    assert_eq!(unknown["detail"], malformed["detail"]);
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token() {
    let app = TestApp::spawn().await;
    let first = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let response = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": first.refresh}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let second = session_from(&response.json().await.unwrap());
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    assert_eq!(
        app.get("/api/v1/me", &second.access).await.status(),
        StatusCode::OK
    );

    // The new refresh token works in turn.
    let response = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": second.refresh}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn reusing_a_refresh_token_revokes_the_whole_family() {
    let app = TestApp::spawn().await;
    let stolen = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let other_login = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let response = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": stolen.refresh}),
        )
        .await;
    let rotated = session_from(&response.json().await.unwrap());

    // The old token is presented again: reuse.
    let reuse = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": stolen.refresh}),
        )
        .await;
    let body = assert_problem(reuse, 401, "invalid_refresh_token").await;
    assert!(body["detail"].as_str().unwrap().contains("already used"));

    // The legitimate descendant is revoked with it…
    let descendant = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": rotated.refresh}),
        )
        .await;
    assert_problem(descendant, 401, "invalid_refresh_token").await;
    // …but a separate sign-in is a separate family and keeps working.
    let separate = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": other_login.refresh}),
        )
        .await;
    assert_eq!(separate.status(), StatusCode::OK);
}

#[tokio::test]
async fn concurrent_use_of_one_refresh_token_lets_at_most_one_through() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let body = json!({"refresh_token": session.refresh});
    let (a, b) = tokio::join!(
        app.post("/api/v1/auth/refresh", None, &body),
        app.post("/api/v1/auth/refresh", None, &body)
    );
    let successes = [a.status(), b.status()]
        .iter()
        .filter(|s| **s == StatusCode::OK)
        .count();
    assert_eq!(successes, 1, "exactly one of two simultaneous uses succeeds");
}

#[tokio::test]
async fn logout_revokes_the_refresh_token_and_is_idempotent() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let body = json!({"refresh_token": session.refresh});
    assert_eq!(
        app.post("/api/v1/auth/logout", None, &body).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.post("/api/v1/auth/logout", None, &body).await.status(),
        StatusCode::NO_CONTENT
    );
    let unknown = json!({"refresh_token": "gmp_rt_unknown"});
    assert_eq!(
        app.post("/api/v1/auth/logout", None, &unknown).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.post("/api/v1/auth/refresh", None, &body).await,
        401,
        "invalid_refresh_token",
    )
    .await;
}

#[tokio::test]
async fn expired_refresh_tokens_are_refused() {
    let app = TestApp::spawn_with(|config| config.refresh_token_ttl_seconds = 1).await;
    let session = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let response = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": session.refresh}),
        )
        .await;
    let body = assert_problem(response, 401, "invalid_refresh_token").await;
    assert!(body["detail"].as_str().unwrap().contains("expired"));
}

async fn assert_token_rejected(app: &TestApp, token: &str) {
    let response = app.get("/api/v1/me", token).await;
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_problem(response, 401, "invalid_token").await;
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer realm="gmp", error="invalid_token""#)
    );
}

fn claims_of(app: &TestApp, token: &str) -> Claims {
    app.state.jwt.verify(token).unwrap()
}

#[tokio::test]
async fn bad_access_tokens_are_rejected_with_401_and_a_challenge() {
    let app = TestApp::spawn().await;
    let good = app.platform.access.clone();
    let claims = claims_of(&app, &good);

    let mut expired = claims.clone();
    expired.iat -= 3600;
    expired.exp = expired.iat + 60;
    assert_token_rejected(&app, &app.state.jwt.sign(&expired).unwrap()).await;

    let mut wrong_audience = claims.clone();
    wrong_audience.aud = "another-service".into();
    assert_token_rejected(&app, &app.state.jwt.sign(&wrong_audience).unwrap()).await;

    let mut wrong_issuer = claims.clone();
    wrong_issuer.iss = "someone-else".into();
    assert_token_rejected(&app, &app.state.jwt.sign(&wrong_issuer).unwrap()).await;

    let foreign_key = JwtKeys::new(b"another-secret-of-at-least-32-bytes!!", Duration::from_secs(900));
    assert_token_rejected(&app, &foreign_key.sign(&claims).unwrap()).await;

    // Same signature, payload changed to claim another role.
    let parts: Vec<&str> = good.split('.').collect();
    let mut escalated = claims.clone();
    escalated.role = Role::Admin;
    escalated.tid = uuid::Uuid::new_v4();
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&escalated).unwrap());
    assert_token_rejected(&app, &format!("{}.{}.{}", parts[0], forged_payload, parts[2])).await;

    // alg: none, with and without a signature part.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    assert_token_rejected(&app, &format!("{none_header}.{}.", parts[1])).await;
    assert_token_rejected(&app, &format!("{none_header}.{}", parts[1])).await;
    // HS512 with the right key is still not the pinned algorithm.
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(crate::helpers::test_jwt_secret().as_bytes()),
    )
    .unwrap();
    assert_token_rejected(&app, &hs512).await;
    assert_token_rejected(&app, "garbage").await;

    // The genuine token still works.
    assert_eq!(app.get("/api/v1/me", &good).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_or_malformed_authorization_is_401_with_a_challenge() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap(),
        r#"Bearer realm="gmp""#
    );
    assert_problem(response, 401, "unauthenticated").await;
    let basic = app
        .client
        .get(app.url("/api/v1/me"))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    assert_problem(basic, 401, "unauthenticated").await;
}

#[tokio::test]
async fn changing_the_password_ends_sessions_and_needs_the_current_one() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let wrong = app
        .post(
            "/api/v1/me/password",
            Some(&admin.access),
            &json!({"current_password": "not it at all", "new_password": "a brand new passphrase"}),
        )
        .await;
    let body = assert_problem(wrong, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "current_password");

    let short = app
        .post(
            "/api/v1/me/password",
            Some(&admin.access),
            &json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    let body = assert_problem(short, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "new_password");

    let changed = app
        .post(
            "/api/v1/me/password",
            Some(&admin.access),
            &json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let refresh = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": admin.refresh}),
        )
        .await;
    assert_problem(refresh, 401, "invalid_refresh_token").await;
    assert_problem(
        app.login(&admin.email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        app.login(&admin.email, "a brand new passphrase").await.status(),
        StatusCode::OK
    );
}
