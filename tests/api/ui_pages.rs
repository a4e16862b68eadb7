//! The web UI's device pages over HTTP: search and filters in the URL, tenant isolation, the
//! device page's field table and its device-scoped settings.

use crate::devices::{inherited_report, pull, register, report};
use crate::helpers::{PASSWORD, TestApp};
use crate::ui::{Browser, hidden};
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
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
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
