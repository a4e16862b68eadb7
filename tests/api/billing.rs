//! Billing usage (issue 12, part 4): appliances report the storage their ConnectWise addition
//! bills, `GET /billing` totals it per company, agreement and addition, and billing is for
//! appliances only.

use crate::devices::{TestDevice, inherited_report, pull, register, report};
use crate::helpers::{Session, TestApp, assert_problem, etag_of};
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Billing settings for company `company`, agreement 71 and `addition`.
pub fn billing_values(company: i64, addition: i64) -> Value {
    json!({
        "billing.enabled": true,
        "billing.company": {"id": company, "name": format!("Company {company}")},
        "billing.agreement": {"id": 71, "name": "Backup Services"},
        "billing.addition": {"id": addition, "name": format!("Addition {addition}")},
    })
}

/// Sets device values on a device (unchecked against ConnectWise); returns the response.
pub async fn set_values(
    app: &TestApp,
    session: &Session,
    device: &TestDevice,
    set: Value,
) -> reqwest::Response {
    let url = format!("/api/v1/devices/{}", device.id);
    let etag = etag_of(&app.get(&url, &session.access).await);
    app.patch(
        &format!("{url}?validate=false"),
        &session.access,
        Some(&etag),
        &json!({ "set": set }),
    )
    .await
}

/// A report of the current config with `billing` added.
async fn usage_report(app: &TestApp, device: &TestDevice, billing: Value) -> reqwest::Response {
    let config: Value = pull(app, device, None).await.json().await.unwrap_or_default();
    let mut body = if config.get("config_hash").is_some() {
        inherited_report(&config)
    } else {
        json!({"config_hash": "ab".repeat(32)})
    };
    body["billing"] = billing;
    report(app, device, &body).await
}

async fn billing(app: &TestApp, session: &Session, query: &str) -> Value {
    let response = app.get(&format!("/api/v1/billing{query}"), &session.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn hostnames(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|d| d["hostname"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn appliances_report_usage_and_billing_totals_each_addition() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let a1 = register(&app, admin, "HW-A1", "appliance").await;
    let a2 = register(&app, admin, "HW-A2", "appliance").await;
    let a3 = register(&app, admin, "HW-A3", "appliance").await;
    let idle = register(&app, admin, "HW-A4", "appliance").await;
    for (device, addition) in [(&a1, 501), (&a2, 501), (&a3, 502)] {
        let saved = set_values(&app, admin, device, billing_values(1, addition)).await;
        assert_eq!(saved.status(), StatusCode::OK);
    }

    let reported = usage_report(
        &app,
        &a1,
        json!({"storage_gb": 100.5, "vaults": [
            {"vault": "vault-eu-1", "storage_gb": 60.25},
            {"vault": "vault-eu-2", "storage_gb": 40.25},
        ]}),
    )
    .await;
    assert_eq!(reported.status(), StatusCode::OK);
    let reported: Value = reported.json().await.unwrap();
    assert_eq!(reported["recorded"], true);
    assert_eq!(
        usage_report(&app, &a2, json!({"storage_gb": 20.2504}))
            .await
            .status(),
        StatusCode::OK
    );
    // An appliance without billing may report usage; it is kept but bills nothing.
    assert_eq!(
        usage_report(&app, &idle, json!({"storage_gb": 5})).await.status(),
        StatusCode::OK
    );

    let viewer = app.create_operator(admin, "viewer").await;
    let summary = billing(&app, &viewer, "").await;
    let additions = summary["additions"].as_array().unwrap();
    assert_eq!(additions.len(), 2, "{summary}");
    let first = &additions[0];
    assert_eq!(
        (
            &first["company"]["id"],
            &first["agreement"]["id"],
            &first["addition"]["id"]
        ),
        (&json!(1), &json!(71), &json!(501))
    );
    assert_eq!(first["addition"]["name"], "Addition 501");
    assert_eq!(first["total_gb"], 120.75, "rounded to the megabyte: {first}");
    assert_eq!(hostnames(&first["devices"]), ["hw-a1.local", "hw-a2.local"]);
    assert_eq!(first["devices"][0]["usage"]["vaults"][1]["vault"], "vault-eu-2");
    assert_eq!(first["devices"][1]["usage"]["storage_gb"], 20.25);
    assert!(first["not_reported"].as_array().unwrap().is_empty());
    let second = &additions[1];
    assert_eq!(second["addition"]["id"], 502);
    assert_eq!(second["total_gb"], 0.0);
    assert_eq!(hostnames(&second["not_reported"]), ["hw-a3.local"]);
    assert_eq!(summary["not_reported_count"], 1);
    assert_eq!(summary["total_gb"], 120.75);

    assert!(
        billing(&app, admin, "?company_id=2").await["additions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        billing(&app, admin, "?company_id=1").await["additions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    for bad in ["0", "2147483648", "x"] {
        assert_problem(
            app.get(&format!("/api/v1/billing?company_id={bad}"), &admin.access)
                .await,
            400,
            "invalid_query",
        )
        .await;
    }

    // Billing is per tenant.
    let other = app.create_tenant("Other").await;
    let theirs = billing(&app, &other.admin, "").await;
    assert_eq!(theirs["additions"], json!([]));
    assert_problem(
        app.get(
            &format!("/api/v1/devices/{}/billing-usage", a1.id),
            &other.admin.access,
        )
        .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn usage_is_kept_with_its_history_and_pruned_with_it() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let device = register(&app, admin, "HW-HIST", "appliance").await;
    let url = format!("/api/v1/devices/{}/billing-usage", device.id);
    let read = |query: &'static str| {
        let (app, url) = (&app, url.clone());
        async move {
            let response = app.get(&format!("{url}{query}"), &admin.access).await;
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let never = read("").await;
    assert_eq!((&never["latest"], &never["history"]), (&Value::Null, &json!([])));

    let body = json!({"config_hash": "ab".repeat(32), "billing": {"storage_gb": 10}});
    let first: Value = report(&app, &device, &body).await.json().await.unwrap();
    assert_eq!(first["recorded"], true);
    let again: Value = report(&app, &device, &body).await.json().await.unwrap();
    assert_eq!(again["recorded"], false, "the same report twice changes nothing");
    for (gb, version) in [(12.5, "12.4.1"), (12.5, "12.4.1"), (14.0, "12.5.0")] {
        let body = json!({"config_hash": "cd".repeat(32), "software_version": version, "billing": {"storage_gb": gb}});
        assert_eq!(report(&app, &device, &body).await.status(), StatusCode::OK);
    }
    let usage = read("").await;
    assert_eq!(usage["latest"]["storage_gb"], 14.0);
    let history: Vec<&Value> = usage["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["storage_gb"])
        .collect();
    assert_eq!(
        history,
        [&json!(14.0), &json!(12.5), &json!(10.0)],
        "changes only, newest first"
    );
    let page = read("?limit=2").await;
    assert_eq!(page["history"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let rest: Value = app
        .get(&format!("{url}?limit=2&cursor={cursor}"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["history"][0]["storage_gb"], 10.0);
    assert!(rest["next_cursor"].is_null());
    assert_problem(
        app.get(&format!("{url}?limit=0"), &admin.access).await,
        400,
        "invalid_query",
    )
    .await;

    // Retention prunes old history, never the latest usage.
    let far_future = Utc::now() + chrono::Duration::days(10_000);
    let outcome = gmp::jobs::retention_job(&app.state, far_future, 2).await.unwrap();
    assert!(outcome.changed >= 3);
    let pruned = read("").await;
    assert_eq!(pruned["history"], json!([]));
    assert_eq!(pruned["latest"]["storage_gb"], 14.0);
}

#[tokio::test]
async fn bad_usage_is_a_422_naming_the_field_and_vaults_do_not_bill() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let appliance = register(&app, admin, "HW-BAD", "appliance").await;
    let hash = "ab".repeat(32);
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"vault": format!("v{i}"), "storage_gb": 0}))
        .collect();
    for (billing, field, code) in [
        (json!({"storage_gb": -1}), "billing.storage_gb", "out_of_range"),
        (json!({"storage_gb": 1e12}), "billing.storage_gb", "out_of_range"),
        (json!({"storage_gb": "12"}), "billing.storage_gb", "invalid_type"),
        (json!({}), "billing.storage_gb", "required"),
        (
            json!({"storage_gb": 1, "extra": 1}),
            "billing.extra",
            "unknown_field",
        ),
        (
            json!({"storage_gb": 10, "vaults": [{"vault": "a", "storage_gb": 4}]}),
            "billing.vaults",
            "breakdown_mismatch",
        ),
        (
            json!({"storage_gb": 2, "vaults": [{"vault": "a", "storage_gb": 1}, {"vault": "a", "storage_gb": 1}]}),
            "billing.vaults[1].vault",
            "duplicate_vault",
        ),
        (
            json!({"storage_gb": 0, "vaults": many}),
            "billing.vaults",
            "too_many",
        ),
    ] {
        let response = report(
            &app,
            &appliance,
            &json!({"config_hash": hash, "billing": billing}),
        )
        .await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(
            (
                problem["errors"][0]["field"].as_str().unwrap(),
                problem["errors"][0]["code"].as_str().unwrap()
            ),
            (field, code),
            "{billing}: {problem}"
        );
    }
    let usage: Value = app
        .get(
            &format!("/api/v1/devices/{}/billing-usage", appliance.id),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(usage["latest"].is_null(), "nothing half-written");

    let vault = register(&app, admin, "HW-VAULT", "vault").await;
    let refused = report(
        &app,
        &vault,
        &json!({"config_hash": hash, "billing": {"storage_gb": 1}}),
    )
    .await;
    let problem = assert_problem(refused, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["code"], "billing_not_for_vaults");
    assert_eq!(
        report(&app, &vault, &json!({"config_hash": hash})).await.status(),
        StatusCode::OK,
        "a vault's report without usage is fine"
    );

    let problem = assert_problem(
        set_values(&app, admin, &vault, billing_values(1, 501)).await,
        422,
        "validation_failed",
    )
    .await;
    let mut refused: Vec<(&str, &str)> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        [
            ("set.billing.addition", "billing_not_for_vaults"),
            ("set.billing.agreement", "billing_not_for_vaults"),
            ("set.billing.company", "billing_not_for_vaults"),
            ("set.billing.enabled", "billing_not_for_vaults"),
        ]
    );
    assert_eq!(
        set_values(&app, admin, &vault, json!({"billing.enabled": false}))
            .await
            .status(),
        StatusCode::OK,
        "a vault may say billing is off"
    );
}
