//! Export and import of policies.

use crate::helpers::{TestApp, assert_problem, etag_of};
use crate::policies::{SECRET, root_policy, save_ok, seed_settings};
use gmp::secrets::PassphraseBox;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSPHRASE: &str = "a long export passphrase";

fn values_of(resolved: &Value) -> Value {
    let fields = resolved["fields"].as_object().unwrap();
    Value::Object(
        fields
            .iter()
            .map(|(k, f)| (k.clone(), json!({"value": f["value"], "locked": f["locked"]})))
            .collect(),
    )
}

async fn resolved(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(&format!("/api/v1/policies/{id}/resolved"), token)
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn export_then_import_into_another_tenant_gives_the_same_resolved_values() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("Acme").await;
    let (acme_root, etag) = root_policy(&app, &acme.admin).await;
    let mut settings = seed_settings();
    settings["lock"] = json!(["connectwise.site", "connectwise.private_key"]);
    save_ok(&app, &acme.admin, &acme_root, &etag, settings).await;

    // Without a passphrase: no secrets at all.
    let plain: Value = app
        .get(
            &format!("/api/v1/policies/{acme_root}/export"),
            &acme.admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(plain["format"], "gmp-policy");
    assert_eq!(plain["format_version"], 1);
    assert!(plain.get("secrets").is_none());
    assert!(plain["values"].get("connectwise.private_key").is_none());
    assert!(!plain.to_string().contains(SECRET));

    // With a passphrase: secrets encrypted under it.
    let response = app
        .post(
            &format!("/api/v1/policies/{acme_root}/export"),
            Some(&acme.admin.access),
            &json!({"passphrase": PASSPHRASE}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let document: Value = response.json().await.unwrap();
    assert!(!document.to_string().contains(SECRET));
    let sealed: PassphraseBox = serde_json::from_value(document["secrets"].clone()).unwrap();
    let opened: Value = serde_json::from_slice(&sealed.open(PASSPHRASE).unwrap()).unwrap();
    assert_eq!(opened["connectwise.private_key"], SECRET);

    let globex = app.create_tenant("Globex").await;
    let (globex_root, etag) = root_policy(&app, &globex.admin).await;
    let import = app
        .post_with_if_match(
            &format!("/api/v1/policies/{globex_root}/import"),
            &globex.admin.access,
            &etag,
            &json!({"document": document, "passphrase": PASSPHRASE}),
        )
        .await;
    assert_eq!(import.status(), StatusCode::OK);
    assert_eq!(etag_of(&import), "\"2\"");
    let outcome: Value = import.json().await.unwrap();
    assert_eq!(outcome["dry_run"], false);
    assert!(outcome["changes"].as_array().unwrap().len() > 10);
    assert!(!outcome.to_string().contains(SECRET));

    let acme_view = resolved(&app, &acme.admin.access, &acme_root).await;
    let globex_view = resolved(&app, &globex.admin.access, &globex_root).await;
    let mask_times = |v: Value| v.to_string().replace(|c: char| c.is_ascii_digit(), "#");
    assert_eq!(
        mask_times(values_of(&acme_view)),
        mask_times(values_of(&globex_view))
    );

    // The secret made it across: Globex's own export opens to the same plaintext.
    let again: Value = app
        .post(
            &format!("/api/v1/policies/{globex_root}/export"),
            Some(&globex.admin.access),
            &json!({"passphrase": PASSPHRASE}),
        )
        .await
        .json()
        .await
        .unwrap();
    let sealed: PassphraseBox = serde_json::from_value(again["secrets"].clone()).unwrap();
    let opened: Value = serde_json::from_slice(&sealed.open(PASSPHRASE).unwrap()).unwrap();
    assert_eq!(opened["connectwise.private_key"], SECRET);
}

#[tokio::test]
async fn a_dry_run_returns_the_diff_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (id, etag) = root_policy(&app, admin).await;
    let (_, etag) = save_ok(&app, admin, &id, &etag, seed_settings()).await;
    let mut document: Value = app
        .get(&format!("/api/v1/policies/{id}/export"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    document["values"]["ticketing.events.failed_backup.service_board"] =
        json!({"id": 77, "name": "Imported"});
    document["locks"] = json!(["connectwise.company_id"]);
    let audit_before: Value = app
        .get("/api/v1/audit/changes", &admin.access)
        .await
        .json()
        .await
        .unwrap();

    let response = app
        .post(
            &format!("/api/v1/policies/{id}/import?dry_run=true"),
            Some(&admin.access),
            &json!({"document": document}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(outcome["dry_run"], true);
    assert!(outcome.get("policy").is_none());
    let fields: Vec<&str> = outcome["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "locks.connectwise.company_id",
            "values.ticketing.events.failed_backup.service_board"
        ]
    );

    let current = app.get(&format!("/api/v1/policies/{id}"), &admin.access).await;
    assert_eq!(etag_of(&current), etag);
    let audit_after: Value = app
        .get("/api/v1/audit/changes", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        audit_before["items"], audit_after["items"],
        "a dry run writes no audit entry"
    );
    // A secret that is not in the document is kept.
    let body: Value = current.json().await.unwrap();
    assert_eq!(body["values"]["connectwise.private_key"]["set"], true);
}

#[tokio::test]
async fn bad_documents_and_wrong_passphrases_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (id, etag) = root_policy(&app, admin).await;
    let (_, etag) = save_ok(&app, admin, &id, &etag, seed_settings()).await;
    let document: Value = app
        .post(
            &format!("/api/v1/policies/{id}/export"),
            Some(&admin.access),
            &json!({"passphrase": PASSPHRASE}),
        )
        .await
        .json()
        .await
        .unwrap();
    let import = |body: Value| {
        let app = &app;
        let etag = etag.clone();
        let id = id.clone();
        async move {
            app.post_with_if_match(
                &format!("/api/v1/policies/{id}/import"),
                &admin.access,
                &etag,
                &body,
            )
            .await
        }
    };

    let wrong = import(json!({"document": document, "passphrase": "not the passphrase"})).await;
    let problem = assert_problem(wrong, 422, "validation_failed").await;
    assert_eq!(
        (
            problem["errors"][0]["field"].as_str(),
            problem["errors"][0]["code"].as_str()
        ),
        (Some("passphrase"), Some("wrong_passphrase"))
    );
    let missing = import(json!({"document": document})).await;
    assert_eq!(
        assert_problem(missing, 422, "validation_failed").await["errors"][0]["code"],
        "required"
    );

    let mut cases = Vec::new();
    let mut doc = document.clone();
    doc["format_version"] = json!(2);
    cases.push((doc, "document.format_version", "unsupported_format_version"));
    let mut doc = document.clone();
    doc["format"] = json!("something-else");
    cases.push((doc, "document.format", "unsupported_format"));
    let mut doc = document.clone();
    doc.as_object_mut().unwrap().remove("values");
    cases.push((doc, "document", "invalid_document"));
    let mut doc = document.clone();
    doc["surprise"] = json!(1);
    cases.push((doc, "document.surprise", "invalid_document"));
    let mut doc = document.clone();
    doc["values"]["connectwise.site"] = json!("ftp://nope");
    cases.push((doc, "document.values.connectwise.site", "invalid_site"));
    let mut doc = document.clone();
    doc["values"]["connectwise.private_key"] = json!("in clear");
    cases.push((doc, "document.values.connectwise.private_key", "secret_in_clear"));
    let mut doc = document.clone();
    doc["locks"] = json!(["billing.company"]);
    cases.push((doc, "document.locks[0]", "device_scoped_setting"));
    let mut doc = document.clone();
    doc["secrets"]["ciphertext"] = json!("AAAA");
    cases.push((doc, "passphrase", "wrong_passphrase"));
    for (doc, field, code) in cases {
        let problem = assert_problem(
            import(json!({"document": doc, "passphrase": PASSPHRASE})).await,
            422,
            "validation_failed",
        )
        .await;
        let found = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"].as_str().unwrap().starts_with(field) && e["code"] == code);
        assert!(found, "expected {field}/{code}: {problem}");
    }
    let not_json = app
        .client
        .post(app.url(&format!("/api/v1/policies/{id}/import")))
        .bearer_auth(&admin.access)
        .header("if-match", &etag)
        .header("content-type", "application/json")
        .body("{\"document\": {")
        .send()
        .await
        .unwrap();
    assert_problem(not_json, 400, "malformed_json").await;
    let current = app.get(&format!("/api/v1/policies/{id}"), &admin.access).await;
    assert_eq!(etag_of(&current), etag, "nothing changed");

    let short = app
        .post(
            &format!("/api/v1/policies/{id}/export"),
            Some(&admin.access),
            &json!({"passphrase": "short"}),
        )
        .await;
    assert_eq!(
        assert_problem(short, 422, "validation_failed").await["errors"][0]["field"],
        "passphrase"
    );
}

#[tokio::test]
async fn importing_a_value_locked_above_is_a_conflict() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = root_policy(&app, admin).await;
    save_ok(&app, admin, &root, &etag, json!({"set": {"ticketing.events.disk_usage.enabled": false}, "lock": ["ticketing.events.disk_usage.enabled"]})).await;
    let child: Value = app
        .post(
            "/api/v1/policies",
            Some(&admin.access),
            &json!({"name": "Client"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let child_id = child["id"].as_str().unwrap();
    let document = json!({
        "format": "gmp-policy", "format_version": 1,
        "policy": {"name": "Elsewhere", "description": "", "version": 1, "saved_at": "2026-01-01T00:00:00Z"},
        "values": {"ticketing.events.disk_usage.enabled": true}, "locks": []
    });
    let dry = app
        .post(
            &format!("/api/v1/policies/{child_id}/import?dry_run=true"),
            Some(&admin.access),
            &json!({"document": document}),
        )
        .await;
    assert_eq!(
        assert_problem(dry, 409, "conflict").await["errors"][0]["field"],
        "document.values.ticketing.events.disk_usage.enabled"
    );
    let real = app
        .post_with_if_match(
            &format!("/api/v1/policies/{child_id}/import"),
            &admin.access,
            "\"1\"",
            &json!({"document": document}),
        )
        .await;
    assert_problem(real, 409, "conflict").await;
    let no_if_match = app
        .post(
            &format!("/api/v1/policies/{child_id}/import"),
            Some(&admin.access),
            &json!({"document": document}),
        )
        .await;
    assert_problem(no_if_match, 428, "precondition_required").await;
}
