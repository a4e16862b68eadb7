//! Devices: enrollment, the pull protocol, reports, operator management and the field audit.

use crate::helpers::{Session, TestApp, assert_problem, etag_of};
use crate::policies::{SECRET, root_policy, save_ok, seed_settings};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

/// A registered device and its credential.
#[derive(Debug, Clone)]
pub struct TestDevice {
    pub id: String,
    pub credential: String,
}

pub async fn enrollment_token(app: &TestApp, session: &Session, body: Value) -> Value {
    let response = app
        .post("/api/v1/enrollment-tokens", Some(&session.access), &body)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

pub async fn register_with(app: &TestApp, token: &str, hardware_id: &str, kind: &str) -> Response {
    app.post(
        "/device/v1/register",
        None,
        &json!({
            "enrollment_token": token,
            "kind": kind,
            "hardware_id": hardware_id,
            "hostname": format!("{}.local", hardware_id.to_lowercase()),
            "software_version": "12.4.1",
        }),
    )
    .await
}

/// Registers a device in the session's tenant with a fresh single-use token.
pub async fn register(app: &TestApp, session: &Session, hardware_id: &str, kind: &str) -> TestDevice {
    let token = enrollment_token(app, session, json!({})).await;
    let response = register_with(app, token["token"].as_str().unwrap(), hardware_id, kind).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    TestDevice {
        id: body["device_id"].as_str().unwrap().to_owned(),
        credential: body["credential"].as_str().unwrap().to_owned(),
    }
}

pub async fn pull(app: &TestApp, device: &TestDevice, etag: Option<&str>) -> Response {
    let mut request = app
        .client
        .get(app.url("/device/v1/config"))
        .bearer_auth(&device.credential);
    if let Some(etag) = etag {
        request = request.header("if-none-match", etag);
    }
    request.send().await.unwrap()
}

pub async fn report(app: &TestApp, device: &TestDevice, body: &Value) -> Response {
    app.client
        .post(app.url("/device/v1/report"))
        .bearer_auth(&device.credential)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A report saying every served field was inherited.
pub fn inherited_report(config: &Value) -> Value {
    let fields: serde_json::Map<String, Value> = config["settings"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| (k.clone(), json!({"state": "inherited"})))
        .collect();
    json!({"config_hash": config["config_hash"], "fields": fields})
}

/// A tenant whose devices may pull every second (a 16 s interval).
pub async fn fast_tenant(app: &TestApp, name: &str) -> crate::helpers::TenantFixture {
    let tenant = app.create_tenant(name).await;
    let response = app
        .patch(
            "/api/v1/device-settings",
            &tenant.admin.access,
            Some("*"),
            &json!({"pull_interval_seconds": 60}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    tenant
}

#[tokio::test]
async fn enrollment_tokens_expire_run_out_and_can_be_revoked() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;

    let twice = enrollment_token(&app, admin, json!({"label": "two devices", "max_uses": 2})).await;
    assert!(twice["token"].as_str().unwrap().starts_with("gmp_et_"));
    let token = twice["token"].as_str().unwrap();
    assert_eq!(
        register_with(&app, token, "HW-1", "appliance").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        register_with(&app, token, "HW-2", "vault").await.status(),
        StatusCode::CREATED
    );
    let used_up = register_with(&app, token, "HW-3", "vault").await;
    let problem = assert_problem(used_up, 401, "invalid_enrollment_token").await;
    assert!(problem["detail"].as_str().unwrap().contains("used up"));
    let listed: Value = app
        .get("/api/v1/enrollment-tokens", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none()),
        "tokens are shown once"
    );
    let read: Value = app
        .get(
            &format!("/api/v1/enrollment-tokens/{}", twice["id"].as_str().unwrap()),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (read["uses"].as_i64(), read["status"].as_str()),
        (Some(2), Some("used up"))
    );

    let revoked = enrollment_token(&app, admin, json!({})).await;
    let path = format!("/api/v1/enrollment-tokens/{}", revoked["id"].as_str().unwrap());
    assert_eq!(
        app.delete(&path, &admin.access, None).await.status(),
        StatusCode::NO_CONTENT
    );
    let refused = register_with(&app, revoked["token"].as_str().unwrap(), "HW-4", "vault").await;
    assert!(
        assert_problem(refused, 401, "invalid_enrollment_token").await["detail"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );

    let short = enrollment_token(&app, admin, json!({"expires_in_seconds": 60})).await;
    // Expire it by moving its expiry into the past in the database.
    use sea_orm::ConnectionTrait;
    app.state
        .db
        .execute_unprepared("UPDATE enrollment_tokens SET expires_at = '2000-01-01T00:00:00+00:00'")
        .await
        .unwrap();
    let expired = register_with(&app, short["token"].as_str().unwrap(), "HW-5", "vault").await;
    assert!(
        assert_problem(expired, 401, "invalid_enrollment_token").await["detail"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let unknown = register_with(&app, "gmp_et_nonsense", "HW-6", "vault").await;
    assert_problem(unknown, 401, "invalid_enrollment_token").await;

    let devices: Value = app
        .get("/api/v1/devices", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        devices["items"].as_array().unwrap().len(),
        2,
        "refused registrations created nothing"
    );

    for (body, field) in [
        (json!({"max_uses": 0}), "max_uses"),
        (json!({"expires_in_seconds": 10}), "expires_in_seconds"),
        (json!({"policy_id": uuid::Uuid::now_v7()}), "policy_id"),
    ] {
        let response = app
            .post("/api/v1/enrollment-tokens", Some(&admin.access), &body)
            .await;
        assert_eq!(
            assert_problem(response, 422, "validation_failed").await["errors"][0]["field"],
            field
        );
    }
}

#[tokio::test]
async fn registration_input_is_validated() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let token = enrollment_token(&app, &tenant.admin, json!({})).await;
    let bad_kind = app
        .post("/device/v1/register", None, &json!({"enrollment_token": token["token"], "kind": "toaster", "hardware_id": "x", "hostname": "x", "software_version": "1"}))
        .await;
    assert_eq!(
        assert_problem(bad_kind, 422, "validation_failed").await["errors"][0]["field"],
        "kind"
    );
    let empty = app
        .post("/device/v1/register", None, &json!({"enrollment_token": token["token"], "kind": "vault", "hardware_id": " ", "hostname": "h", "software_version": "1"}))
        .await;
    assert_eq!(
        assert_problem(empty, 422, "validation_failed").await["errors"][0]["field"],
        "hardware_id"
    );
    // The token was not consumed by the invalid requests.
    assert_eq!(
        register_with(&app, token["token"].as_str().unwrap(), "HW-OK", "vault")
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn the_source_documents_device_flow() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = root_policy(&app, admin).await;
    let (_, etag) = save_ok(&app, admin, &root, &etag, seed_settings()).await;
    let appliance = register(&app, admin, "APPLIANCE-1", "appliance").await;
    let vault = register(&app, admin, "VAULT-1", "vault").await;

    // Both pull and report inherited.
    let mut configs = Vec::new();
    for device in [&appliance, &vault] {
        let response = pull(&app, device, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let etag = etag_of(&response);
        assert!(response.headers().contains_key("x-gmp-next-pull-after"));
        let config: Value = response.json().await.unwrap();
        assert_eq!(etag, format!("\"{}\"", config["config_hash"].as_str().unwrap()));
        assert_eq!(
            config["settings"]["connectwise.private_key"], SECRET,
            "the device gets the secret in clear"
        );
        assert_eq!(config["settings"]["connectwise.site"], "na.myconnectwise.invalid");
        assert_eq!(config["provenance"]["connectwise.site"]["policy_name"], "Default");
        assert_eq!(config["provenance"]["connectwise.site"]["version"], 2);
        assert_eq!(config["pull_interval_seconds"], 60);
        let receipt = report(&app, device, &inherited_report(&config)).await;
        assert_eq!(receipt.status(), StatusCode::OK);
        configs.push(config);
    }
    assert_eq!(
        configs[0]["config_hash"], configs[1]["config_hash"],
        "same effective values, same hash"
    );
    let version2_hash = configs[0]["config_hash"].as_str().unwrap().to_owned();

    // Who inherited version 2's board? Both, with the same fingerprint.
    let board = "ticketing.events.failed_backup.service_board";
    let inherited: Value = app
        .get(
            &format!("/api/v1/audit/inherited?field={board}&policy_id={root}&version=2"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    let items = inherited["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(
        items
            .iter()
            .all(|i| i["policy_version"] == 2 && i["served_fingerprint"] == items[0]["served_fingerprint"])
    );

    // The operator changes a managed value: new ETag and body on the next pull.
    save_ok(
        &app,
        admin,
        &root,
        &etag,
        json!({"set": {"ticketing.events.missed_backup.service_board": {"id": 42, "name": "Escalations"}}}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let changed = pull(&app, &appliance, Some(&format!("\"{version2_hash}\""))).await;
    assert_eq!(changed.status(), StatusCode::OK);
    let new_config: Value = changed.json().await.unwrap();
    assert_ne!(new_config["config_hash"].as_str().unwrap(), version2_hash);
    assert_eq!(
        new_config["settings"]["ticketing.events.missed_backup.service_board"]["id"],
        42
    );
    report(&app, &appliance, &inherited_report(&new_config)).await;
    // An unchanged device gets 304 for its current ETag.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let unchanged = pull(
        &app,
        &appliance,
        Some(&format!("\"{}\"", new_config["config_hash"].as_str().unwrap())),
    )
    .await;
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

    // The vault overrides a ticketing board locally and reports it.
    let vault_config: Value = pull(&app, &vault, None).await.json().await.unwrap();
    let mut vault_report = inherited_report(&vault_config);
    vault_report["fields"][board] =
        json!({"state": "overridden", "value": {"id": 77, "name": "Vault local desk"}});
    let receipt: Value = report(&app, &vault, &vault_report).await.json().await.unwrap();
    assert_eq!(receipt["recorded"], true);
    assert_eq!(receipt["violations"], json!([]));

    let overrides: Value = app
        .get(&format!("/api/v1/audit/overrides?field={board}"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let items = overrides["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["device_id"], vault.id.as_str());
    assert_eq!(
        items[0]["reported"]["local_value"],
        json!({"id": 77, "name": "Vault local desk"})
    );
    assert_eq!(items[0]["violation"], false);

    // What does the vault run, and why?
    let fields: Value = app
        .get(&format!("/api/v1/devices/{}/fields", vault.id), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let field = |path: &str| {
        fields["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == path)
            .unwrap()
            .clone()
    };
    let overridden = field(board);
    assert_eq!(overridden["source"], "policy");
    assert_eq!(overridden["source_policy"]["policy_name"], "Default");
    assert_eq!(overridden["source_policy"]["version"], 3);
    assert_eq!(overridden["reported"]["state"], "overridden");
    let secret = field("connectwise.private_key");
    assert_eq!(secret["value"]["set"], true);
    assert!(
        !fields.to_string().contains(SECRET),
        "operator views never show secrets"
    );
    assert_eq!(fields["device"]["in_sync"], true);

    // History records the change of what was served and of what was reported.
    let history: Value = app
        .get(
            &format!("/api/v1/devices/{}/history?field={board}", vault.id),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    let events: Vec<(&str, Option<&str>)> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["reported"]["state"].as_str()))
        .collect();
    // Served again when version 3 came out: same value, new provenance.
    assert_eq!(
        events,
        [
            ("reported", Some("overridden")),
            ("served", Some("inherited")),
            ("reported", Some("inherited")),
            ("served", None)
        ]
    );
    let served: Vec<i64> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "served")
        .map(|e| e["policy_version"].as_i64().unwrap())
        .collect();
    assert_eq!(served, [3, 2]);
}

#[tokio::test]
async fn reports_are_validated_and_idempotent() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    save_ok(&app, &tenant.admin, &root, &etag, seed_settings()).await;
    let device = register(&app, &tenant.admin, "HW-R", "appliance").await;
    let config: Value = pull(&app, &device, None).await.json().await.unwrap();

    let bad = json!({"config_hash": config["config_hash"], "fields": {
        "connectwise.nope": {"state": "inherited"},
        "connectwise.site": {"state": "failed"},
        "connectwise.private_key": {"state": "overridden", "value": "in clear"},
    }});
    let problem = assert_problem(report(&app, &device, &bad).await, 422, "validation_failed").await;
    let fields: Vec<(&str, &str)> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        [
            ("fields.connectwise.nope", "unknown_setting"),
            ("fields.connectwise.private_key", "fingerprint_required"),
            ("fields.connectwise.site", "error_required")
        ]
    );
    // A state is one of the four the OpenAPI document lists; another is refused by name.
    let sideways = json!({"config_hash": config["config_hash"], "fields": {
        "connectwise.site": {"state": "sideways"},
    }});
    let problem = assert_problem(report(&app, &device, &sideways).await, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "fields.connectwise.site.state");
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("`sideways`") && message.contains("`unsupported`"),
        "{message}"
    );
    let bad_hash = json!({"config_hash": "nope", "fields": {}});
    assert_eq!(
        assert_problem(report(&app, &device, &bad_hash).await, 422, "validation_failed").await["errors"][0]["field"],
        "config_hash"
    );
    let device_view: Value = app
        .get(&format!("/api/v1/devices/{}", device.id), &tenant.admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        device_view["applied_config_hash"].is_null(),
        "nothing recorded from invalid reports"
    );

    let good = inherited_report(&config);
    let first: Value = report(&app, &device, &good).await.json().await.unwrap();
    assert_eq!(first["recorded"], true);
    assert!(first["fields_changed"].as_u64().unwrap() > 10);
    let history_path = format!("/api/v1/devices/{}/history?limit=200", device.id);
    let before: Value = app
        .get(&history_path, &tenant.admin.access)
        .await
        .json()
        .await
        .unwrap();
    let second: Value = report(&app, &device, &good).await.json().await.unwrap();
    assert_eq!(
        (second["recorded"].as_bool(), second["fields_changed"].as_u64()),
        (Some(false), Some(0))
    );
    let after: Value = app
        .get(&history_path, &tenant.admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before, after, "the same report twice changes nothing");
}

#[tokio::test]
async fn a_failed_config_is_not_sent_again_until_it_changes() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    let (_, etag) = save_ok(&app, &tenant.admin, &root, &etag, seed_settings()).await;
    let device = register(&app, &tenant.admin, "HW-F", "appliance").await;
    let config: Value = pull(&app, &device, None).await.json().await.unwrap();
    let mut failed = inherited_report(&config);
    failed["fields"]["connectwise.site"] = json!({"state": "failed", "error": "DNS lookup failed"});
    report(&app, &device, &failed).await;
    let view: Value = app
        .get(&format!("/api/v1/devices/{}", device.id), &tenant.admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["failed"], true);

    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    // Even without If-None-Match, the failed config is not pushed again.
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::NOT_MODIFIED);
    save_ok(
        &app,
        &tenant.admin,
        &root,
        &etag,
        json!({"set": {"connectwise.public_key": "RotatedKey9876"}}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let fixed = pull(&app, &device, None).await;
    assert_eq!(fixed.status(), StatusCode::OK);
}

#[tokio::test]
async fn pull_floods_get_429_with_retry_after() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let device = register(&app, &tenant.admin, "HW-FLOOD", "appliance").await;
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::OK);
    let flood = pull(&app, &device, None).await;
    let retry_after: u64 = flood.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert_problem(flood, 429, "rate_limited").await;
    // 4 h interval: at most one pull per 15 minutes.
    assert!((800..=900).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn devices_of_one_tenant_never_read_anothers_config() {
    let app = TestApp::spawn().await;
    let acme = fast_tenant(&app, "Acme").await;
    let globex = fast_tenant(&app, "Globex").await;
    for (tenant, site) in [(&acme, "acme.example"), (&globex, "globex.example")] {
        let (root, etag) = root_policy(&app, &tenant.admin).await;
        let mut settings = seed_settings();
        settings["set"]["connectwise.site"] = json!(site);
        settings["set"]["connectwise.private_key"] = json!(format!("{site}-SECRET"));
        save_ok(&app, &tenant.admin, &root, &etag, settings).await;
    }
    let acme_device = register(&app, &acme.admin, "SAME-HW", "vault").await;
    let globex_device = register(&app, &globex.admin, "SAME-HW", "vault").await;
    assert_ne!(acme_device.id, globex_device.id, "hardware ids are per tenant");
    let acme_config: Value = pull(&app, &acme_device, None).await.json().await.unwrap();
    let globex_config: Value = pull(&app, &globex_device, None).await.json().await.unwrap();
    assert_eq!(acme_config["settings"]["connectwise.site"], "acme.example");
    assert_eq!(globex_config["settings"]["connectwise.site"], "globex.example");
    assert!(!acme_config.to_string().contains("globex"));
    // A device credential is not an operator token, and an operator token is not a device credential.
    assert_problem(
        app.get("/api/v1/devices", &acme_device.credential).await,
        401,
        "invalid_token",
    )
    .await;
    let operator_as_device = app
        .client
        .get(app.url("/device/v1/config"))
        .bearer_auth(&acme.admin.access)
        .send()
        .await
        .unwrap();
    assert_problem(operator_as_device, 401, "invalid_device_credential").await;
    // Operators of one tenant cannot see or touch another's devices.
    assert_problem(
        app.get(
            &format!("/api/v1/devices/{}", globex_device.id),
            &acme.admin.access,
        )
        .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn rotation_and_decommission_invalidate_credentials() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let device = register(&app, &tenant.admin, "HW-ROT", "appliance").await;
    let rotated = app
        .post(
            &format!("/api/v1/devices/{}/rotate-credential", device.id),
            Some(&tenant.admin.access),
            &json!({}),
        )
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let new_credential = rotated.json::<Value>().await.unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_problem(pull(&app, &device, None).await, 401, "invalid_device_credential").await;
    let current = TestDevice {
        id: device.id.clone(),
        credential: new_credential,
    };
    assert_eq!(pull(&app, &current, None).await.status(), StatusCode::OK);

    let decommissioned = app
        .post(
            &format!("/api/v1/devices/{}/decommission", device.id),
            Some(&tenant.admin.access),
            &json!({}),
        )
        .await;
    assert_eq!(
        decommissioned.json::<Value>().await.unwrap()["status"],
        "decommissioned"
    );
    assert_problem(pull(&app, &current, None).await, 401, "invalid_device_credential").await;
    let report_after = report(
        &app,
        &current,
        &json!({"config_hash": "0".repeat(64), "fields": {}}),
    )
    .await;
    assert_problem(report_after, 401, "invalid_device_credential").await;
    let listed: Value = app
        .get("/api/v1/devices?status=decommissioned", &tenant.admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn device_values_assignment_locks_adopt_and_reassert() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = root_policy(&app, admin).await;
    let mut settings = seed_settings();
    settings["lock"] = json!(["connectwise.site"]);
    save_ok(&app, admin, &root, &etag, settings).await;
    let child: Value = app
        .post(
            "/api/v1/policies",
            Some(&admin.access),
            &json!({"name": "Client A"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let child_id = child["id"].as_str().unwrap();
    let device = register(&app, admin, "HW-VAL", "vault").await;
    let path = format!("/api/v1/devices/{}", device.id);
    let etag = etag_of(&app.get(&path, &admin.access).await);

    // Assign to the child and set the device-scoped Service Ticket Company.
    let updated = app
        .patch(&path, &admin.access, Some(&etag), &json!({"policy_id": child_id, "set": {"ticketing.service_ticket_company": {"id": 250, "name": "Client A Ltd"}}}))
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let etag = etag_of(&updated);
    assert_problem(
        app.patch(&path, &admin.access, Some("\"1\""), &json!({})).await,
        412,
        "precondition_failed",
    )
    .await;
    // A device value cannot override a locked field.
    let locked = app
        .patch(
            &path,
            &admin.access,
            Some(&etag),
            &json!({"set": {"connectwise.site": "local.example"}}),
        )
        .await;
    assert!(
        assert_problem(locked, 409, "conflict").await["detail"]
            .as_str()
            .unwrap()
            .contains("Default")
    );

    let config: Value = pull(&app, &device, None).await.json().await.unwrap();
    assert_eq!(config["settings"]["ticketing.service_ticket_company"]["id"], 250);
    assert_eq!(
        config["provenance"]["ticketing.service_ticket_company"]["source"],
        "device"
    );
    // Every source served is one the OpenAPI document lists for it.
    let spec = serde_json::to_value(gmp::http::spec()).unwrap();
    let listed = &spec["components"]["schemas"]["ServedSourceDto"]["enum"];
    let sources: Vec<&Value> = config["provenance"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| &p["source"])
        .collect();
    assert!(sources.contains(&&json!("policy")) && sources.contains(&&json!("device")));
    assert!(
        sources.iter().all(|s| listed.as_array().unwrap().contains(s)),
        "{sources:?} against {listed}"
    );
    assert!(
        config["locked"]
            .as_array()
            .unwrap()
            .contains(&json!("connectwise.site"))
    );

    // The device overrides the locked site anyway: a violation.
    let mut local = inherited_report(&config);
    local["fields"]["connectwise.site"] = json!({"state": "overridden", "value": "rogue.example"});
    let board = "ticketing.events.disk_usage.service_board";
    local["fields"][board] = json!({"state": "overridden", "value": {"id": 5, "name": "Local"}});
    let receipt: Value = report(&app, &device, &local).await.json().await.unwrap();
    assert_eq!(receipt["violations"], json!(["connectwise.site"]));
    let overrides: Value = app
        .get("/api/v1/audit/overrides", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let site = overrides["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["field"] == "connectwise.site")
        .unwrap();
    assert_eq!(site["violation"], true);
    let dashboard: Value = app
        .get("/api/v1/dashboard/policies", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let client = dashboard["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["policy_name"] == "Client A")
        .unwrap();
    assert_eq!(
        (
            client["assigned"].as_u64(),
            client["violations"].as_u64(),
            client["overridden"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let drifted: Value = app
        .get("/api/v1/devices?drifted=true", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(drifted["items"].as_array().unwrap().len(), 1);

    // Adopting the locked override is refused; adopting the board makes it a device value.
    let etag = etag_of(&app.get(&path, &admin.access).await);
    let refused = app
        .post_with_if_match(
            &format!("{path}/adopt"),
            &admin.access,
            &etag,
            &json!({"field": "connectwise.site"}),
        )
        .await;
    assert_problem(refused, 409, "conflict").await;
    let adopted = app
        .post_with_if_match(
            &format!("{path}/adopt"),
            &admin.access,
            &etag,
            &json!({"field": board}),
        )
        .await;
    assert_eq!(adopted.status(), StatusCode::OK);
    let etag = etag_of(&adopted);
    let adopted: Value = adopted.json().await.unwrap();
    assert_eq!(adopted["device_values"][board], json!({"id": 5, "name": "Local"}));

    // Reassert the site: the next config tells the device to drop its local value.
    let reasserted = app
        .post_with_if_match(
            &format!("{path}/reassert"),
            &admin.access,
            &etag,
            &json!({"field": "connectwise.site"}),
        )
        .await;
    assert_eq!(reasserted.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let next: Value = pull(&app, &device, None).await.json().await.unwrap();
    assert_eq!(next["reassert"], json!(["connectwise.site"]));
    assert_eq!(next["provenance"][board]["source"], "device");
    let complied = inherited_report(&next);
    report(&app, &device, &complied).await;
    let view: Value = app.get(&path, &admin.access).await.json().await.unwrap();
    assert_eq!(
        view["reassert"],
        json!([]),
        "cleared once the device inherits again"
    );
    let overrides: Value = app
        .get("/api/v1/audit/overrides", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(overrides["items"], json!([]));
    let log: Value = app
        .get(
            &format!("/api/v1/audit/changes?target_id={}", device.id),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.starts_with(&[
            "device.policy_reasserted",
            "device.override_adopted",
            "device.updated"
        ]),
        "{actions:?}"
    );

    // A policy with devices cannot be deleted.
    let delete = app
        .delete(&format!("/api/v1/policies/{child_id}"), &admin.access, Some("*"))
        .await;
    assert_problem(delete, 409, "conflict").await;
}

#[tokio::test]
async fn pending_failed_and_stale_devices_of_a_policy() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = root_policy(&app, admin).await;
    let (_, etag) = save_ok(&app, admin, &root, &etag, seed_settings()).await;
    let synced = register(&app, admin, "HW-SYNC", "appliance").await;
    let lagging = register(&app, admin, "HW-LAG", "appliance").await;
    for device in [&synced, &lagging] {
        let config: Value = pull(&app, device, None).await.json().await.unwrap();
        report(&app, device, &inherited_report(&config)).await;
    }
    save_ok(
        &app,
        admin,
        &root,
        &etag,
        json!({"set": {"ticketing.events.agent_status.enabled": false}}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let config: Value = pull(&app, &synced, None).await.json().await.unwrap();
    report(&app, &synced, &inherited_report(&config)).await;

    let pending: Value = app
        .get(
            &format!("/api/v1/policies/{root}/devices?state=pending"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [lagging.id.as_str()]);
    let in_sync: Value = app
        .get(
            &format!("/api/v1/policies/{root}/devices?state=in_sync"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(in_sync["items"][0]["id"], synced.id.as_str());

    use sea_orm::ConnectionTrait;
    app.state
        .db
        .execute_unprepared(
            "UPDATE device_checkins SET next_pull_after = '2000-01-01T00:00:00+00:00' \
             WHERE device_id = (SELECT id FROM devices WHERE hardware_id = 'HW-LAG')",
        )
        .await
        .unwrap();
    let stale: Value = app
        .get(
            &format!("/api/v1/policies/{root}/devices?state=stale"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stale["items"][0]["id"], lagging.id.as_str());
    let stale_list: Value = app
        .get("/api/v1/devices?stale=true", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stale_list["items"].as_array().unwrap().len(), 1);
    let dashboard: Value = app
        .get("/api/v1/dashboard/policies", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let default = &dashboard["policies"][0];
    assert_eq!(
        (
            default["assigned"].as_u64(),
            default["in_sync"].as_u64(),
            default["pending"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_problem(
        app.get(
            &format!("/api/v1/policies/{root}/devices?state=weird"),
            &admin.access,
        )
        .await,
        400,
        "invalid_query",
    )
    .await;
}

/// `n` unused enrollment tokens.
pub async fn enrollment_tokens_for(app: &TestApp, session: &Session, n: usize) {
    for _ in 0..n {
        enrollment_token(app, session, json!({})).await;
    }
}

#[tokio::test]
async fn concurrent_registrations_of_one_hardware_id_make_one_device() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let token = enrollment_token(&app, &tenant.admin, json!({"max_uses": 6})).await;
    let token = token["token"].as_str().unwrap();
    let attempts = (0..6).map(|_| register_with(&app, token, "HW-TWIN", "vault"));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| [201, 202, 409].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 202).count() <= 1,
        "at most one re-registration waits: {statuses:?}"
    );
    let devices = app.get_json("/api/v1/devices", &tenant.admin.access).await;
    assert_eq!(devices["items"].as_array().unwrap().len(), 1);
}
