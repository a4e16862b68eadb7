//! Device values in bulk (issue 12, part 4): export a device's values and apply them to many
//! devices in one request, with a result per device, as a dry run first.

use crate::billing::{billing_values, set_values};
use crate::devices::{TestDevice, register};
use crate::helpers::{Session, TestApp, assert_problem, etag_of};
use crate::saves::tenant_on_mock;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BULK: &str = "/api/v1/devices/settings:bulk";

async fn bulk(app: &TestApp, session: &Session, query: &str, body: &Value) -> reqwest::Response {
    app.post(&format!("{BULK}{query}"), Some(&session.access), body)
        .await
}

async fn bulk_ok(app: &TestApp, session: &Session, query: &str, body: &Value) -> Value {
    let response = bulk(app, session, query, body).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn device(app: &TestApp, session: &Session, device: &TestDevice) -> Value {
    app.get(&format!("/api/v1/devices/{}", device.id), &session.access)
        .await
        .json()
        .await
        .unwrap()
}

fn targets(devices: &[&TestDevice]) -> Value {
    devices.iter().map(|d| json!({"device_id": d.id})).collect()
}

fn outcomes(answer: &Value) -> Vec<(String, String)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let code = r["problem"]["code"].as_str().unwrap_or("");
            (r["outcome"].as_str().unwrap().to_owned(), code.to_owned())
        })
        .collect()
}

fn pair(outcome: &str, code: &str) -> (String, String) {
    (outcome.to_owned(), code.to_owned())
}

#[tokio::test]
async fn a_devices_values_are_exported_tried_and_applied_to_many_devices() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let source = register(&app, admin, "HW-SRC", "appliance").await;
    let t1 = register(&app, admin, "HW-T1", "appliance").await;
    let t2 = register(&app, admin, "HW-T2", "appliance").await;
    let vault = register(&app, admin, "HW-V", "vault").await;
    let mut values = billing_values(250, 501);
    values["ticketing.service_ticket_company"] = json!({"id": 250, "name": "Client A Ltd"});
    assert_eq!(
        set_values(&app, admin, &source, values.clone()).await.status(),
        StatusCode::OK
    );

    let viewer = app.create_operator(admin, "viewer").await;
    let exported = app
        .get(&format!("/api/v1/devices/{}/settings", source.id), &viewer.access)
        .await;
    assert_eq!(exported.status(), StatusCode::OK);
    let exported: Value = exported.json().await.unwrap();
    assert_eq!(exported["set"], values);
    assert_eq!(exported["source"]["device_id"], source.id.as_str());
    assert_eq!(exported["source"]["hostname"], "hw-src.local");
    assert_eq!(exported["omitted_secrets"], json!([]));

    // A dry run shows per device what would change and stores nothing.
    let request = json!({"dry_run": true, "settings": exported, "devices": targets(&[&t1, &t2, &vault])});
    let tried = bulk_ok(&app, admin, "?validate=false", &request).await;
    assert_eq!(tried["dry_run"], true);
    assert_eq!(
        outcomes(&tried),
        [
            pair("would_apply", ""),
            pair("would_apply", ""),
            pair("failed", "validation_failed")
        ]
    );
    assert_eq!(
        tried["summary"],
        json!({"applied": 0, "would_apply": 2, "unchanged": 0, "failed": 1})
    );
    let changes = tried["results"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 5, "{changes:?}");
    assert!(changes.iter().all(|c| c["change"] == "added"));
    let vault_problem = &tried["results"][2]["problem"];
    assert_eq!(vault_problem["status"], 422);
    assert_eq!(vault_problem["errors"][0]["code"], "billing_not_for_vaults");
    let untouched = device(&app, admin, &t1).await;
    assert_eq!(untouched["device_values"], json!({}));
    assert_eq!(untouched["version"], tried["results"][0]["version"]);

    // T1 changes meanwhile: its `if_match` is stale; T2 applies; the vault fails on its own.
    let t1_version = untouched["version"].as_i64().unwrap();
    assert_eq!(
        set_values(&app, admin, &t1, json!({"billing.enabled": false}))
            .await
            .status(),
        StatusCode::OK
    );
    let mut request = request;
    request["dry_run"] = json!(false);
    request["devices"][0]["if_match"] = json!(format!("\"{t1_version}\""));
    let applied = bulk_ok(&app, admin, "?validate=false", &request).await;
    assert_eq!(
        outcomes(&applied),
        [
            pair("failed", "precondition_failed"),
            pair("applied", ""),
            pair("failed", "validation_failed")
        ]
    );
    assert_eq!(applied["results"][0]["problem"]["status"], 412);
    assert_eq!(device(&app, admin, &t2).await["device_values"], values);
    assert_eq!(
        device(&app, admin, &t1).await["device_values"],
        json!({"billing.enabled": false}),
        "a failed device keeps what it had"
    );
    let version = applied["results"][1]["version"].as_i64().unwrap();
    assert_eq!(device(&app, admin, &t2).await["version"], version);
    let log: Value = app
        .get(
            &format!("/api/v1/audit/changes?target_id={}", t2.id),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(log["items"][0]["action"], "device.settings_applied");

    // Again, with the current version as a bare number: T2 is unchanged, T1 now applies.
    let t1_version = device(&app, admin, &t1).await["version"].clone();
    request["devices"] = json!([
        {"device_id": t1.id, "if_match": t1_version.to_string()},
        {"device_id": t2.id, "if_match": "*"},
    ]);
    let again = bulk_ok(&app, admin, "?validate=false", &request).await;
    assert_eq!(outcomes(&again), [pair("applied", ""), pair("unchanged", "")]);
    assert!(again["results"][1]["changes"].as_array().unwrap().is_empty());
    assert_eq!(again["results"][1]["version"], version, "no new version");

    // The billing view now has the three appliances, none of which reported.
    let billing: Value = app
        .get("/api/v1/billing", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        billing["additions"][0]["not_reported"].as_array().unwrap().len(),
        3
    );

    // Unset works through the same document.
    let cleared = bulk_ok(
        &app,
        admin,
        "",
        &json!({"settings": {"set": {}, "unset": ["ticketing.service_ticket_company"]}, "devices": targets(&[&t2])}),
    )
    .await;
    assert_eq!(outcomes(&cleared), [pair("applied", "")]);
    assert_eq!(cleared["results"][0]["changes"][0]["change"], "removed");
}

#[tokio::test]
async fn a_bulk_request_is_bounded_checked_as_a_whole_and_tenant_scoped() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let mine = register(&app, admin, "HW-MINE", "appliance").await;
    let other = app.create_tenant("Other").await;
    let theirs = register(&app, &other.admin, "HW-THEIRS", "appliance").await;
    let stc = json!({"set": {"ticketing.service_ticket_company": {"id": 3, "name": "Company 3"}}});

    let too_many: Vec<Value> = (0..501)
        .map(|_| json!({"device_id": uuid::Uuid::now_v7()}))
        .collect();
    for (body, field, code) in [
        (json!({"settings": stc, "devices": []}), "devices", "out_of_range"),
        (
            json!({"settings": stc, "devices": too_many}),
            "devices",
            "out_of_range",
        ),
        (
            json!({"settings": stc, "devices": targets(&[&mine, &mine])}),
            "devices[1].device_id",
            "duplicate_device",
        ),
        (
            json!({"settings": {"set": {"billing.enabeld": true}}, "devices": targets(&[&mine])}),
            "settings.set.billing.enabeld",
            "unknown_setting",
        ),
        (
            json!({"settings": {"set": {"billing.company": {"id": 0, "name": "x"}}}, "devices": targets(&[&mine])}),
            "settings.set.billing.company",
            "invalid_reference",
        ),
        (
            json!({"settings": {"set": {}}, "devices": targets(&[&mine])}),
            "settings.set",
            "required",
        ),
        (
            json!({"settings": stc, "devices": [{"device_id": mine.id, "if_match": "W/\"1\""}]}),
            "devices[0].if_match",
            "invalid_if_match",
        ),
        (
            json!({"settings": stc, "devices": targets(&[&mine]), "extra": 1}),
            "extra",
            "unknown_field",
        ),
    ] {
        let problem = assert_problem(bulk(&app, admin, "", &body).await, 422, "validation_failed").await;
        assert_eq!(
            (
                problem["errors"][0]["field"].as_str().unwrap(),
                problem["errors"][0]["code"].as_str().unwrap()
            ),
            (field, code),
            "{problem}"
        );
    }
    assert_eq!(
        device(&app, admin, &mine).await["device_values"],
        json!({}),
        "a refused request touches no device"
    );

    let viewer = app.create_operator(admin, "viewer").await;
    let body = json!({"settings": stc, "devices": targets(&[&mine, &theirs])});
    assert_problem(bulk(&app, &viewer, "", &body).await, 403, "forbidden").await;
    assert_problem(
        bulk(&app, admin, "?validate=maybe", &body).await,
        400,
        "invalid_query",
    )
    .await;

    // Another tenant's device is not found; the tenant's own device is applied.
    let answer = bulk_ok(&app, admin, "", &body).await;
    assert_eq!(
        outcomes(&answer),
        [pair("applied", ""), pair("failed", "not_found")]
    );
    assert_eq!(answer["results"][1]["problem"]["status"], 404);
    assert_eq!(
        device(&app, &other.admin, &theirs).await["device_values"],
        json!({})
    );
    assert_problem(
        app.get(&format!("/api/v1/devices/{}/settings", theirs.id), &admin.access)
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn bulk_applies_keep_locks_and_check_references_like_single_saves() {
    let (mock, app, tenant) = tenant_on_mock().await;
    let admin = &tenant.admin;
    let free = register(&app, admin, "HW-FREE", "appliance").await;
    let locked = register(&app, admin, "HW-LOCKED", "appliance").await;
    let child: Value = app
        .post(
            "/api/v1/policies",
            Some(&admin.access),
            &json!({"name": "Locked", "lock": ["ticketing.events.disk_usage.enabled"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let url = format!("/api/v1/devices/{}", locked.id);
    let etag = etag_of(&app.get(&url, &admin.access).await);
    let assigned = app
        .patch(
            &url,
            &admin.access,
            Some(&etag),
            &json!({"policy_id": child["id"]}),
        )
        .await;
    assert_eq!(assigned.status(), StatusCode::OK);

    let override_locked = json!({
        "settings": {"set": {"ticketing.events.disk_usage.enabled": false}},
        "devices": targets(&[&free, &locked]),
    });
    let answer = bulk_ok(&app, admin, "", &override_locked).await;
    assert_eq!(
        outcomes(&answer),
        [pair("applied", ""), pair("failed", "conflict")]
    );
    assert_eq!(
        answer["results"][1]["problem"]["errors"][0]["code"],
        "locked_by_ancestor"
    );

    // Agreement 71 and addition 501 exist for company 1 in the mock; addition 999 does not.
    let mut wrong = billing_values(1, 999);
    let request = |set: &Value, dry_run: bool| json!({"dry_run": dry_run, "settings": {"set": set}, "devices": targets(&[&free])});
    let tried = bulk_ok(&app, admin, "", &request(&wrong, true)).await;
    assert_eq!(outcomes(&tried), [pair("failed", "validation_failed")]);
    assert_eq!(
        tried["results"][0]["problem"]["errors"][0],
        json!({"field": "set.billing.addition", "code": "not_in_connectwise",
               "message": "addition 999 (“Addition 999”) is not an addition of agreement “Backup Services” in ConnectWise"})
    );
    assert!(!mock.api_requests().is_empty(), "checked against ConnectWise");
    let skipped = bulk_ok(&app, admin, "?validate=false", &request(&wrong, true)).await;
    assert_eq!(outcomes(&skipped), [pair("would_apply", "")]);

    wrong = billing_values(1, 501);
    let good = bulk_ok(&app, admin, "", &request(&wrong, false)).await;
    assert_eq!(outcomes(&good), [pair("applied", "")]);
    assert!(good["results"][0].get("warnings").is_none(), "{good}");

    // ConnectWise down: applied with a warning, as a single save would be.
    mock.set(|b| b.status = 503);
    let stc = json!({"ticketing.service_ticket_company": {"id": 3, "name": "Company 3"}});
    let unchecked = bulk_ok(&app, admin, "", &request(&stc, false)).await;
    assert_eq!(outcomes(&unchecked), [pair("applied", "")]);
    assert!(
        unchecked["results"][0]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("not checked against ConnectWise")
    );
}
