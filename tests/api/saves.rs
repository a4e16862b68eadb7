//! Saves that mean something and messages a person can act on (issue 12, parts 3 and 5):
//! no-op saves, the board-and-statuses rule, ConnectWise reference checks by default,
//! Test Connection's network reasons, imports as downloaded, clean query errors, "did you
//! mean", and tenant names on the command line.

use crate::connectwise_mock::MockConnectWise;
use crate::devices::register;
use crate::helpers::{
    PASSWORD, TenantFixture, TestApp, assert_problem, etag_of, gmp_command, test_jwt_secret, test_master_key,
};
use crate::policies::{SECRET, root_policy, save, save_ok};
use reqwest::StatusCode;
use serde_json::{Value, json};

const FB: &str = "ticketing.events.failed_backup";

async fn app_allowing_mock() -> TestApp {
    TestApp::spawn_with(|config| {
        config.connectwise_allow_http = true;
        config.connectwise_allowed_hosts = vec!["127.0.0.1".into()];
        config.connectwise_timeout_seconds = 2;
        config.connectwise_cache_seconds = 0;
    })
    .await
}

fn credentials_on(site: &str) -> Value {
    json!({
        "connectwise.site": site,
        "connectwise.company_id": "acme",
        "connectwise.public_key": "PubKey123",
        "connectwise.private_key": SECRET,
    })
}

/// The failed-backup class on `board` with these statuses.
fn tickets(board: i64, new: i64, closed: i64) -> Value {
    json!({
        format!("{FB}.enabled"): true,
        format!("{FB}.service_board"): {"id": board, "name": format!("Board {board}")},
        format!("{FB}.new_status"): {"id": new, "name": "New"},
        format!("{FB}.closed_status"): {"id": closed, "name": "Closed"},
    })
}

fn merged(a: Value, b: Value) -> Value {
    let mut a = a;
    a.as_object_mut().unwrap().extend(b.as_object().unwrap().clone());
    a
}

fn codes(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn changes_of(app: &TestApp, token: &str, target: &str) -> Vec<Value> {
    let log: Value = app
        .get(&format!("/api/v1/audit/changes?target_id={target}"), token)
        .await
        .json()
        .await
        .unwrap();
    log["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_save_that_changes_nothing_makes_no_version_and_no_log_entry() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = root_policy(&app, admin).await;
    let body = json!({"set": {"ticketing.events.disk_usage.enabled": false}, "lock": ["connectwise.site"]});

    let (saved, etag) = save_ok(&app, admin, &root, &etag, body.clone()).await;
    assert_eq!(
        (saved["changed"].as_bool(), saved["version"].as_i64()),
        (Some(true), Some(2))
    );
    let (again, same_etag) = save_ok(&app, admin, &root, &etag, body).await;
    assert_eq!(
        (again["changed"].as_bool(), again["version"].as_i64()),
        (Some(false), Some(2))
    );
    assert_eq!(same_etag, etag);
    let (renamed_to_itself, _) = save_ok(&app, admin, &root, &etag, json!({"name": "Default"})).await;
    assert_eq!(renamed_to_itself["changed"], false);

    let versions: Value = app
        .get(&format!("/api/v1/policies/{root}/versions"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);
    let log = changes_of(&app, &admin.access, &root).await;
    let actions: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["policy.updated", "policy.created"]);

    // Rolling back to the content the policy has is no change either; to version 1 it is.
    let rollback = |version: i64, etag: String| {
        let app = &app;
        let root = root.clone();
        async move {
            app.post_with_if_match(
                &format!("/api/v1/policies/{root}/rollback"),
                &admin.access,
                &etag,
                &json!({"version": version}),
            )
            .await
        }
    };
    let same: Value = rollback(2, etag.clone()).await.json().await.unwrap();
    assert_eq!(
        (same["changed"].as_bool(), same["version"].as_i64()),
        (Some(false), Some(2))
    );
    let back: Value = rollback(1, etag).await.json().await.unwrap();
    assert_eq!(
        (back["changed"].as_bool(), back["version"].as_i64()),
        (Some(true), Some(3))
    );

    // A device PATCH that changes nothing keeps the device's version.
    let device = register(&app, admin, "HW-NOOP", "appliance").await;
    let url = format!("/api/v1/devices/{}", device.id);
    let etag = etag_of(&app.get(&url, &admin.access).await);
    let company = json!({"set": {"ticketing.service_ticket_company": {"id": 1, "name": "Company 1"}}});
    let first = app.patch(&url, &admin.access, Some(&etag), &company).await;
    assert_eq!(first.status(), StatusCode::OK);
    let etag = etag_of(&first);
    let second = app.patch(&url, &admin.access, Some(&etag), &company).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(etag_of(&second), etag, "no new device version");
    let updates = changes_of(&app, &admin.access, &device.id)
        .await
        .into_iter()
        .filter(|e| e["action"] == "device.updated")
        .count();
    assert_eq!(updates, 1);
}

#[tokio::test]
async fn a_policy_that_sets_a_board_sets_its_statuses_with_it() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = root_policy(&app, admin).await;
    let (_, etag) = save_ok(&app, admin, &root, &etag, json!({"set": tickets(1, 10, 19)})).await;

    // A child that sets only the board would inherit the root's statuses, of another board.
    let only_board =
        json!({"name": "Client A", "set": {format!("{FB}.service_board"): {"id": 2, "name": "Escalations"}}});
    let problem = assert_problem(
        app.post("/api/v1/policies", Some(&admin.access), &only_board)
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(
        codes(&problem),
        [
            (format!("set.{FB}.new_status"), "status_without_board".to_owned()),
            (
                format!("set.{FB}.closed_status"),
                "status_without_board".to_owned()
            ),
        ]
    );
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("“New”") && message.contains("“Default”"),
        "{message}"
    );

    let with_one = json!({"name": "Client A", "set": {
        format!("{FB}.service_board"): {"id": 2, "name": "Escalations"},
        format!("{FB}.new_status"): {"id": 20, "name": "New"},
    }});
    let problem = assert_problem(
        app.post("/api/v1/policies", Some(&admin.access), &with_one).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(
        codes(&problem),
        [(
            format!("set.{FB}.closed_status"),
            "status_without_board".to_owned()
        )]
    );
    let complete = json!({"name": "Client A", "set": tickets(2, 20, 29)});
    let created = app.post("/api/v1/policies", Some(&admin.access), &complete).await;
    assert_eq!(created.status(), StatusCode::CREATED);

    // Unsetting a status of a board the policy sets breaks the rule too.
    let created: Value = created.json().await.unwrap();
    let child = created["id"].as_str().unwrap();
    let problem = assert_problem(
        save(
            &app,
            admin,
            child,
            "\"1\"",
            json!({"unset": [format!("{FB}.closed_status")]}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(
        codes(&problem),
        [(
            format!("set.{FB}.closed_status"),
            "status_without_board".to_owned()
        )]
    );
    assert_eq!(etag, "\"2\"");
}

#[tokio::test]
async fn a_child_that_sets_only_the_api_key_while_inheriting_the_secret_is_refused() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = root_policy(&app, admin).await;
    save_ok(
        &app,
        admin,
        &root,
        &etag,
        json!({"set": credentials_on("cw.gmp-test.invalid")}),
    )
    .await;
    let child = json!({"name": "Client A", "set": {"connectwise.public_key": "OtherKey456"}});
    let problem = assert_problem(
        app.post("/api/v1/policies", Some(&admin.access), &child).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(
        codes(&problem),
        [(
            "connectwise.public_key".to_owned(),
            "credentials_split".to_owned()
        )]
    );
}

#[tokio::test]
async fn policy_references_are_checked_by_default_on_save_rollback_and_import() {
    let mock = MockConnectWise::start().await;
    let app = app_allowing_mock().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = root_policy(&app, admin).await;
    let good = merged(credentials_on(&mock.site), tickets(1, 10, 19));
    let (saved, etag) = save_ok(&app, admin, &root, &etag, json!({"set": good})).await;
    assert!(saved.get("warnings").is_none(), "{saved}");
    assert!(!mock.api_requests().is_empty(), "checked against ConnectWise");

    // Board 1 has no status 20 and 11 is open: refused without any query parameter.
    let bad = json!({"set": {
        format!("{FB}.new_status"): {"id": 20, "name": "New (Escalations)"},
        format!("{FB}.closed_status"): {"id": 11, "name": "In Progress"},
    }});
    let problem = assert_problem(
        save(&app, admin, &root, &etag, bad.clone()).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(
        codes(&problem),
        [
            (format!("{FB}.new_status"), "status_not_on_board".to_owned()),
            (format!("{FB}.closed_status"), "not_a_closed_status".to_owned()),
        ]
    );
    // `?validate=false` skips the check; the old `?validate=connectwise` is the default.
    let unchecked = format!("{root}?validate=false");
    let (_, etag) = save_ok(&app, admin, &unchecked, &etag, bad).await;
    assert_eq!(etag, "\"3\"");

    // Rolling back to the bad version is checked too.
    let rollback = |version: i64, etag: String| {
        let app = &app;
        let root = root.clone();
        async move {
            app.post_with_if_match(
                &format!("/api/v1/policies/{root}/rollback"),
                &admin.access,
                &etag,
                &json!({"version": version}),
            )
            .await
        }
    };
    let back: Value = rollback(2, etag).await.json().await.unwrap();
    assert_eq!(back["version"], 4);
    assert_problem(rollback(3, "\"4\"".into()).await, 422, "validation_failed").await;

    // So is an import whose document names a status the board lacks.
    let mut document: Value = app
        .get(&format!("/api/v1/policies/{root}/export"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    document["values"][format!("{FB}.new_status")] = json!({"id": 30, "name": "New (Old Desk)"});
    let imported = app
        .post_with_if_match(
            &format!("/api/v1/policies/{root}/import"),
            &admin.access,
            "\"4\"",
            &json!({"document": document}),
        )
        .await;
    let problem = assert_problem(imported, 422, "validation_failed").await;
    assert_eq!(
        codes(&problem),
        [(format!("{FB}.new_status"), "status_not_on_board".to_owned())]
    );

    // ConnectWise down: the save goes through with a warning, in the answer and the log.
    mock.set(|b| b.status = 503);
    let (saved, _) = save_ok(
        &app,
        admin,
        &root,
        "\"4\"",
        json!({"set": {format!("{FB}.closed_status"): {"id": 19, "name": "Closed (done)"}}}),
    )
    .await;
    assert_eq!(saved["version"], 5);
    let warning = saved["warnings"][0].as_str().unwrap();
    assert!(warning.contains("not checked against ConnectWise"), "{warning}");
    let log = changes_of(&app, &admin.access, &root).await;
    assert_eq!(log[0]["action"], "policy.updated");
    let logged: Vec<&Value> = log[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["field"] == "warning")
        .collect();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["after"], warning);
}

/// The ConnectWise mock, an app that may call it, and a tenant whose root policy has
/// credentials on it.
pub(crate) async fn tenant_on_mock() -> (MockConnectWise, TestApp, TenantFixture) {
    let mock = MockConnectWise::start().await;
    let app = app_allowing_mock().await;
    let tenant = app.create_tenant("Acme").await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    save_ok(
        &app,
        &tenant.admin,
        &root,
        &etag,
        json!({"set": credentials_on(&mock.site)}),
    )
    .await;
    (mock, app, tenant)
}

#[tokio::test]
async fn device_references_are_checked_against_connectwise() {
    let (mock, app, tenant) = tenant_on_mock().await;
    let admin = &tenant.admin;
    let device = register(&app, admin, "HW-REFS", "appliance").await;
    let url = format!("/api/v1/devices/{}", device.id);
    let patch = |query: &'static str, body: Value| {
        let app = &app;
        let url = url.clone();
        async move {
            let etag = etag_of(&app.get(&url, &admin.access).await);
            app.patch(&format!("{url}{query}"), &admin.access, Some(&etag), &body)
                .await
        }
    };
    let billing = json!({"set": {
        "billing.company": {"id": 1, "name": "Company 1"},
        "billing.agreement": {"id": 71, "name": "Backup Services"},
        "billing.addition": {"id": 501, "name": "OFFSITE-GB"},
    }});
    let saved = patch("", billing).await;
    assert_eq!(saved.status(), StatusCode::OK);
    let saved: Value = saved.json().await.unwrap();
    assert!(saved.get("warnings").is_none(), "{saved}");

    for (body, field) in [
        (
            json!({"set": {"ticketing.service_ticket_company": {"id": 42, "name": "Nobody"}}}),
            "set.ticketing.service_ticket_company",
        ),
        // Agreement 71 belongs to company 1, not 2.
        (
            json!({"set": {"billing.company": {"id": 2, "name": "Company 2"}}}),
            "set.billing.agreement",
        ),
        (
            json!({"set": {"billing.addition": {"id": 999, "name": "Elsewhere"}}}),
            "set.billing.addition",
        ),
    ] {
        let problem = assert_problem(patch("", body).await, 422, "validation_failed").await;
        assert_eq!(
            codes(&problem),
            [(field.to_owned(), "not_in_connectwise".to_owned())]
        );
    }
    let skipped = patch(
        "?validate=false",
        json!({"set": {"billing.addition": {"id": 999, "name": "Elsewhere"}}}),
    )
    .await;
    assert_eq!(skipped.status(), StatusCode::OK);

    mock.set(|b| b.status = 503);
    let saved = patch(
        "",
        json!({"set": {"ticketing.service_ticket_company": {"id": 3, "name": "Company 3"}}}),
    )
    .await;
    assert_eq!(saved.status(), StatusCode::OK);
    let saved: Value = saved.json().await.unwrap();
    let warning = saved["warnings"][0].as_str().unwrap().to_owned();
    let log = changes_of(&app, &admin.access, &device.id).await;
    assert_eq!(log[0]["action"], "device.updated");
    assert!(
        log[0]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "warning" && c["after"] == warning.as_str())
    );
}

#[tokio::test]
async fn test_connection_tells_dns_and_network_failures_from_an_unknown_site() {
    let app = app_allowing_mock().await;
    let tenant = app.create_tenant("Acme").await;
    let tested = |site: &'static str| {
        let app = &app;
        let token = tenant.admin.access.clone();
        async move {
            let body =
                json!({"site": site, "company_id": "acme", "public_key": "PubKey123", "private_key": SECRET});
            let response = app
                .post("/api/v1/connectwise/test-connection", Some(&token), &body)
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    // A name that cannot resolve (`.invalid` never does).
    let dns = tested("cw.gmp-test.invalid").await;
    assert_eq!(
        (dns["ok"].as_bool(), dns["reason"].as_str()),
        (Some(false), Some("dns_error"))
    );
    let detail = dns["detail"].as_str().unwrap();
    assert!(
        detail.contains("DNS settings of the GMP server's network"),
        "{detail}"
    );
    // A loopback port nobody listens on (allowed by the configuration): no connection.
    let closed = tested("127.0.0.1:9").await;
    assert_eq!(closed["reason"], "network_unreachable");
    let detail = closed["detail"].as_str().unwrap();
    assert!(detail.contains("GMP server's network connection"), "{detail}");
    assert!(!detail.contains(SECRET));
}

#[tokio::test]
async fn import_takes_the_document_as_downloaded_and_asks_for_secrets_when_needed() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = root_policy(&app, admin).await;
    let (_, etag) = save_ok(
        &app,
        admin,
        &root,
        &etag,
        json!({"set": merged(credentials_on("a.gmp-test.invalid"), json!({"ticketing.events.disk_usage.enabled": false}))}),
    )
    .await;
    let downloaded = app
        .get(&format!("/api/v1/policies/{root}/export"), &admin.access)
        .await
        .text()
        .await
        .unwrap();
    let import_url = format!("/api/v1/policies/{root}/import");

    // The file as downloaded, byte for byte, as the body.
    let dry_run = app
        .client
        .post(app.url(&format!("{import_url}?dry_run=true")))
        .bearer_auth(&admin.access)
        .header("content-type", "application/json")
        .body(downloaded.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(dry_run.status(), StatusCode::OK);
    let dry_run: Value = dry_run.json().await.unwrap();
    assert_eq!(
        (dry_run["dry_run"].as_bool(), dry_run["changes"].clone()),
        (Some(true), json!([]))
    );

    // The site moves, with a new secret; the downloaded document (no secrets) would move the
    // site back under the new secret.
    let (_, etag) = save_ok(
        &app,
        admin,
        &root,
        &etag,
        json!({"set": {"connectwise.site": "b.gmp-test.invalid", "connectwise.private_key": "another-secret"}}),
    )
    .await;
    let refused = app
        .client
        .post(app.url(&import_url))
        .bearer_auth(&admin.access)
        .header("content-type", "application/json")
        .header("if-match", &etag)
        .body(downloaded)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(refused, 422, "validation_failed").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("export it with a passphrase"),
        "{problem}"
    );

    // Into another tenant's policy, which holds no secret: the same advice.
    let other = app.create_tenant("Other MSP").await;
    let (other_root, other_etag) = root_policy(&app, &other.admin).await;
    let document: Value = serde_json::from_str(&downloaded_again(&app, admin, &root).await).unwrap();
    let refused = app
        .post_with_if_match(
            &format!("/api/v1/policies/{other_root}/import"),
            &other.admin.access,
            &other_etag,
            &json!({"document": document}),
        )
        .await;
    let problem = assert_problem(refused, 422, "validation_failed").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("export it with a passphrase"),
        "{problem}"
    );
}

async fn downloaded_again(app: &TestApp, session: &crate::helpers::Session, policy: &str) -> String {
    app.get(&format!("/api/v1/policies/{policy}/export"), &session.access)
        .await
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn errors_name_the_parameter_and_suggest_the_setting() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    for (path, code, named) in [
        ("/api/v1/policies?limit=ten", "invalid_query", "`limit`"),
        ("/api/v1/policies?limt=5", "invalid_query", "`limt`"),
        (
            "/api/v1/devices?status=active&kind=toaster",
            "invalid_query",
            "`kind`",
        ),
        ("/api/v1/policies/not-a-uuid", "invalid_path", "`policy_id`"),
    ] {
        let problem = assert_problem(app.get(path, &admin.access).await, 400, code).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(named), "{path}: {detail}");
        assert!(!detail.to_lowercase().contains("deserialize"), "{path}: {detail}");
    }

    let (root, etag) = root_policy(&app, admin).await;
    let problem = assert_problem(
        save(
            &app,
            admin,
            &root,
            &etag,
            json!({"set": {"connectwise.stie": "x"}}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("did you mean `connectwise.site`?"), "{message}");
}

#[tokio::test]
async fn cli_options_take_a_tenant_by_name() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme Backup").await;
    let env = [
        ("GMP_JWT_SECRET", test_jwt_secret()),
        ("GMP_MASTER_KEY", test_master_key()),
        ("GMP_CLI_PASSWORD", PASSWORD),
        // The running app's own database (SQLite file or PostgreSQL).
        ("GMP_DATABASE_URL", app.db.url.as_str()),
    ];
    let run = |tenant: &str, email: &str| {
        gmp_command(&app.db, &env)
            .args([
                "operator", "create", "--tenant", tenant, "--email", email, "--role", "editor",
            ])
            .output()
            .unwrap()
    };
    let output = run("Acme Backup", "editor@acme.test");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let session = app.sign_in("editor@acme.test", PASSWORD).await;
    assert_eq!(session.tenant_id, tenant.id);

    let output = run("No Such MSP", "other@acme.test");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no tenant with the id or name “No Such MSP”"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_device_check_never_sends_a_stored_secret_to_a_site_the_edit_typed() {
    let mock = MockConnectWise::start().await;
    let elsewhere = MockConnectWise::start().await;
    let app = app_allowing_mock().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let device = register(&app, admin, "HW-BOUND-REFS", "appliance").await;
    let url = format!("/api/v1/devices/{}", device.id);
    let etag = etag_of(&app.get(&url, &admin.access).await);
    let own = app
        .patch(
            &url,
            &admin.access,
            Some(&etag),
            &json!({"set": credentials_on(&mock.site)}),
        )
        .await;
    assert_eq!(own.status(), StatusCode::OK);
    let etag = etag_of(&own);

    let moved = json!({"set": {
        "connectwise.site": elsewhere.site,
        "billing.company": {"id": 1, "name": "Company 1"},
    }});
    let problem = assert_problem(
        app.patch(&url, &admin.access, Some(&etag), &moved).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["code"], "secret_reentry_required");
    assert!(elsewhere.requests().is_empty(), "nothing went to the typed site");
}

#[tokio::test]
async fn a_document_with_secrets_imports_as_downloaded_with_its_passphrase_in_a_header() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = root_policy(&app, admin).await;
    let (_, etag) = save_ok(
        &app,
        admin,
        &root,
        &etag,
        json!({"set": credentials_on("a.gmp-test.invalid")}),
    )
    .await;
    let passphrase = "a long export passphrase";
    let downloaded = app
        .post(
            &format!("/api/v1/policies/{root}/export"),
            Some(&admin.access),
            &json!({"passphrase": passphrase}),
        )
        .await
        .text()
        .await
        .unwrap();
    let (_, etag) = save_ok(
        &app,
        admin,
        &root,
        &etag,
        json!({"set": {"connectwise.site": "b.gmp-test.invalid", "connectwise.private_key": "another-secret"}}),
    )
    .await;
    let import = |passphrase: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url(&format!("/api/v1/policies/{root}/import")))
            .bearer_auth(&admin.access)
            .header("content-type", "application/json")
            .header("if-match", &etag)
            .body(downloaded.clone());
        if let Some(passphrase) = passphrase {
            request = request.header("x-export-passphrase", passphrase);
        }
        request.send()
    };
    let problem = assert_problem(import(None).await.unwrap(), 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "passphrase");
    let imported = import(Some(passphrase)).await.unwrap();
    assert_eq!(imported.status(), StatusCode::OK);
    let imported: Value = imported.json().await.unwrap();
    assert_eq!(
        imported["policy"]["values"]["connectwise.site"],
        "a.gmp-test.invalid"
    );
    assert!(!imported.to_string().contains(SECRET));
}
