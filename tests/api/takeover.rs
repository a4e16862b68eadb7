//! Attacks on devices and secrets, each played against the real server and refused:
//! re-registration takeover, enrolment by a non-admin, secrets sent to a host an editor typed,
//! platform-admin takeover, client numbers that overflow, sessions that outlive their end.

use crate::devices::{TestDevice, enrollment_token, pull, register, register_with};
use crate::helpers::{ADMIN_EMAIL, PASSWORD, Session, TestApp, assert_problem, etag_of};
use crate::jobs::actions;
use crate::policies::{SECRET, root_policy, save, save_ok, seed_settings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

async fn device_list(app: &TestApp, session: &Session, query: &str) -> Vec<Value> {
    let list: Value = app
        .get(&format!("/api/v1/devices{query}"), &session.access)
        .await
        .json()
        .await
        .unwrap();
    list["items"].as_array().unwrap().clone()
}

/// Registers `hardware_id` again with a fresh token: the answer's status and body.
async fn reregister(app: &TestApp, admin: &Session, hardware_id: &str) -> (StatusCode, Value) {
    let token = enrollment_token(app, admin, json!({})).await;
    let response = register_with(app, token["token"].as_str().unwrap(), hardware_id, "appliance").await;
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_known_hardware_id_never_takes_the_device_over() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    save_ok(&app, &tenant.admin, &root, &etag, seed_settings()).await;
    let device = register(&app, &tenant.admin, "HW-VICTIM", "appliance").await;

    // The attacker read the hardware id as a viewer and holds some enrollment token.
    let (status, body) = reregister(&app, &tenant.admin, "HW-VICTIM").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "pending_approval");
    assert_eq!(body["device_id"], device.id.as_str());
    let attacker = TestDevice {
        id: device.id.clone(),
        credential: body["credential"].as_str().unwrap().to_owned(),
    };
    assert_ne!(attacker.credential, device.credential);

    // The live credential keeps working; the new one gets no config, only "wait".
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::OK);
    let waiting = pull(&app, &attacker, None).await;
    assert!(waiting.headers().contains_key("retry-after"));
    let problem = assert_problem(waiting, 403, "registration_pending").await;
    assert!(!problem.to_string().contains(SECRET));

    // Operators see the request in the device list, with what the requester claimed.
    let pending = device_list(&app, &tenant.admin, "?reregistration_pending=true").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["reregistration"]["hostname"], "hw-victim.local");
    assert!(
        device_list(&app, &tenant.admin, "?reregistration_pending=false")
            .await
            .is_empty()
    );

    // A second request while one waits is refused, and consumes nothing.
    let (status, _) = reregister(&app, &tenant.admin, "HW-VICTIM").await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A viewer cannot decide; an editor rejects. The attacker's credential never works.
    let viewer = app.create_operator(&tenant.admin, "viewer").await;
    let editor = app.create_operator(&tenant.admin, "editor").await;
    let reject = format!("/api/v1/devices/{}/reregistration/reject", device.id);
    assert_problem(
        app.post(&reject, Some(&viewer.access), &json!({})).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.post(&reject, Some(&editor.access), &json!({})).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        pull(&app, &attacker, None).await,
        401,
        "invalid_device_credential",
    )
    .await;
    // Still the device's credential (pulling again this soon is only rate-limited).
    assert_problem(pull(&app, &device, None).await, 429, "rate_limited").await;
    assert_problem(
        app.post(&reject, Some(&editor.access), &json!({})).await,
        404,
        "not_found",
    )
    .await;

    let actions = actions(&app, &tenant.admin.access, &device.id).await;
    assert_eq!(
        actions,
        [
            "device.reregistration_rejected",
            "device.reregistration_requested",
            "device.registered"
        ]
    );
}

#[tokio::test]
async fn a_reinstalled_appliance_is_handed_over_once_approved() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let device = register(&app, &tenant.admin, "HW-REINSTALL", "appliance").await;
    let token = enrollment_token(&app, &tenant.admin, json!({})).await;
    let response = app
        .post(
            "/device/v1/register",
            None,
            &json!({"enrollment_token": token["token"], "kind": "appliance", "hardware_id": "HW-REINSTALL",
                    "hostname": "bdr-new.local", "software_version": "13.0.0"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    let reinstalled = TestDevice {
        id: device.id.clone(),
        credential: body["credential"].as_str().unwrap().to_owned(),
    };
    let waiting: Value = app
        .get(
            &format!("/api/v1/devices/{}/reregistration", device.id),
            &tenant.admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(waiting["software_version"], "13.0.0");
    assert_eq!(waiting["enrollment_token_id"], token["id"]);

    let editor = app.create_operator(&tenant.admin, "editor").await;
    let approved = app
        .post(
            &format!("/api/v1/devices/{}/reregistration/approve", device.id),
            Some(&editor.access),
            &json!({}),
        )
        .await;
    assert_eq!(approved.status(), StatusCode::OK);
    let approved: Value = approved.json().await.unwrap();
    assert_eq!(approved["id"], device.id.as_str());
    assert_eq!(approved["hostname"], "bdr-new.local");
    assert_eq!(approved["software_version"], "13.0.0");
    assert!(approved["reregistration"].is_null());

    assert_problem(pull(&app, &device, None).await, 401, "invalid_device_credential").await;
    assert_eq!(pull(&app, &reinstalled, None).await.status(), StatusCode::OK);
    let actions = actions(&app, &tenant.admin.access, &device.id).await;
    assert_eq!(actions[0], "device.reregistration_approved");
}

#[tokio::test]
async fn a_decommissioned_device_stays_decommissioned() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let device = register(&app, &tenant.admin, "HW-RETIRED", "vault").await;
    let retired = app
        .post(
            &format!("/api/v1/devices/{}/decommission", device.id),
            Some(&tenant.admin.access),
            &json!({}),
        )
        .await;
    assert_eq!(retired.status(), StatusCode::OK);
    let token = enrollment_token(&app, &tenant.admin, json!({})).await;
    let again = register_with(&app, token["token"].as_str().unwrap(), "HW-RETIRED", "vault").await;
    assert_problem(again, 409, "device_decommissioned").await;
    let token_now: Value = app
        .get(
            &format!("/api/v1/enrollment-tokens/{}", token["id"].as_str().unwrap()),
            &tenant.admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(token_now["uses"], 0, "a refused registration uses nothing");
    let listed = device_list(&app, &tenant.admin, "").await;
    assert_eq!(listed[0]["status"], "decommissioned");
    assert_problem(pull(&app, &device, None).await, 401, "invalid_device_credential").await;
}

#[tokio::test]
async fn only_admins_enrol_devices() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let editor = app.create_operator(&tenant.admin, "editor").await;
    let response = app
        .post("/api/v1/enrollment-tokens", Some(&editor.access), &json!({}))
        .await;
    assert_problem(response, 403, "forbidden").await;
    let created = app
        .post(
            "/api/v1/enrollment-tokens",
            Some(&tenant.admin.access),
            &json!({}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
}

/// A loopback listener that counts the connections made to it.
fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, seen)
}

#[tokio::test]
async fn the_stored_secret_never_follows_a_new_site_or_company() {
    let app = TestApp::spawn_with(|config| {
        config.connectwise_allow_http = true;
        config.connectwise_allowed_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let tenant = app.create_tenant("Acme").await;
    let editor = app.create_operator(&tenant.admin, "editor").await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    let (_, etag) = save_ok(&app, &tenant.admin, &root, &etag, seed_settings()).await;
    let (port, seen) = counting_listener();
    let evil_site = format!("127.0.0.1:{port}");

    // A new site alone, saved or only validated, is refused before any request goes out.
    for path in [
        format!("/api/v1/policies/{root}"),
        format!("/api/v1/policies/{root}?validate=connectwise"),
    ] {
        let response = app
            .patch(
                &path,
                &editor.access,
                Some(&etag),
                &json!({"set": {"connectwise.site": evil_site}}),
            )
            .await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "set.connectwise.private_key");
        assert_eq!(problem["errors"][0]["code"], "secret_reentry_required");
    }
    let company = save(
        &app,
        &editor,
        &root,
        &etag,
        json!({"set": {"connectwise.company_id": "evil"}}),
    )
    .await;
    assert_eq!(
        assert_problem(company, 422, "validation_failed").await["errors"][0]["code"],
        "secret_reentry_required"
    );

    // A child policy cannot point the inherited secret elsewhere either.
    let child = app
        .post(
            "/api/v1/policies",
            Some(&editor.access),
            &json!({"name": "Client A", "set": {"connectwise.site": evil_site}}),
        )
        .await;
    let problem = assert_problem(child, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "connectwise.site");
    assert_eq!(problem["errors"][0]["code"], "credentials_split");

    // Nor a device value on a real device.
    let device = register(&app, &tenant.admin, "HW-BOUND", "appliance").await;
    let device_url = format!("/api/v1/devices/{}", device.id);
    let device_etag = etag_of(&app.get(&device_url, &editor.access).await);
    let response = app
        .patch(
            &device_url,
            &editor.access,
            Some(&device_etag),
            &json!({"set": {"connectwise.site": evil_site}}),
        )
        .await;
    assert_eq!(
        assert_problem(response, 422, "validation_failed").await["errors"][0]["code"],
        "credentials_split"
    );
    let config: Value = pull(&app, &device, None).await.json().await.unwrap();
    assert_eq!(config["settings"]["connectwise.site"], "na.myconnectwise.invalid");

    // Test Connection with the policy still goes to the stored site only.
    let tested = app
        .post(
            "/api/v1/connectwise/test-connection",
            Some(&editor.access),
            &json!({"policy_id": root}),
        )
        .await;
    assert_ne!(tested.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "no request reached the typed host"
    );

    // Entering the secret again with the new site is the way to move it.
    let (moved, _) = save_ok(
        &app,
        &editor,
        &root,
        &etag,
        json!({"set": {"connectwise.site": "eu.myconnectwise.invalid", "connectwise.private_key": "A-NEW-PRIVATE-KEY-2b8e"}}),
    )
    .await;
    assert_eq!(moved["values"]["connectwise.site"], "eu.myconnectwise.invalid");
}

#[tokio::test]
async fn only_a_platform_admin_changes_a_platform_admin() {
    let app = TestApp::spawn().await;
    // An admin of the platform's own tenant.
    let platform_tenant_admin = app.create_operator(&app.platform, "admin").await;
    let target = format!("/api/v1/operators/{}", app.platform.operator_id);
    let etag = etag_of(&app.get(&target, &platform_tenant_admin.access).await);
    for body in [
        json!({"password": "a takeover passphrase"}),
        json!({"role": "viewer"}),
        json!({"display_name": "Owned"}),
    ] {
        let response = app
            .patch(&target, &platform_tenant_admin.access, Some(&etag), &body)
            .await;
        assert_problem(response, 403, "forbidden").await;
    }
    let deleted = app
        .delete(&target, &platform_tenant_admin.access, Some(&etag))
        .await;
    assert_problem(deleted, 403, "forbidden").await;
    // Nothing changed: the platform admin still signs in with the old password.
    assert_eq!(
        app.login(ADMIN_EMAIL, crate::helpers::ADMIN_PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn client_numbers_out_of_range_are_refused_not_panicked_on() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    for seconds in [i64::MAX, i64::MIN, -1, 0] {
        let response = app
            .post(
                "/api/v1/enrollment-tokens",
                Some(&tenant.admin.access),
                &json!({"expires_in_seconds": seconds}),
            )
            .await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "expires_in_seconds");
    }
    let (root, _) = root_policy(&app, &tenant.admin).await;
    for query in [
        format!("to={}", i32::MIN),
        format!("from={}&to=1", i32::MAX),
        "from=-1".to_owned(),
    ] {
        let response = app
            .get(
                &format!("/api/v1/policies/{root}/diff?{query}"),
                &tenant.admin.access,
            )
            .await;
        assert_problem(response, 422, "validation_failed").await;
    }
    // The server is alive and well.
    assert_eq!(
        app.get("/api/v1/me", &tenant.admin.access).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn access_tokens_end_with_their_session() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;

    // Password change: every earlier access token stops at once.
    let editor = app.create_operator(&tenant.admin, "editor").await;
    let second_sign_in = app.sign_in(&editor.email, PASSWORD).await;
    let changed = app
        .post(
            "/api/v1/me/password",
            Some(&editor.access),
            &json!({"current_password": PASSWORD, "new_password": "another long passphrase"}),
        )
        .await;
    assert!(changed.status().is_success());
    for token in [&editor.access, &second_sign_in.access] {
        assert_problem(app.get("/api/v1/me", token).await, 401, "invalid_token").await;
    }
    let fresh = app.sign_in(&editor.email, "another long passphrase").await;
    assert_eq!(
        app.get("/api/v1/me", &fresh.access).await.status(),
        StatusCode::OK
    );

    // Role change: the old token no longer carries the old role.
    let target = format!("/api/v1/operators/{}", fresh.operator_id);
    let etag = etag_of(&app.get(&target, &tenant.admin.access).await);
    let demoted = app
        .patch(
            &target,
            &tenant.admin.access,
            Some(&etag),
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(demoted.status(), StatusCode::OK);
    let edit = app
        .post(
            "/api/v1/policies",
            Some(&fresh.access),
            &json!({"name": "Sneaky"}),
        )
        .await;
    assert_problem(edit, 401, "invalid_token").await;

    // Sign-out ends the access token too.
    let viewer = app.create_operator(&tenant.admin, "viewer").await;
    let out = app
        .post(
            "/api/v1/auth/logout",
            None,
            &json!({"refresh_token": viewer.refresh}),
        )
        .await;
    assert!(out.status().is_success());
    assert_problem(app.get("/api/v1/me", &viewer.access).await, 401, "invalid_token").await;

    // Deletion.
    let doomed = app.create_operator(&tenant.admin, "editor").await;
    let target = format!("/api/v1/operators/{}", doomed.operator_id);
    let etag = etag_of(&app.get(&target, &tenant.admin.access).await);
    let deleted = app.delete(&target, &tenant.admin.access, Some(&etag)).await;
    assert!(deleted.status().is_success());
    assert_problem(app.get("/api/v1/me", &doomed.access).await, 401, "invalid_token").await;

    // Untouched operators keep working.
    assert_eq!(
        app.get("/api/v1/me", &tenant.admin.access).await.status(),
        StatusCode::OK
    );
}

#[test]
fn debug_output_of_types_carrying_secrets_never_shows_them() {
    use gmp::services::connectwise::RawCredentials;
    use gmp::services::devices::DeviceEdit;
    use gmp::services::policies::PolicyEdit;
    use gmp::services::registration::Registration;
    let values: std::collections::BTreeMap<String, Value> = [
        ("connectwise.private_key".to_owned(), json!(SECRET)),
        ("connectwise.site".to_owned(), json!("na.myconnectwise.invalid")),
    ]
    .into_iter()
    .collect();
    let shown = [
        format!(
            "{:?}",
            PolicyEdit {
                set: values.clone(),
                ..PolicyEdit::default()
            }
        ),
        format!(
            "{:?}",
            DeviceEdit {
                set: values,
                ..DeviceEdit::default()
            }
        ),
        format!(
            "{:?}",
            RawCredentials {
                site: "na.myconnectwise.invalid".into(),
                company_id: "acme".into(),
                public_key: "PUBLIC".into(),
                private_key: SECRET.into(),
            }
        ),
        format!(
            "{:?}",
            Registration {
                enrollment_token: SECRET.into(),
                kind: gmp::domain::device::DeviceKind::Vault,
                hardware_id: "HW".into(),
                hostname: "h".into(),
                software_version: "1".into(),
            }
        ),
    ];
    for text in shown {
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
}

#[tokio::test]
async fn debug_output_of_a_sign_in_never_shows_its_tokens() {
    let app = TestApp::spawn().await;
    let pair = gmp::services::auth::login(&app.state, ADMIN_EMAIL, crate::helpers::ADMIN_PASSWORD, None)
        .await
        .unwrap();
    let text = format!("{pair:?}");
    for token in [&pair.access_token, &pair.refresh_token] {
        assert!(!text.contains(token.as_str()), "{text}");
    }
    assert!(text.contains("<redacted>"), "{text}");
}
