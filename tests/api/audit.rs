//! The change log.

use crate::helpers::{TestApp, assert_problem};
use crate::policies::{SECRET, root_policy, save, save_ok, seed_settings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn entries(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let page: Value = app
        .get(&format!("/api/v1/audit/changes{query}"), token)
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_mutation_is_logged_with_its_actor_request_and_field_changes() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;

    // Tenant creation: the tenant, its root policy, its first admin — by the platform admin.
    let log = entries(&app, &admin.access, "").await;
    let actions: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["operator.created", "policy.created", "tenant.created"],
        "newest first"
    );
    assert!(log.iter().all(|e| e["actor"] == crate::helpers::ADMIN_EMAIL));
    let created = &log[0];
    assert!(
        created["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "password" && c["secret"] == true && c.get("after").is_none())
    );

    // A policy save: field-level before/after, secret only as changed, the request id.
    let (id, etag) = root_policy(&app, admin).await;
    let response = save(&app, admin, &id, &etag, seed_settings()).await;
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    save_ok(
        &app,
        admin,
        &id,
        &etag,
        json!({"set": {"connectwise.public_key": "RotatedKey9876"}}),
    )
    .await;

    let policy_log = entries(&app, &admin.access, &format!("?target_id={id}")).await;
    assert_eq!(policy_log.len(), 3, "created, and two saves");
    let second = &policy_log[0];
    assert_eq!(second["action"], "policy.updated");
    assert_eq!(second["actor"], admin.email);
    assert_eq!(second["actor_id"], admin.operator_id);
    assert_eq!(
        second["changes"],
        json!([{"field": "values.connectwise.public_key", "change": "changed", "before": "AbCdEf0123456789", "after": "RotatedKey9876"}])
    );
    let first = &policy_log[1];
    assert_eq!(first["request_id"], request_id);
    let secret_change = first["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "values.connectwise.private_key")
        .unwrap();
    assert_eq!(
        secret_change,
        &json!({"field": "values.connectwise.private_key", "change": "added", "secret": true})
    );
    let all = serde_json::to_string(&entries(&app, &admin.access, "?limit=200").await).unwrap();
    assert!(!all.contains(SECRET), "the secret never reaches the change log");

    // Operator changes.
    let editor = app.create_operator(admin, "editor").await;
    let path = format!("/api/v1/operators/{}", editor.operator_id);
    app.patch(&path, &admin.access, Some("*"), &json!({"role": "viewer"}))
        .await;
    let op_log = entries(&app, &admin.access, &format!("?target_id={}", editor.operator_id)).await;
    assert_eq!(op_log[0]["action"], "operator.updated");
    assert_eq!(
        op_log[0]["changes"],
        json!([{"field": "role", "change": "changed", "before": "editor", "after": "viewer"}])
    );
    assert_eq!(op_log[1]["action"], "operator.created");
}

#[tokio::test]
async fn the_log_filters_and_paginates() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let editor = app.create_operator(admin, "editor").await;
    let (id, mut etag) = root_policy(&app, &editor).await;
    for i in 0..5 {
        let (_, next) = save_ok(
            &app,
            &editor,
            &id,
            &etag,
            json!({"description": format!("revision {i}")}),
        )
        .await;
        etag = next;
    }
    let by_editor = entries(&app, &admin.access, &format!("?actor_id={}", editor.operator_id)).await;
    assert_eq!(by_editor.len(), 5);
    assert!(by_editor.iter().all(|e| e["action"] == "policy.updated"));
    assert_eq!(
        entries(&app, &admin.access, "?action=policy.updated").await.len(),
        5
    );
    assert_eq!(
        entries(&app, &admin.access, "?target_type=operator").await.len(),
        2
    );

    let middle = &by_editor[2]["created_at"].as_str().unwrap().to_owned();
    let since = entries(
        &app,
        &admin.access,
        &format!("?action=policy.updated&since={}", urlencode(middle)),
    )
    .await;
    let until = entries(
        &app,
        &admin.access,
        &format!("?action=policy.updated&until={}", urlencode(middle)),
    )
    .await;
    assert_eq!(since.len() + until.len(), 5);
    assert!(since.len() >= 3);

    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = app
            .get(&format!("/api/v1/audit/changes?limit=3{cursor}"), &admin.access)
            .await
            .json()
            .await
            .unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let total = entries(&app, &admin.access, "?limit=200").await.len();
    assert_eq!(seen.len(), total);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no repeats");
    assert_problem(
        app.get("/api/v1/audit/changes?since=yesterday", &admin.access)
            .await,
        400,
        "invalid_query",
    )
    .await;
}

fn urlencode(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn the_log_cannot_be_changed_or_deleted() {
    let app = TestApp::spawn().await;
    for method in [Method::PUT, Method::PATCH, Method::DELETE, Method::POST] {
        let response = app
            .request(
                method.clone(),
                "/api/v1/audit/changes",
                Some(&app.platform.access),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], "GET");
        assert_problem(response, 405, "method_not_allowed").await;
    }
    let spec = serde_json::to_value(gmp::http::spec()).unwrap();
    let methods: Vec<&String> = spec["paths"]["/api/v1/audit/changes"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(methods, ["get"]);
}

#[tokio::test]
async fn rollbacks_imports_deletes_and_renames_are_logged() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = root_policy(&app, admin).await;
    let (_, etag) = save_ok(&app, admin, &root, &etag, json!({"description": "first"})).await;
    let rollback = app
        .post_with_if_match(
            &format!("/api/v1/policies/{root}/rollback"),
            &admin.access,
            &etag,
            &json!({"version": 1}),
        )
        .await;
    assert_eq!(rollback.status(), StatusCode::OK);
    let etag = rollback.headers()["etag"].to_str().unwrap().to_owned();
    let mut document: Value = app
        .get(&format!("/api/v1/policies/{root}/export"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    // An import that changes nothing is not logged; this one changes a value.
    document["values"]["ticketing.events.disk_usage.enabled"] = json!(false);
    let import = app
        .post_with_if_match(
            &format!("/api/v1/policies/{root}/import"),
            &admin.access,
            &etag,
            &json!({"document": document}),
        )
        .await;
    assert_eq!(import.status(), StatusCode::OK);
    let child: Value = app
        .post("/api/v1/policies", Some(&admin.access), &json!({"name": "Temp"}))
        .await
        .json()
        .await
        .unwrap();
    let child_id = child["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/api/v1/policies/{child_id}"), &admin.access, Some("*"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let rename = app
        .patch(
            &format!("/api/v1/tenants/{}", tenant.id),
            &app.platform.access,
            Some("*"),
            &json!({"name": "Acme Renamed"}),
        )
        .await;
    assert_eq!(rename.status(), StatusCode::OK);

    let log = entries(&app, &admin.access, "?limit=200").await;
    let actions: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in [
        "policy.rolled_back",
        "policy.imported",
        "policy.deleted",
        "tenant.renamed",
    ] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
    let rolled = log.iter().find(|e| e["action"] == "policy.rolled_back").unwrap();
    assert_eq!(
        rolled["changes"],
        json!([{"field": "description", "change": "changed", "before": "first", "after": "Settings every device of the tenant inherits."}])
    );
    let renamed = log.iter().find(|e| e["action"] == "tenant.renamed").unwrap();
    assert_eq!(
        renamed["changes"],
        json!([{"field": "name", "change": "changed", "before": "Acme", "after": "Acme Renamed"}])
    );
    assert_eq!(renamed["actor"], crate::helpers::ADMIN_EMAIL);
}
