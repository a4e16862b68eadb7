//! The pull path at scale: built configs shared and cached per policy revision, the served-field
//! audit queued off the request path, and an audit that follows every policy version.

use crate::devices::{fast_tenant, pull, register};
use crate::helpers::{Session, TestApp};
use crate::policies::{root_policy, save_ok, seed_settings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// Lets a device pull again (the tenant's interval is 60 s, so the minimum gap is 3 s).
async fn wait_pull_gap() {
    tokio::time::sleep(Duration::from_millis(3100)).await;
}

async fn inherited(app: &TestApp, session: &Session, field: &str) -> Vec<Value> {
    let answer: Value = app
        .get(&format!("/api/v1/audit/inherited?field={field}"), &session.access)
        .await
        .json()
        .await
        .unwrap();
    answer["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_policy_version_that_changes_no_value_still_moves_the_audit() {
    let app = TestApp::spawn().await;
    let tenant = fast_tenant(&app, "Acme").await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    let (_, etag) = save_ok(&app, &tenant.admin, &root, &etag, seed_settings()).await;
    let device = register(&app, &tenant.admin, "HW-AUDIT", "appliance").await;
    let first = pull(&app, &device, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let hash = first.headers()["etag"].to_str().unwrap().to_owned();
    let site = "connectwise.site";
    assert_eq!(inherited(&app, &tenant.admin, site).await[0]["policy_version"], 2);

    // Version 3 only locks a field that the device gets anyway: values unchanged, provenance not.
    save_ok(
        &app,
        &tenant.admin,
        &root,
        &etag,
        json!({"description": "now with a note"}),
    )
    .await;
    wait_pull_gap().await;
    let again = pull(&app, &device, Some(&hash)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "no value changed");
    let items = inherited(&app, &tenant.admin, site).await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["policy_version"], 3,
        "the audit follows the version served"
    );
    let fields: Value = app
        .get(
            &format!("/api/v1/devices/{}/fields", device.id),
            &tenant.admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    let field = fields["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == site)
        .cloned()
        .unwrap();
    assert_eq!(field["source_policy"]["version"], 3, "{field}");
}

#[tokio::test]
async fn the_served_audit_is_written_in_batches_not_on_the_request_path() {
    let app = TestApp::spawn_with(|config| config.checkin_flush_interval_ms = 600_000).await;
    let tenant = app.create_tenant("Acme").await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    save_ok(&app, &tenant.admin, &root, &etag, seed_settings()).await;
    let device = register(&app, &tenant.admin, "HW-BATCH", "vault").await;
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::OK);

    // Answered, but nothing of the audit is written yet.
    assert!(
        inherited(&app, &tenant.admin, "connectwise.site")
            .await
            .is_empty()
    );
    assert_eq!(app.state.served.len(), 1);
    let view: Value = app
        .get(&format!("/api/v1/devices/{}", device.id), &tenant.admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert!(view["served_config_hash"].is_null());

    let written = gmp::services::served_audit::flush(&app.state).await.unwrap();
    assert_eq!(written, 1);
    assert!(app.state.served.is_empty());
    assert_eq!(inherited(&app, &tenant.admin, "connectwise.site").await.len(), 1);
    let view: Value = app
        .get(&format!("/api/v1/devices/{}", device.id), &tenant.admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["served_config_hash"], view["current_config_hash"]);
}

#[tokio::test]
async fn devices_without_values_of_their_own_share_one_built_config() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    save_ok(&app, &tenant.admin, &root, &etag, seed_settings()).await;
    let mut bodies = Vec::new();
    for i in 0..5 {
        let device = register(&app, &tenant.admin, &format!("HW-SHARE-{i}"), "appliance").await;
        let pulled: Value = pull(&app, &device, None).await.json().await.unwrap();
        assert_eq!(
            pulled["device_id"],
            device.id.as_str(),
            "each body names its own device"
        );
        // Times keep the protocol's one format (RFC 3339 in UTC, `Z`), as the schema states.
        for time in ["server_time", "next_pull_after"] {
            let text = pulled[time].as_str().unwrap();
            assert!(text.ends_with('Z'), "{time}: {text}");
            assert!(
                chrono::DateTime::parse_from_rfc3339(text).is_ok(),
                "{time}: {text}"
            );
        }
        bodies.push(pulled);
    }
    let (entries, bytes) = app.state.effective.usage();
    assert_eq!(entries, 1, "five devices of one policy: one built config");
    assert!(bytes > 0 && bytes < 64 * 1024, "{bytes} bytes");
    assert!(bodies.windows(2).all(|w| w[0]["settings"] == w[1]["settings"]));
    assert!(
        bodies
            .windows(2)
            .all(|w| w[0]["fingerprint_key"] != w[1]["fingerprint_key"])
    );
}

#[tokio::test]
async fn a_fleet_enrolling_with_64_clients_at_once_sees_no_error() {
    const DEVICES: usize = 320;
    const CLIENTS: usize = 64;
    let app = TestApp::spawn_with(|config| config.checkin_flush_interval_ms = 500).await;
    let tenant = app.create_tenant("Acme").await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    save_ok(&app, &tenant.admin, &root, &etag, seed_settings()).await;
    let token = crate::devices::enrollment_token(&app, &tenant.admin, json!({"max_uses": DEVICES})).await;
    let token = token["token"].as_str().unwrap().to_owned();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients = (0..CLIENTS).map(|_| {
        let (next, token, client, base) = (next.clone(), token.clone(), app.client.clone(), app.address.clone());
        async move {
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= DEVICES {
                    return failures;
                }
                let registered = client
                    .post(format!("{base}/device/v1/register"))
                    .json(&json!({"enrollment_token": token, "kind": "appliance", "hardware_id": format!("HERD-{i}"),
                                  "hostname": format!("herd-{i}.local"), "software_version": "1"}))
                    .send()
                    .await
                    .unwrap();
                if registered.status() != StatusCode::CREATED {
                    failures.push(format!("register {i}: {}", registered.status()));
                    continue;
                }
                let body: Value = registered.json().await.unwrap();
                let pulled = client
                    .get(format!("{base}/device/v1/config"))
                    .bearer_auth(body["credential"].as_str().unwrap())
                    .send()
                    .await
                    .unwrap();
                if pulled.status() != StatusCode::OK {
                    failures.push(format!("pull {i}: {}", pulled.status()));
                }
            }
        }
    });
    let failures: Vec<String> = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    gmp::services::served_audit::flush(&app.state).await.unwrap();
    gmp::services::checkins::flush(&app.state).await.unwrap();
    let listed: Value = app
        .get("/api/v1/devices?limit=200", &tenant.admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 200);
    assert!(listed["next_cursor"].is_string(), "more than one page of devices");
    assert_eq!(
        inherited(&app, &tenant.admin, "connectwise.site").await.len(),
        DEVICES.min(50)
    );
}
