use crate::helpers::{PASSWORD, TestApp, assert_problem, etag_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn platform_admin_creates_a_tenant_whose_admin_can_sign_in() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/api/v1/tenants",
            Some(&app.platform.access),
            &json!({"name": "  Acme MSP ", "admin": {"email": "Owner@Acme.test", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tenant"]["name"], "Acme MSP");
    assert_eq!(body["admin"]["role"], "admin");
    assert_eq!(body["admin"]["platform_admin"], false);
    assert_eq!(body["admin"]["tenant_id"], body["tenant"]["id"]);

    let session = app.sign_in("owner@acme.test", PASSWORD).await;
    assert_eq!(session.tenant_id, body["tenant"]["id"].as_str().unwrap());
    let list: Value = app
        .get("/api/v1/tenants", &app.platform.access)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Platform", "Acme MSP"]);
}

#[tokio::test]
async fn tenant_creation_is_all_or_nothing() {
    let app = TestApp::spawn().await;
    let existing = app.create_tenant("Acme").await;
    // The admin's email is taken: the tenant must not be created either.
    let response = app
        .post(
            "/api/v1/tenants",
            Some(&app.platform.access),
            &json!({"name": "Globex", "admin": {"email": existing.admin.email, "password": PASSWORD}}),
        )
        .await;
    assert_problem(response, 409, "conflict").await;
    let list: Value = app
        .get("/api/v1/tenants", &app.platform.access)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"] != "Globex")
    );

    let duplicate_name = app
        .post(
            "/api/v1/tenants",
            Some(&app.platform.access),
            &json!({"name": "Acme", "admin": {"email": "new@acme.test", "password": PASSWORD}}),
        )
        .await;
    assert_problem(duplicate_name, 409, "conflict").await;
    assert_problem(
        app.login("new@acme.test", PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn tenant_fields_are_validated_together() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/api/v1/tenants",
            Some(&app.platform.access),
            &json!({"name": "", "admin": {"email": "bad", "password": "short"}}),
        )
        .await;
    let body = assert_problem(response, 422, "validation_failed").await;
    let mut fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, vec!["admin.email", "admin.password", "name"]);
}

#[tokio::test]
async fn platform_admin_renames_a_tenant_with_if_match() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let path = format!("/api/v1/tenants/{}", tenant.id);
    let read = app.get(&path, &app.platform.access).await;
    let etag = etag_of(&read);
    let renamed = app
        .patch(
            &path,
            &app.platform.access,
            Some(&etag),
            &json!({"name": "Acme Managed"}),
        )
        .await;
    assert_eq!(renamed.status(), StatusCode::OK);
    let stale = app
        .patch(
            &path,
            &app.platform.access,
            Some(&etag),
            &json!({"name": "Lost update"}),
        )
        .await;
    assert_problem(stale, 412, "precondition_failed").await;
    let me: Value = app
        .get("/api/v1/me", &tenant.admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["tenant"]["name"], "Acme Managed");
    let missing = format!("/api/v1/tenants/{}", uuid::Uuid::now_v7());
    assert_problem(app.get(&missing, &app.platform.access).await, 404, "not_found").await;
}
