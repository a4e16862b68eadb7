//! The source document's flow in a real browser (Chromium through chromedriver): sign in,
//! enter the ConnectWise credentials, Test Connection against the ConnectWise mock, enable two
//! event classes choosing board and statuses from the dropdowns, save, see a registered device
//! inherit the values, set its Service Ticket Company and billing, and check the dashboard's
//! numbers against the API's. A screenshot of each page goes to `target/ui-screenshots/`.

use crate::connectwise_mock::MockConnectWise;
use crate::devices::{inherited_report, pull, register, report};
use crate::helpers::{PASSWORD, TestApp};
use crate::policies::root_policy;
use crate::webdriver::Browser;
use serde_json::{Value, json};

async fn app_with_mock() -> (TestApp, MockConnectWise) {
    let mock = MockConnectWise::start().await;
    let app = TestApp::spawn_with(|config| {
        config.connectwise_allow_http = true;
        config.connectwise_allowed_hosts = vec!["127.0.0.1".into()];
        config.connectwise_timeout_seconds = 2;
    })
    .await;
    (app, mock)
}

#[tokio::test]
async fn the_source_documents_flow_works_in_a_browser() {
    let (app, mock) = app_with_mock().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let tenant = app.create_tenant("Acme MSP").await;
    let admin = &tenant.admin;

    // Signed out, the portal sends the browser to the sign-in page.
    browser.goto(&app.url("/")).await;
    assert!(browser.current_url().await.ends_with("/login"));
    browser.screenshot("login").await;
    browser.type_into("#email", &admin.email).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.find("#policy-counts").await;
    assert!(browser.current_url().await.ends_with("/dashboard"));

    // ConnectWise Settings: credentials, Test Connection, save.
    browser.click("a[href='/policies']").await;
    browser.find("#cw-title").await;
    browser.type_into("#connectwise-site", &mock.site).await;
    browser.type_into("#connectwise-company_id", "acme").await;
    browser.type_into("#connectwise-public_key", "PubKey123").await;
    browser
        .type_into("#connectwise-private_key", "the-private-key")
        .await;
    browser.click("#test-connection").await;
    let answer = browser.wait_for_text("#test-answer", "Connected").await;
    assert!(answer.contains("ConnectWise"), "{answer}");
    browser.screenshot("policy-test-connection").await;
    browser.type_into("#comment", "ConnectWise credentials").await;
    browser.click("#save").await;
    browser.wait_for_text("#saved", "Saved as version 2").await;
    assert!(
        browser
            .text("#secret-state")
            .await
            .starts_with("Set · changed on")
    );

    // Ticketing Settings: two event classes, board then statuses, from ConnectWise.
    let row = |class: &str, leaf: &str| format!("#ticketing-events-{class}-{leaf}");
    for (class, board, new, closed) in [
        ("failed_backup", "1:", "10:", "19:"),
        ("disk_usage", "2:", "20:", "29:"),
    ] {
        browser.click(&row(class, "enabled")).await;
        browser.choose(&row(class, "service_board"), board).await;
        // The statuses follow the board: they load when it is chosen.
        browser.choose(&row(class, "new_status"), new).await;
        browser.choose(&row(class, "closed_status"), closed).await;
    }
    let closed_option = browser
        .text(&format!(
            "{} option[value^='19:']",
            row("failed_backup", "closed_status")
        ))
        .await;
    assert!(
        closed_option.contains("(closed)"),
        "closed statuses are marked: {closed_option}"
    );
    browser
        .type_into("#comment", "tickets for failed backups and disk usage")
        .await;
    browser.click("#save").await;
    browser.wait_for_text("#saved", "Saved as version 3").await;
    // Tall enough to show the whole form (the README shows these screenshots).
    browser.resize(1280, 1500).await;
    browser.screenshot("policy-settings").await;

    let (root, _) = root_policy(&app, admin).await;
    let policy: Value = app
        .get(&format!("/api/v1/policies/{root}"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let values = &policy["values"];
    assert_eq!(values["ticketing.events.failed_backup.enabled"], true);
    assert_eq!(values["ticketing.events.failed_backup.service_board"]["id"], 1);
    assert_eq!(values["ticketing.events.failed_backup.closed_status"]["id"], 19);
    assert_eq!(values["ticketing.events.disk_usage.new_status"]["id"], 20);
    assert_eq!(values["connectwise.private_key"]["set"], true);

    // Import Settings: Default's exported file, uploaded into a client policy, diff first.
    // (with its API Secret, encrypted: a client policy's credentials come with their secret).
    let passphrase = "a long export passphrase";
    let exported = app
        .post(
            &format!("/api/v1/policies/{root}/export"),
            Some(&admin.access),
            &serde_json::json!({"passphrase": passphrase}),
        )
        .await
        .text()
        .await
        .unwrap();
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), &exported).unwrap();
    let child = app
        .post(
            "/api/v1/policies",
            Some(&admin.access),
            &serde_json::json!({"name": "Client A", "parent_id": root}),
        )
        .await;
    let child: Value = child.json().await.unwrap();
    browser
        .goto(&app.url(&format!("/policies/{}", child["id"].as_str().unwrap())))
        .await;
    browser.send_file("#import-file", file.path()).await;
    browser.wait_for_value("#import-document", "gmp-policy").await;
    browser.type_into("#import-passphrase", passphrase).await;
    browser.click("#import").await;
    let diff = browser.text("#import-diff").await;
    assert!(
        diff.contains("ticketing.events.failed_backup.service_board"),
        "{diff}"
    );
    browser.screenshot("import-diff").await;
    browser.type_into("#apply-passphrase", passphrase).await;
    browser.click("#apply-import").await;
    browser.wait_for_text("#saved", "Saved as version 2").await;

    let device = register(&app, admin, "APPLIANCE-1", "appliance").await;

    // On the device page: Service Ticket Company and Billing Integration (cascading).
    browser.click("a[href='/devices']").await;
    browser.click("a[href^='/devices/']").await;
    browser.find("#field-table").await;
    // Typing filters a long list.
    browser
        .type_into(
            "#cell-ticketing-service_ticket_company .option-filter",
            "company 1",
        )
        .await;
    let company = "#ticketing-service_ticket_company";
    assert_eq!(
        browser
            .property(&format!("{company} option[value^='2:']"), "hidden")
            .await,
        true
    );
    assert_eq!(
        browser
            .property(&format!("{company} option[value^='1:']"), "hidden")
            .await,
        false
    );
    browser.choose(company, "1:").await;
    browser.click("#billing-enabled").await;
    browser.choose("#billing-company", "1:").await;
    browser.choose("#billing-agreement", "71:").await;
    browser.choose("#billing-addition", "501:").await;
    browser.click("#save-device").await;
    browser.wait_for_text("#saved", "Saved").await;
    browser.resize(1280, 1700).await;
    browser.screenshot("device").await;
    let api: Value = app
        .get(&format!("/api/v1/devices/{}", device.id), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let text = api.to_string();
    assert!(
        text.contains("OFFSITE-GB") && text.contains("Backup Services"),
        "{api}"
    );

    browser.resize(1280, 800).await;
    browser.goto(&app.url("/devices")).await;
    browser.find("#device-list").await;
    browser.screenshot("devices").await;

    // The device inherits the policy's values, with its own settings; it applies them, and
    // the dashboard's numbers equal the API's.
    let config: Value = pull(&app, &device, None).await.json().await.unwrap();
    let settings = &config["settings"];
    assert_eq!(
        settings["ticketing.events.failed_backup.service_board"]["id"], 1,
        "{config}"
    );
    assert_eq!(
        settings["connectwise.private_key"], "the-private-key",
        "the device gets the secret"
    );
    assert_eq!(settings["billing.addition"]["id"], 501, "{config}");
    assert_eq!(settings["ticketing.service_ticket_company"]["id"], 1, "{config}");
    let applied = report(&app, &device, &inherited_report(&config)).await;
    assert_eq!(applied.status(), reqwest::StatusCode::OK);
    browser.goto(&app.url("/dashboard")).await;
    let api: Value = app
        .get("/api/v1/dashboard/policies", &admin.access)
        .await
        .json()
        .await
        .unwrap();
    for policy in api["policies"].as_array().unwrap() {
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
            let shown = browser
                .text(&format!("tr[data-policy='{id}'] [data-count='{name}']"))
                .await;
            assert_eq!(shown, policy[name].to_string(), "{name} of {id}");
        }
        let expected = if id == root { 1 } else { 0 };
        assert_eq!(policy["in_sync"], expected, "{id}");
    }
    browser.screenshot("dashboard").await;

    // Who overrides a field: the device now runs a board of its own; the dashboard's field
    // picker leads to it, and from there to who still inherits that field.
    let board = "ticketing.events.failed_backup.service_board";
    let mut local = inherited_report(&config);
    local["fields"][board] = json!({"state": "overridden", "value": {"id": 2, "name": "Local Desk"}});
    assert_eq!(
        report(&app, &device, &local).await.status(),
        reqwest::StatusCode::OK
    );
    browser.goto(&app.url("/dashboard")).await;
    browser.type_into("#field", board).await;
    browser.click("#who-overrides").await;
    let row = browser
        .wait_for_text("#field-devices tbody", "appliance-1.local")
        .await;
    assert!(row.contains("Local Desk") && row.contains("Overridden"), "{row}");
    browser.screenshot("who-overrides").await;
    browser.click("#other-question").await;
    browser.wait_for_text("#field-devices tbody", "No device.").await;

    // Usable at phone width: the page still renders its table (scrolling in its box).
    browser.resize(390, 844).await;
    browser.goto(&app.url(&format!("/policies/{root}"))).await;
    browser.find("#ticketing-title").await;
    browser.screenshot("policy-settings-phone").await;

    // Sign-out ends the session.
    browser.resize(1280, 800).await;
    browser.click("button.link[type=submit]").await;
    browser.find("#email").await;
    browser.goto(&app.url("/policies")).await;
    assert!(browser.current_url().await.ends_with("/login"));
}

#[tokio::test]
async fn a_viewer_sees_the_policy_read_only_in_a_browser() {
    let (app, _mock) = app_with_mock().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let tenant = app.create_tenant("Acme MSP").await;
    let viewer = app.create_operator(&tenant.admin, "viewer").await;
    browser.goto(&app.url("/login")).await;
    browser.type_into("#email", &viewer.email).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.find("#policy-counts").await;
    browser.click("a[href='/policies']").await;
    browser.find("#cw-title").await;
    assert!(browser.try_find("#save").await.is_none(), "no save button");
    assert!(browser.try_find("#test-connection").await.is_none());
    assert!(
        browser.try_find("fieldset[disabled]").await.is_some(),
        "controls are read-only"
    );
    browser.screenshot("policy-viewer").await;
}
