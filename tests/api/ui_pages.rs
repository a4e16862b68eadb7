//! The web UI's device pages over HTTP: search and filters in the URL, tenant isolation, the
//! device page's field table and its device-scoped settings.

use crate::devices::{inherited_report, pull, register, report};
use crate::helpers::{PASSWORD, TestApp};
use crate::ui_client::{Browser, hidden};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn the_device_list_searches_hostnames_and_never_shows_another_tenants_devices() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("Acme").await;
    let other = app.create_tenant("Other").await;
    let alpha = register(&app, &acme.admin, "ALPHA-1", "appliance").await;
    register(&app, &acme.admin, "BETA-2", "vault").await;
    let foreign = register(&app, &other.admin, "ALPHA-9", "appliance").await;
    let browser = Browser::sign_in(&app, &acme.admin.email, PASSWORD).await;

    let all = browser.page("/devices").await;
    assert!(
        all.contains("alpha-1.local") && all.contains("beta-2.local"),
        "{all}"
    );
    assert!(!all.contains("alpha-9.local"), "another tenant's device");

    let found = browser.page("/devices?q=ALPHA").await;
    assert!(found.contains("alpha-1.local") && !found.contains("beta-2.local"));
    assert!(found.contains("value=\"ALPHA\""), "the filter stays in the form");
    let vaults = browser.page("/devices?kind=vault").await;
    assert!(vaults.contains("beta-2.local") && !vaults.contains("alpha-1.local"));
    let literal = browser.page("/devices?q=%25").await;
    assert!(literal.contains("No device matches."), "% is not a wildcard");

    let page = browser.page(&format!("/devices/{}", alpha.id)).await;
    assert!(page.contains("ALPHA-1") && page.contains("Identity and connectivity"));
    let foreign_page = browser.get(&format!("/devices/{}", foreign.id)).await;
    assert_eq!(foreign_page.status(), StatusCode::NOT_FOUND);
    let csrf = hidden(&page, "csrf");
    let forged = browser
        .post(
            &format!("/devices/{}", foreign.id),
            &[("csrf", &csrf), ("version", "1"), ("billing.enabled", "on")],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_device_page_shows_provenance_and_overrides_and_saves_device_settings() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let device = register(&app, admin, "HW-1", "appliance").await;
    let (root, etag) = crate::policies::root_policy(&app, admin).await;
    let saved = app
        .patch(
            &format!("/api/v1/policies/{root}"),
            &admin.access,
            Some(&etag),
            &json!({"set": {"ticketing.events.disk_usage.enabled": false}}),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    let config: Value = pull(&app, &device, None).await.json().await.unwrap();
    let mut body = inherited_report(&config);
    body["fields"]["ticketing.events.disk_usage.enabled"] = json!({"state": "overridden", "value": true});
    assert_eq!(report(&app, &device, &body).await.status(), StatusCode::OK);

    let browser = Browser::sign_in(&app, &admin.email, PASSWORD).await;
    let path = format!("/devices/{}", device.id);
    let page = browser.page(&path).await;
    assert!(page.contains("Disk Usage: open tickets"), "{page}");
    assert!(page.contains("Default · v2"), "provenance");
    assert!(page.contains("Overridden locally (on)"), "{page}");
    assert!(page.contains(">Adopt</button>") && page.contains(">Reassert</button>"));

    let csrf = hidden(&page, "csrf");
    let version = hidden(&page, "version");
    let reassert = browser
        .post(
            &format!("{path}/fields/reassert"),
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("path", "ticketing.events.disk_usage.enabled"),
            ],
        )
        .await;
    assert_eq!(reassert.status(), StatusCode::SEE_OTHER);
    let api: Value = app
        .get(&format!("/api/v1/devices/{}", device.id), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        api.to_string().contains("ticketing.events.disk_usage.enabled"),
        "reasserted: {api}"
    );

    // Service Ticket Company and billing, saved as the device's own values.
    let page = browser.page(&path).await;
    let version = hidden(&page, "version");
    let saved = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("policy_id", &root),
                ("ticketing.service_ticket_company", "7:Client Seven"),
                ("billing.enabled", "on"),
                ("billing.company", "7:Client Seven"),
                ("billing.agreement", "71:Backup Services"),
                ("billing.addition", "501:OFFSITE-GB"),
            ],
        )
        .await;
    // No ConnectWise credentials yet: saved unchecked, and the page says so.
    assert_eq!(saved.status(), StatusCode::OK);
    let saved = saved.text().await.unwrap();
    assert!(
        saved.contains("id=\"saved\"") && saved.contains("id=\"save-warnings\""),
        "{saved}"
    );
    let api: Value = app
        .get(&format!("/api/v1/devices/{}", device.id), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let text = api.to_string();
    assert!(
        text.contains("Client Seven") && text.contains("OFFSITE-GB"),
        "{api}"
    );
    let page = browser.page(&format!("{path}?saved=1")).await;
    assert!(page.contains("Saved."));
    assert!(page.contains("value=\"7:Client Seven\" selected"), "{page}");

    // Billing enabled without an addition is refused, with the field named.
    let version = hidden(&page, "version");
    let refused = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("policy_id", &root),
                ("billing.enabled", "on"),
                ("billing.company", "7:Client Seven"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.unwrap().contains("billing.agreement"));

    // A viewer reads the page without controls.
    let viewer = app.create_operator(admin, "viewer").await;
    let page = Browser::sign_in(&app, &viewer.email, PASSWORD)
        .await
        .page(&path)
        .await;
    assert!(!page.contains(">Adopt</button>") && !page.contains("id=\"save-device\""));
}

/// The number shown in `data-count="{name}"` of the dashboard row of `policy`.
fn shown_count(html: &str, policy: &str, name: &str) -> u64 {
    let row = html
        .split("<tr data-policy=\"")
        .find(|r| r.starts_with(policy))
        .unwrap_or_else(|| panic!("no row for {policy}"));
    let row = &row[..row.find("</tr>").unwrap()];
    let marker = format!("data-count=\"{name}\">");
    let start = row.find(&marker).unwrap_or_else(|| panic!("no {name} in {row}")) + marker.len();
    row[start..].split('<').next().unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn the_dashboard_shows_the_apis_numbers_and_recent_changes() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let synced = register(&app, admin, "HW-1", "appliance").await;
    register(&app, admin, "HW-2", "appliance").await;
    let config: Value = pull(&app, &synced, None).await.json().await.unwrap();
    assert_eq!(
        report(&app, &synced, &inherited_report(&config)).await.status(),
        StatusCode::OK
    );
    let other = app.create_tenant("Other").await;
    register(&app, &other.admin, "HW-9", "vault").await;

    let viewer = app.create_operator(admin, "viewer").await;
    let browser = Browser::sign_in(&app, &viewer.email, PASSWORD).await;
    let root = browser.get("/").await;
    assert_eq!(root.headers()["location"], "/dashboard");
    let html = browser.page("/dashboard").await;
    let api: Value = app
        .get("/api/v1/dashboard/policies", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let policies = api["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1, "only this tenant's policies: {api}");
    for policy in policies {
        let id = policy["policy_id"].as_str().unwrap();
        for name in [
            "assigned",
            "in_sync",
            "pending",
            "failed",
            "overridden",
            "violations",
            "stale",
        ] {
            assert_eq!(
                Some(shown_count(&html, id, name)),
                policy[name].as_u64(),
                "{name} of {id}"
            );
        }
        assert_eq!(policy["assigned"], 2);
        assert_eq!(policy["in_sync"], 1);
        assert!(html.contains(&format!("href=\"/devices?policy={id}\"")));
    }
    assert!(
        html.contains("<td>device.registered</td>"),
        "recent changes: {html}"
    );
    let filtered = browser.page("/dashboard?action=enrollment_token.created").await;
    assert!(filtered.contains("<td>enrollment_token.created</td>"));
    assert!(
        !filtered.contains("<td>device.registered</td>"),
        "the action filter applies"
    );
    assert!(!html.contains("hw-9"), "nothing of another tenant");
}

#[tokio::test]
async fn admins_create_tokens_shown_once_manage_operators_and_set_the_pull_interval() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let editor = app.create_operator(admin, "editor").await;
    let as_editor = Browser::sign_in(&app, &editor.email, PASSWORD).await;
    assert!(
        !as_editor.page("/dashboard").await.contains("href=\"/admin\""),
        "no Admin link"
    );
    assert_eq!(as_editor.get("/admin").await.status(), StatusCode::FORBIDDEN);

    let browser = Browser::sign_in(&app, &admin.email, PASSWORD).await;
    let page = browser.page("/admin").await;
    assert!(page.contains("href=\"/admin\""));
    let csrf = hidden(&page, "csrf");
    let refused = browser.post("/admin/tokens", &[("label", "forged")]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "no CSRF token");

    let created = browser
        .post(
            "/admin/tokens",
            &[
                ("csrf", &csrf),
                ("label", "Client A installs"),
                ("max_uses", "2"),
                ("expires_in_hours", "24"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::OK);
    assert_eq!(created.headers()["cache-control"], "no-store");
    let html = created.text().await.unwrap();
    let start =
        html.find("<code id=\"new-token\">").expect("the token is shown") + "<code id=\"new-token\">".len();
    let token = html[start..].split('<').next().unwrap().to_owned();
    let registered = crate::devices::register_with(&app, &token, "HW-7", "appliance").await;
    assert_eq!(
        registered.status(),
        StatusCode::CREATED,
        "the shown token enrols a device"
    );
    let again = browser.page("/admin").await;
    assert!(!again.contains(&token), "shown only once");
    assert!(again.contains("Client A installs") && again.contains("1 of 2"));

    // Revoke it.
    let id_marker = "name=\"id\" value=\"";
    let revoke_form = &again[again.find("/admin/tokens/revoke").unwrap()..];
    let start = revoke_form.find(id_marker).unwrap() + id_marker.len();
    let id = revoke_form[start..].split('"').next().unwrap().to_owned();
    let revoked = browser
        .post("/admin/tokens/revoke", &[("csrf", &csrf), ("id", &id)])
        .await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert!(browser.page("/admin").await.contains("<td>revoked</td>"));

    // A new viewer, promoted to editor: the promotion ends the viewer's open session.
    let email = "new.viewer@acme.test";
    let added = browser
        .post(
            "/admin/operators",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("role", "viewer"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let viewer = Browser::sign_in(&app, email, PASSWORD).await;
    assert_eq!(viewer.get("/dashboard").await.status(), StatusCode::OK);
    let page = browser.page("/admin").await;
    let row = &page[page.find(email).unwrap()..];
    let id = hidden(row, "id");
    let version = hidden(row, "version");
    let promoted = browser
        .post(
            "/admin/operators/role",
            &[
                ("csrf", &csrf),
                ("id", &id),
                ("version", &version),
                ("role", "editor"),
            ],
        )
        .await;
    assert_eq!(promoted.status(), StatusCode::SEE_OTHER);
    assert_eq!(viewer.get("/dashboard").await.headers()["location"], "/login");

    // The pull interval, checked by the service.
    let page = browser.page("/admin").await;
    let version = hidden(&page[page.find("/admin/pull-interval").unwrap()..], "version");
    let bad = browser
        .post(
            "/admin/pull-interval",
            &[("csrf", &csrf), ("version", &version), ("minutes", "0")],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("pull_interval_seconds"));
    let set = browser
        .post(
            "/admin/pull-interval",
            &[("csrf", &csrf), ("version", &version), ("minutes", "30")],
        )
        .await;
    assert_eq!(set.status(), StatusCode::SEE_OTHER);
    let settings: Value = app
        .get("/api/v1/device-settings", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(settings["pull_interval_seconds"], 1800);
}

#[tokio::test]
async fn versions_show_a_side_by_side_diff_and_roll_back() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = crate::policies::root_policy(&app, admin).await;
    for (etag, board) in [
        (etag.clone(), "1:Help Desk"),
        ("\"2\"".to_owned(), "2:Escalations"),
    ] {
        let (id, name) = board.split_once(':').unwrap();
        let saved = app
            .patch(
                &format!("/api/v1/policies/{root}"),
                &admin.access,
                Some(&etag),
                // A board comes with its statuses (the board rule); nothing to check against
                // ConnectWise in this test.
                &json!({"set": {
                    "ticketing.events.failed_backup.service_board": {"id": id.parse::<i64>().unwrap(), "name": name},
                    "ticketing.events.failed_backup.new_status": {"id": 100, "name": "New"},
                    "ticketing.events.failed_backup.closed_status": {"id": 200, "name": "Closed"},
                }, "comment": format!("board {name}")}),
            )
            .await;
        assert_eq!(saved.status(), StatusCode::OK);
    }
    let browser = Browser::sign_in(&app, &admin.email, PASSWORD).await;
    let page = browser
        .page(&format!("/policies/{root}/versions?from=2&to=3"))
        .await;
    assert!(page.contains("Version 2 → version 3"));
    assert!(
        page.contains("<td>Help Desk</td><td>Escalations</td>"),
        "side by side: {page}"
    );
    assert!(page.contains("board Escalations") && page.contains("v3 (current)"));

    let csrf = hidden(&page, "csrf");
    let stale = browser
        .post(
            &format!("/policies/{root}/rollback"),
            &[("csrf", &csrf), ("version", "2"), ("to", "2")],
        )
        .await;
    assert_eq!(
        stale.status(),
        StatusCode::PRECONDITION_FAILED,
        "the page's version is checked"
    );
    let rolled = browser
        .post(
            &format!("/policies/{root}/rollback"),
            &[("csrf", &csrf), ("version", "3"), ("to", "2")],
        )
        .await;
    assert_eq!(rolled.status(), StatusCode::SEE_OTHER);
    let policy: Value = app
        .get(&format!("/api/v1/policies/{root}"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(policy["version"], 4);
    assert_eq!(
        policy["values"]["ticketing.events.failed_backup.service_board"]["name"],
        "Help Desk"
    );

    let viewer = app.create_operator(admin, "viewer").await;
    let as_viewer = Browser::sign_in(&app, &viewer.email, PASSWORD).await;
    let page = as_viewer.page(&format!("/policies/{root}/versions")).await;
    assert!(!page.contains("Roll back to"), "viewers cannot roll back");
}

#[tokio::test]
async fn export_downloads_a_file_and_import_shows_the_diff_before_applying() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root, etag) = crate::policies::root_policy(&app, admin).await;
    let mut settings = crate::policies::seed_settings();
    settings["comment"] = json!("seed");
    let saved = app
        .patch(
            &format!("/api/v1/policies/{root}"),
            &admin.access,
            Some(&etag),
            &settings,
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    let child = app
        .post(
            "/api/v1/policies",
            Some(&admin.access),
            &json!({"name": "Client A", "parent_id": root}),
        )
        .await;
    let child: Value = child.json().await.unwrap();
    let child = child["id"].as_str().unwrap().to_owned();

    let viewer = app.create_operator(admin, "viewer").await;
    let as_viewer = Browser::sign_in(&app, &viewer.email, PASSWORD).await;
    let page = as_viewer.page(&format!("/policies/{root}")).await;
    assert!(
        !page.contains("id=\"import-form\""),
        "viewers export but do not import"
    );
    let csrf = hidden(&page, "csrf");
    let plain = as_viewer
        .post(&format!("/policies/{root}/export"), &[("csrf", &csrf)])
        .await;
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(
        plain.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"Default-v2")
    );
    let document: Value = plain.json().await.unwrap();
    assert!(document["secrets"].is_null(), "no secrets without a passphrase");
    let with_secrets = as_viewer
        .post(
            &format!("/policies/{root}/export"),
            &[("csrf", &csrf), ("passphrase", "a long export passphrase")],
        )
        .await;
    assert_eq!(
        with_secrets.status(),
        StatusCode::FORBIDDEN,
        "secrets are for admins"
    );

    let browser = Browser::sign_in(&app, &admin.email, PASSWORD).await;
    let page = browser.page(&format!("/policies/{root}")).await;
    let csrf = hidden(&page, "csrf");
    let sealed = browser
        .post(
            &format!("/policies/{root}/export"),
            &[("csrf", &csrf), ("passphrase", "a long export passphrase")],
        )
        .await;
    assert_eq!(sealed.status(), StatusCode::OK);
    let text = sealed.text().await.unwrap();
    assert!(!text.contains(crate::policies::SECRET), "the secret is encrypted");

    // Import into the child: a dry run first, then apply with the passphrase typed again.
    let path = format!("/policies/{child}/import");
    let dry = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("document", &text),
                ("passphrase", "a long export passphrase"),
            ],
        )
        .await;
    assert_eq!(dry.status(), StatusCode::OK);
    let preview = dry.text().await.unwrap();
    assert!(
        preview.contains("values.connectwise.site") && preview.contains("Apply the import"),
        "{preview}"
    );
    assert!(
        !preview.contains("a long export passphrase"),
        "the passphrase is not echoed"
    );
    let before: Value = app
        .get(&format!("/api/v1/policies/{child}"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before["version"], 1, "a dry run saves nothing");
    let version = hidden(&preview, "version");
    let applied = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("document", &text),
                ("version", &version),
                ("apply", "1"),
                ("passphrase", "a long export passphrase"),
            ],
        )
        .await;
    assert_eq!(applied.status(), StatusCode::SEE_OTHER);
    let after: Value = app
        .get(&format!("/api/v1/policies/{child}"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["version"], 2);
    assert_eq!(after["values"]["connectwise.private_key"]["set"], true, "{after}");

    let broken = browser
        .post(&path, &[("csrf", &csrf), ("document", "not json")])
        .await;
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    assert!(broken.text().await.unwrap().contains("not a GMP policy document"));
}

#[tokio::test]
async fn platform_admins_create_tenants_and_tenant_admins_cannot() {
    let app = TestApp::spawn().await;
    let platform = Browser::sign_in(&app, crate::helpers::ADMIN_EMAIL, crate::helpers::ADMIN_PASSWORD).await;
    let page = platform.page("/admin").await;
    assert!(page.contains("id=\"tenant-list\""));
    let csrf = hidden(&page, "csrf");
    let created = platform
        .post(
            "/admin/tenants",
            &[
                ("csrf", &csrf),
                ("name", "Beta MSP"),
                ("admin_email", "owner@beta.test"),
                ("admin_password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert!(platform.page("/admin").await.contains("Beta MSP"));
    let owner = Browser::sign_in(&app, "owner@beta.test", PASSWORD).await;
    let page = owner.page("/admin").await;
    assert!(
        !page.contains("id=\"tenant-list\""),
        "a tenant admin sees no tenants"
    );
    assert!(!page.contains("Beta MSP</th>"));
    let csrf = hidden(&page, "csrf");
    let refused = owner
        .post(
            "/admin/tenants",
            &[
                ("csrf", &csrf),
                ("name", "Gamma"),
                ("admin_email", "owner@gamma.test"),
                ("admin_password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}
