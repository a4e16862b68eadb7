use crate::helpers::{ADMIN_EMAIL, TestApp, assert_problem};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    for body in [
        "{\"email\": ",
        "not json",
        "",
        "{\"email\": \"a\", \"password\": \"b\"} trailing",
    ] {
        let response = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400, "malformed_json").await;
    }
}

#[tokio::test]
async fn wrong_types_missing_and_unknown_fields_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"email": 5, "password": "x"}), "email", "invalid_type"),
        (json!({"email": "a@b.c"}), "password", "required"),
        (
            json!({"email": "a@b.c", "password": "x", "tenant_id": "00000000-0000-0000-0000-000000000000"}),
            "tenant_id",
            "unknown_field",
        ),
    ];
    for (body, field, code) in cases {
        let problem = assert_problem(
            app.post("/api/v1/auth/login", None, &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        assert_eq!(problem["errors"][0]["code"], code, "{problem}");
    }
    let nested = app
        .post(
            "/api/v1/tenants",
            Some(&app.platform.access),
            &json!({"name": "Acme", "admin": {"email": "a@b.c", "password": "long enough pass", "role": "admin"}}),
        )
        .await;
    let problem = assert_problem(nested, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "admin.role");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::spawn_with(|config| config.max_body_bytes = 1024).await;
    let huge = json!({"email": ADMIN_EMAIL, "password": "x".repeat(4096)});
    assert_problem(
        app.post("/api/v1/auth/login", None, &huge).await,
        413,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn non_json_bodies_are_415() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "text/plain")
        .body("email=a&password=b")
        .send()
        .await
        .unwrap();
    assert_problem(response, 415, "unsupported_media_type").await;
    let no_type = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(no_type, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn bad_path_parameters_and_unknown_routes_are_problems() {
    let app = TestApp::spawn().await;
    let token = &app.platform.access;
    assert_problem(
        app.get("/api/v1/operators/not-a-uuid", token).await,
        400,
        "invalid_path",
    )
    .await;
    assert_problem(
        app.get("/api/v1/nothing-here", token).await,
        404,
        "route_not_found",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_method_on_a_known_path_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let token = &app.platform.access;
    let put = |path: &'static str, token: Option<&str>| app.request(reqwest::Method::PUT, path, token).send();

    let wrong_method = put("/api/v1/me", Some(token)).await.unwrap();
    assert_eq!(wrong_method.headers()["allow"], "GET");
    assert_problem(wrong_method, 405, "method_not_allowed").await;

    // A path with parameters lists every method its routes take, before any authentication
    // and whatever the parameter's value.
    let wrong_method = put("/api/v1/policies/not-a-uuid", None).await.unwrap();
    assert_eq!(wrong_method.headers()["allow"], "GET, DELETE, PATCH");
    assert_problem(wrong_method, 405, "method_not_allowed").await;

    // A route spelled out in full wins over a parameter route its text also fits:
    // `PATCH /devices/settings:bulk` is not `PATCH /devices/{device_id}` with a bad id.
    let bulk = app
        .request(
            reqwest::Method::PATCH,
            "/api/v1/devices/settings:bulk",
            Some(token),
        )
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(bulk.headers()["allow"], "POST");
    assert_problem(bulk, 405, "method_not_allowed").await;
    // A bad id on a parameter route is still a 400.
    let bad_id = app
        .request(reqwest::Method::PATCH, "/api/v1/devices/not-a-uuid", Some(token))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(bad_id, 400, "invalid_path").await;

    // An unknown path stays a 404.
    let unknown = put("/api/v1/policies/x/nothing", Some(token)).await.unwrap();
    assert_problem(unknown, 404, "route_not_found").await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_and_quoted_in_errors() {
    let app = TestApp::spawn().await;
    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "lb-1234.abc")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "lb-1234.abc");

    let hostile = app
        .client
        .get(app.url("/api/v1/me"))
        .header("x-request-id", "bad id with spaces and \"quotes\"")
        .send()
        .await
        .unwrap();
    let generated = hostile.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let body = assert_problem(hostile, 401, "unauthenticated").await;
    assert_eq!(body["request_id"], generated);
}

#[tokio::test]
async fn internal_errors_are_500_without_internals() {
    let app = TestApp::spawn().await;
    let token = app.platform.access.clone();
    // Pull the database away from under the running server.
    app.state.db.clone().close().await.unwrap();
    let response = app.get("/api/v1/operators", &token).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = assert_problem(response, 500, "internal_error").await;
    let text = body.to_string().to_lowercase();
    for internal in ["sqlx", "pool", "sqlite", "postgres", "connection", "dberr"] {
        assert!(!text.contains(internal), "500 leaks `{internal}`: {text}");
    }
    assert_eq!(body["request_id"], request_id);
}
