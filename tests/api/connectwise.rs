//! The ConnectWise client against the mock: Test Connection, lookups, retries, the SSRF guard
//! and checking references.

use crate::connectwise_mock::{CODEBASE, MockConnectWise};
use crate::helpers::{Session, TestApp, assert_problem, etag_of};
use crate::policies::{SECRET, root_policy, save_ok, seed_settings};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const CLIENT_ID: &str = "3f1c9a2e-test-client-id";

async fn app_allowing_mock(cache_seconds: u64) -> TestApp {
    TestApp::spawn_with(|config| {
        config.connectwise_client_id = CLIENT_ID.into();
        config.connectwise_allow_http = true;
        config.connectwise_allowed_hosts = vec!["127.0.0.1".into()];
        config.connectwise_timeout_seconds = 2;
        config.connectwise_cache_seconds = cache_seconds;
    })
    .await
}

fn credentials(site: &str) -> Value {
    json!({"site": site, "company_id": "acme", "public_key": "PubKey123", "private_key": SECRET})
}

async fn test_connection(app: &TestApp, session: &Session, body: &Value) -> reqwest::Response {
    app.post("/api/v1/connectwise/test-connection", Some(&session.access), body)
        .await
}

/// A tenant whose root policy holds the seed settings, pointed at `site`.
async fn tenant_on(app: &TestApp, site: &str) -> (Session, String) {
    let tenant = app.create_tenant("Acme").await;
    let (root, etag) = root_policy(app, &tenant.admin).await;
    let mut settings = seed_settings();
    settings["set"]["connectwise.site"] = json!(site);
    // The seed's boards are not the mock's: saved unchecked, for the lookups and checks below.
    let unchecked = format!("{root}?validate=false");
    save_ok(app, &tenant.admin, &unchecked, &etag, settings).await;
    (tenant.admin, root)
}

#[tokio::test]
async fn test_connection_succeeds_and_sends_what_connectwise_expects() {
    let mock = MockConnectWise::start().await;
    let app = app_allowing_mock(60).await;
    let tenant = app.create_tenant("Acme").await;
    let response = test_connection(&app, &tenant.admin, &credentials(&mock.site)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (
            body["ok"].as_bool(),
            body["version"].as_str(),
            body["is_cloud"].as_bool()
        ),
        (Some(true), Some("v2025.1.10431"), Some(true))
    );
    assert!(body["latency_ms"].is_u64());

    let requests = mock.requests();
    assert_eq!(
        requests[0].path, "/login/companyinfo/acme",
        "the codebase is looked up first"
    );
    let info = requests
        .iter()
        .find(|r| r.path.ends_with("/system/info"))
        .unwrap();
    assert_eq!(info.path, format!("/{CODEBASE}apis/3.0/system/info"));
    assert_eq!(
        info.headers["authorization"],
        format!("Basic {}", BASE64.encode(format!("acme+PubKey123:{SECRET}")))
    );
    assert_eq!(info.headers["clientid"], CLIENT_ID);
    assert_eq!(
        info.headers["accept"],
        "application/vnd.connectwise.com+json; version=2025.8"
    );

    // The codebase is cached per site and company.
    mock.clear();
    test_connection(&app, &tenant.admin, &credentials(&mock.site)).await;
    assert!(mock.requests().iter().all(|r| !r.path.starts_with("/login/")));
}

#[tokio::test]
async fn a_failed_codebase_lookup_falls_back_to_the_usual_codebase() {
    let mock = MockConnectWise::start().await;
    mock.set(|b| b.companyinfo_found = false);
    let app = app_allowing_mock(60).await;
    let tenant = app.create_tenant("Acme").await;
    let body: Value = test_connection(&app, &tenant.admin, &credentials(&mock.site))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["ok"], true);
    assert!(mock.api_requests()[0].path.starts_with("/v4_6_release/apis/3.0/"));
}

#[tokio::test]
async fn every_failure_has_its_reason_and_a_sentence() {
    let mock = MockConnectWise::start().await;
    let app = app_allowing_mock(60).await;
    let tenant = app.create_tenant("Acme").await;
    for (status, reason) in [
        (401, "invalid_credentials"),
        (403, "insufficient_permissions"),
        (404, "unknown_site_or_company"),
    ] {
        mock.set(|b| b.status = status);
        mock.clear();
        let body: Value = test_connection(&app, &tenant.admin, &credentials(&mock.site))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (body["ok"].as_bool(), body["reason"].as_str()),
            (Some(false), Some(reason)),
            "{status}"
        );
        assert!(body["detail"].as_str().unwrap().len() > 20);
        assert_eq!(mock.api_requests().len(), 1, "{status} is not retried");
    }
    mock.set(|b| {
        b.status = 200;
        b.rate_limited_calls = 10;
        b.retry_after = 600;
    });
    let body: Value = test_connection(&app, &tenant.admin, &credentials(&mock.site))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["reason"], "rate_limited");
    assert!(body["detail"].as_str().unwrap().contains("600"));
    mock.set(|b| {
        b.rate_limited_calls = 0;
        b.server_errors = 10;
    });
    let body: Value = test_connection(&app, &tenant.admin, &credentials(&mock.site))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["reason"], "unexpected_response");
    mock.set(|b| {
        b.server_errors = 0;
        b.delay = Duration::from_secs(4);
    });
    let body: Value = test_connection(&app, &tenant.admin, &credentials(&mock.site))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["reason"], "timeout");

    // Nothing listens on the port: no connection (see tests/api/messages.rs).
    let body: Value = test_connection(&app, &tenant.admin, &credentials("127.0.0.1:9"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["reason"], "network_unreachable");
    // A name that does not resolve.
    let body: Value = test_connection(&app, &tenant.admin, &credentials("no-such-host.invalid"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["reason"], "dns_error");
}

#[tokio::test]
async fn a_site_that_does_not_speak_tls_is_a_tls_error() {
    let mock = MockConnectWise::start().await;
    let app = TestApp::spawn_with(|config| {
        config.connectwise_allowed_hosts = vec!["127.0.0.1".into()];
        config.connectwise_timeout_seconds = 2;
    })
    .await;
    let tenant = app.create_tenant("Acme").await;
    let body: Value = test_connection(&app, &tenant.admin, &credentials(&mock.site))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (body["ok"].as_bool(), body["reason"].as_str()),
        (Some(false), Some("tls_error")),
        "{body}"
    );
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_server_errors_retried_a_bounded_number_of_times() {
    let mock = MockConnectWise::start().await;
    let app = app_allowing_mock(0).await;
    let (admin, root) = tenant_on(&app, &mock.site).await;
    let boards = format!("/api/v1/connectwise/boards?policy_id={root}");

    mock.set(|b| {
        b.rate_limited_calls = 1;
        b.retry_after = 1;
    });
    let started = std::time::Instant::now();
    let response = app.get(&boards, &admin.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(mock.api_requests().len(), 3, "429, then the two pages");

    mock.clear();
    mock.set(|b| b.server_errors = 100);
    let failed = app.get(&boards, &admin.access).await;
    let problem = assert_problem(failed, 502, "connectwise_unavailable").await;
    assert!(!problem.to_string().contains(SECRET));
    assert_eq!(mock.api_requests().len(), 3, "three attempts, no more");

    mock.clear();
    mock.set(|b| {
        b.server_errors = 0;
        b.status = 403;
    });
    assert_problem(
        app.get(&boards, &admin.access).await,
        502,
        "connectwise_unavailable",
    )
    .await;
    assert_eq!(mock.api_requests().len(), 1, "4xx is never retried");
}

#[tokio::test]
async fn lookups_page_normalise_filter_and_cache() {
    let mock = MockConnectWise::start().await;
    let app = app_allowing_mock(1).await;
    let (admin, root) = tenant_on(&app, &mock.site).await;

    let companies: Value = app
        .get(
            &format!("/api/v1/connectwise/companies?policy_id={root}"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = companies["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Company 1", "Company 2", "Company 3", "Company 4", "Company 5"],
        "all three pages"
    );
    assert_eq!(
        companies["items"][0],
        json!({"id": 1, "name": "Company 1", "identifier": "Company1"})
    );
    let pages: Vec<(String, String)> = mock
        .api_requests()
        .iter()
        .map(|r| (r.query["page"].clone(), r.query["pageSize"].clone()))
        .collect();
    assert_eq!(pages[0], ("1".into(), "1000".into()), "asks for the largest page");
    assert_eq!(pages.len(), 3, "then follows Link rel=next");

    // Cached: no new request within the time to live, a new one after it.
    mock.clear();
    app.get(
        &format!("/api/v1/connectwise/companies?policy_id={root}"),
        &admin.access,
    )
    .await;
    assert!(mock.api_requests().is_empty(), "served from the cache");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.get(
        &format!("/api/v1/connectwise/companies?policy_id={root}"),
        &admin.access,
    )
    .await;
    assert_eq!(mock.api_requests().len(), 3, "expired, fetched again");

    let boards: Value = app
        .get(
            &format!("/api/v1/connectwise/boards?policy_id={root}"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<i64> = boards["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2], "inactive and project boards hidden");
    let all: Value = app
        .get(
            &format!(
                "/api/v1/connectwise/boards?policy_id={root}&include_inactive=true&include_project=true"
            ),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    let statuses: Value = app
        .get(
            &format!("/api/v1/connectwise/statuses?policy_id={root}&board_id=1"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    let closed: Vec<bool> = statuses["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["closed"].as_bool().unwrap())
        .collect();
    assert_eq!(closed, [false, false, true]);
    let agreements: Value = app
        .get(
            &format!("/api/v1/connectwise/agreements?policy_id={root}&company_id=1"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(agreements["items"][0]["name"], "Backup Services");
    let agreement_query = mock
        .api_requests()
        .into_iter()
        .find(|r| r.path.ends_with("/finance/agreements"))
        .unwrap();
    assert_eq!(agreement_query.query["conditions"], "company/id=1");
    let additions: Value = app
        .get(
            &format!("/api/v1/connectwise/additions?policy_id={root}&agreement_id=71"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        additions["items"][0],
        json!({"id": 501, "name": "OFFSITE-GB", "quantity": 120.5, "agreement_id": 71})
    );
    let everything = format!("{companies}{boards}{statuses}{agreements}{additions}");
    assert!(!everything.contains(SECRET));
}

#[tokio::test]
async fn search_terms_cannot_inject_conditions() {
    let mock = MockConnectWise::start().await;
    let app = app_allowing_mock(60).await;
    let (admin, root) = tenant_on(&app, &mock.site).await;
    let hostile = r#"x" or id>0 or name="y"#;
    let url = format!(
        "/api/v1/connectwise/companies?policy_id={root}&search={}",
        hostile
            .replace('"', "%22")
            .replace(' ', "%20")
            .replace('=', "%3D")
            .replace('>', "%3E")
    );
    assert_eq!(app.get(&url, &admin.access).await.status(), StatusCode::OK);
    let sent = &mock.api_requests()[0].query["conditions"];
    assert_eq!(
        sent,
        r#"deletedFlag=false and name like "%x\" or id>0 or name=\"y%""#
    );
}

#[tokio::test]
async fn internal_addresses_are_refused_before_any_connection() {
    let mock = MockConnectWise::start().await;
    // No allow list: the guard applies to everything, the mock included.
    let app = TestApp::spawn_with(|config| config.connectwise_allow_http = true).await;
    let tenant = app.create_tenant("Acme").await;
    for site in [
        mock.site.clone(),
        "localhost".to_owned(),
        format!("localhost:{}", mock.site.rsplit(':').next().unwrap()),
        "10.0.0.8".to_owned(),
        "172.16.5.4".to_owned(),
        "192.168.0.10".to_owned(),
        "169.254.169.254".to_owned(),
        "100.64.1.1".to_owned(),
        "0.0.0.0".to_owned(),
        "224.0.0.1".to_owned(),
    ] {
        let response = test_connection(&app, &tenant.admin, &credentials(&site)).await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(
            problem["errors"][0]["code"], "refused_address",
            "{site}: {problem}"
        );
    }
    assert!(mock.requests().is_empty(), "no connection was attempted");
    for (site, code) in [
        ("file:///etc/passwd", "invalid_site"),
        ("http://169.254.169.254", "invalid_site"),
        ("https://user:pass@na.myconnectwise.invalid", "invalid_site"),
        ("[::1]", "invalid_site"),
    ] {
        let problem = assert_problem(
            test_connection(&app, &tenant.admin, &credentials(site)).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["code"], code, "{site}");
    }
}

#[tokio::test]
async fn test_connection_with_a_policys_credentials_never_returns_them() {
    let mock = MockConnectWise::start().await;
    let app = app_allowing_mock(60).await;
    let (admin, root) = tenant_on(&app, &mock.site).await;
    let response = test_connection(&app, &admin, &json!({"policy_id": root})).await;
    let text = response.text().await.unwrap();
    assert!(text.contains("\"ok\":true"), "{text}");
    assert!(!text.contains(SECRET));
    let sent = mock.api_requests().pop().unwrap();
    assert!(
        sent.headers["authorization"].starts_with("Basic "),
        "the policy's secret was used"
    );

    let incomplete = app.create_tenant("Empty").await;
    let (empty_root, _) = root_policy(&app, &incomplete.admin).await;
    let missing = test_connection(&app, &incomplete.admin, &json!({"policy_id": empty_root})).await;
    assert_eq!(
        assert_problem(missing, 422, "validation_failed").await["errors"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let both = test_connection(&app, &admin, &json!({"policy_id": root, "site": mock.site})).await;
    assert_problem(both, 422, "validation_failed").await;
    let viewer = app.create_operator(&admin, "viewer").await;
    assert_problem(
        test_connection(&app, &viewer, &json!({"policy_id": root})).await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn references_are_checked_against_connectwise() {
    let mock = MockConnectWise::start().await;
    let app = app_allowing_mock(60).await;
    let (admin, root) = tenant_on(&app, &mock.site).await;
    // Seed settings: failed_backup on board 1 with statuses 101/201, which board 1 lacks.
    let check: Value = app
        .post(
            &format!("/api/v1/policies/{root}/validate"),
            Some(&admin.access),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(check["ok"], false);

    let etag = etag_of(&app.get(&format!("/api/v1/policies/{root}"), &admin.access).await);
    let fb = "ticketing.events.failed_backup";
    let good = json!({"set": {
        format!("{fb}.service_board"): {"id": 1, "name": "Help Desk"},
        format!("{fb}.new_status"): {"id": 10, "name": "New"},
        format!("{fb}.closed_status"): {"id": 19, "name": "Closed"},
        "ticketing.events.missed_backup.enabled": false,
        "ticketing.events.disk_usage.enabled": false,
    }, "unset": [
        "ticketing.events.missed_backup.service_board", "ticketing.events.missed_backup.new_status", "ticketing.events.missed_backup.closed_status",
        "ticketing.events.disk_usage.service_board", "ticketing.events.disk_usage.new_status", "ticketing.events.disk_usage.closed_status",
    ]});
    let (_, etag) = save_ok(&app, &admin, &root, &etag, good).await;
    let check: Value = app
        .post(
            &format!("/api/v1/policies/{root}/validate"),
            Some(&admin.access),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(check, json!({"ok": true, "problems": []}));

    // A status of another board, and an open status used as Closed.
    let bad = json!({"set": {
        format!("{fb}.new_status"): {"id": 20, "name": "New (Escalations)"},
        format!("{fb}.closed_status"): {"id": 11, "name": "In Progress"},
    }});
    let refused = app
        .patch(
            &format!("/api/v1/policies/{root}?validate=connectwise"),
            &admin.access,
            Some(&etag),
            &bad,
        )
        .await;
    let problem = assert_problem(refused, 422, "validation_failed").await;
    let found: Vec<(&str, &str)> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        found,
        [
            (format!("{fb}.new_status").as_str(), "status_not_on_board"),
            (format!("{fb}.closed_status").as_str(), "not_a_closed_status")
        ]
    );
    assert_eq!(
        etag_of(&app.get(&format!("/api/v1/policies/{root}"), &admin.access).await),
        etag,
        "nothing saved"
    );
    let checked_by_default = app
        .patch(
            &format!("/api/v1/policies/{root}"),
            &admin.access,
            Some(&etag),
            &bad,
        )
        .await;
    assert_problem(checked_by_default, 422, "validation_failed").await;
    let unchecked = app
        .patch(
            &format!("/api/v1/policies/{root}?validate=false"),
            &admin.access,
            Some(&etag),
            &bad,
        )
        .await;
    assert_eq!(
        unchecked.status(),
        StatusCode::OK,
        "with ?validate=false the save goes through"
    );
    let check: Value = app
        .post(
            &format!("/api/v1/policies/{root}/validate"),
            Some(&admin.access),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(check["problems"].as_array().unwrap().len(), 2);
    assert_problem(
        app.patch(
            &format!("/api/v1/policies/{root}?validate=maybe"),
            &admin.access,
            Some("*"),
            &json!({}),
        )
        .await,
        400,
        "invalid_query",
    )
    .await;
}
