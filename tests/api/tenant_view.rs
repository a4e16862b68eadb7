//! Services read a tenant's policy state through one entry point (`effective::current`), which
//! loads it once per policy revision: every read of a revision, through the API or the device
//! side, shares one view; a policy write moves the revision, and an operator read right after
//! it, on this replica or on another that has not heard of the write yet, sees the write.

use crate::helpers::{Server, Session, TestApp, test_jwt_secret, test_master_key};
use crate::policies::{root_policy, save_ok};
use gmp::domain::policy::SettingValue;
use gmp::domain::{PolicyId, TenantId};
use gmp::services::effective::{self, Current, Freshness};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

/// Fields a save may set alone (a disabled event class needs no board).
const HERE: &str = "ticketing.events.disk_usage.enabled";
const THERE: &str = "ticketing.events.pool_status.enabled";

async fn current(app: &TestApp, tenant: TenantId) -> Current {
    effective::current(&app.state, tenant, Freshness::Database)
        .await
        .unwrap()
}

/// `field` as the policy's resolved view shows it, read through `address`.
async fn resolved(app: &TestApp, address: &str, admin: &Session, policy: &str, field: &str) -> Value {
    let response = app
        .client
        .get(format!("{address}/api/v1/policies/{policy}/resolved"))
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()["fields"][field]["value"].clone()
}

fn stored(view: &Current, policy: PolicyId, field: &str) -> Option<SettingValue> {
    view.view.get(policy).unwrap().content.values.get(field).cloned()
}

#[tokio::test]
async fn reads_share_one_view_per_revision_and_see_a_write_at_once_on_every_replica() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let tenant_id = TenantId(tenant.id.parse().unwrap());
    let (root, etag) = root_policy(&app, admin).await;
    let root_id = PolicyId(root.parse().unwrap());

    // One revision, one load: operator reads (through the API too) and the device side's reads
    // are all served the view loaded first.
    let first = current(&app, tenant_id).await;
    assert_eq!(
        resolved(&app, &app.address, admin, &root, HERE).await,
        Value::Null
    );
    let again = current(&app, tenant_id).await;
    assert_eq!(again.revision, first.revision);
    assert!(Arc::ptr_eq(&first.view, &again.view), "read from the cache");
    let pulled = effective::current(&app.state, tenant_id, Freshness::Directory)
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&first.view, &pulled.view));

    // A write here: the next read loads the new revision, once.
    let (_, etag) = save_ok(&app, admin, &root, &etag, json!({"set": {HERE: false}})).await;
    assert_eq!(
        resolved(&app, &app.address, admin, &root, HERE).await,
        json!(false)
    );
    let written = current(&app, tenant_id).await;
    assert!(written.revision > first.revision);
    assert!(!Arc::ptr_eq(&first.view, &written.view));
    assert_eq!(
        stored(&written, root_id, HERE),
        Some(SettingValue::Plain(json!(false)))
    );
    assert!(Arc::ptr_eq(&written.view, &current(&app, tenant_id).await.view));

    // A write on another replica (another process: replicas in one process tell each other at
    // commit): the very next operator read here sees it. This replica hears of the write only
    // later (within a second), so the read takes the revision from the database.
    assert_eq!(
        resolved(&app, &app.address, admin, &root, THERE).await,
        Value::Null
    );
    let replica = Server::start(
        &app.db,
        &[
            ("GMP_DATABASE_URL", &app.db.url),
            ("GMP_JWT_SECRET", test_jwt_secret()),
            ("GMP_MASTER_KEY", test_master_key()),
        ],
    );
    let response = app
        .client
        .patch(replica.url(&format!("/api/v1/policies/{root}")))
        .bearer_auth(&admin.access)
        .header("if-match", &etag)
        .json(&json!({"set": {THERE: false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        resolved(&app, &app.address, admin, &root, THERE).await,
        json!(false)
    );
    let elsewhere = current(&app, tenant_id).await;
    assert!(elsewhere.revision > written.revision);
    assert_eq!(
        stored(&elsewhere, root_id, THERE),
        Some(SettingValue::Plain(json!(false)))
    );
}
