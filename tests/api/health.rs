use crate::helpers::{TestApp, assert_problem};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn healthz_and_readyz_answer_while_the_database_is_up() {
    let app = TestApp::spawn().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn readyz_fails_when_the_database_is_gone_but_healthz_does_not() {
    let app = TestApp::spawn().await;
    app.state.db.clone().close().await.unwrap();
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(ready, 503, "service_unavailable").await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn swagger_ui_and_the_spec_are_served() {
    let app = TestApp::spawn().await;
    let redirect = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let bundle = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bundle.status(),
        StatusCode::OK,
        "Swagger UI assets are vendored into the binary"
    );
    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec, serde_json::to_value(gmp::http::spec()).unwrap());
}

#[tokio::test]
async fn readyz_fails_while_draining() {
    let app = TestApp::spawn().await;
    app.state
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    let problem = assert_problem(ready, 503, "service_unavailable").await;
    assert!(problem["detail"].as_str().unwrap().contains("shutting down"));
    assert_eq!(
        app.client.get(app.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
}
