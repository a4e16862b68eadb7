//! Outbound requests (issue 9, items 3 and 10): a site written as a number in any spelling the
//! URL parser accepts never reaches an internal address, and an oversize ConnectWise answer is
//! cut off with a clear error instead of filling memory.

use crate::connectwise_mock::MockConnectWise;
use crate::helpers::{Session, TestApp, assert_problem};
use crate::policies::{SECRET, root_policy, save_ok, seed_settings};
use gmp::connectwise::LOOKUP_CACHE_BYTES;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A loopback listener that counts the connections it receives and closes each at once.
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

/// Plain http and `127.0.0.1` allowed, as for the mock: the loopback exception is open, so
/// every refusal below is the guard reading the other spellings for what they are.
async fn app_allowing_loopback() -> TestApp {
    TestApp::spawn_with(|config| {
        config.connectwise_allow_http = true;
        config.connectwise_allowed_hosts = vec!["127.0.0.1".into()];
        config.connectwise_timeout_seconds = 2;
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

#[tokio::test]
async fn numeric_spellings_of_loopback_never_reach_the_listener() {
    let (port, seen) = counting_listener();
    let app = app_allowing_loopback().await;
    let tenant = app.create_tenant("Acme").await;
    for (host, code) in [
        ("2130706433", "refused_address"),
        ("127.1", "refused_address"),
        ("127.0.1", "refused_address"),
        ("0x7f000001", "refused_address"),
        ("0x7f.0.0.1", "refused_address"),
        ("0177.0.0.1", "refused_address"),
        ("0", "refused_address"),
        ("0.0.0.0", "refused_address"),
        // The site's own validation turns these away before the guard sees them.
        ("127.0.0.1.", "invalid_site"),
        ("[::ffff:127.0.0.1]", "invalid_site"),
        ("[::1]", "invalid_site"),
        ("%31%32%37.0.0.1", "invalid_site"),
    ] {
        let site = format!("{host}:{port}");
        let problem = assert_problem(
            test_connection(&app, &tenant.admin, &credentials(&site)).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "site", "{site}: {problem}");
        assert_eq!(problem["errors"][0]["code"], code, "{site}: {problem}");
    }
    // A non-canonical number is refused by its spelling, saying what it means.
    let problem = assert_problem(
        test_connection(&app, &tenant.admin, &credentials(&format!("2130706433:{port}"))).await,
        422,
        "validation_failed",
    )
    .await;
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("127.0.0.1") && message.contains("non-canonical"),
        "{message}"
    );
    // Even a public address typed as a number is never a ConnectWise site.
    let problem = assert_problem(
        test_connection(&app, &tenant.admin, &credentials("134744072")).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["code"], "refused_address", "{problem}");

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "no connection reached the listener"
    );

    // The control: the canonical, allow-listed spelling does connect, so the listener counts.
    let body: Value = test_connection(&app, &tenant.admin, &credentials(&format!("127.0.0.1:{port}")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["ok"], false, "{body}");
    assert!(
        seen.load(Ordering::SeqCst) > 0,
        "the listener sees real connections"
    );
}

#[tokio::test]
async fn a_policy_whose_site_is_a_number_sends_nothing_there() {
    let (port, seen) = counting_listener();
    let app = app_allowing_loopback().await;
    let tenant = app.create_tenant("Acme").await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    let mut settings = seed_settings();
    settings["set"]["connectwise.site"] = json!(format!("127.1:{port}"));
    save_ok(&app, &tenant.admin, &root, &etag, settings).await;

    let problem = assert_problem(
        test_connection(&app, &tenant.admin, &json!({"policy_id": root})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["code"], "refused_address", "{problem}");
    for lookup in ["boards", "companies"] {
        let problem = assert_problem(
            app.get(
                &format!("/api/v1/connectwise/{lookup}?policy_id={root}"),
                &tenant.admin.access,
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(
            problem["errors"][0]["code"], "refused_address",
            "{lookup}: {problem}"
        );
    }
    let problem = assert_problem(
        app.post(
            &format!("/api/v1/policies/{root}/validate"),
            Some(&tenant.admin.access),
            &json!({}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["code"], "refused_address", "{problem}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "no connection reached the listener"
    );
}

/// A tenant whose root policy points at the mock.
async fn tenant_on_mock(app: &TestApp, mock: &MockConnectWise) -> (Session, String) {
    let tenant = app.create_tenant("Acme").await;
    let (root, etag) = root_policy(app, &tenant.admin).await;
    let mut settings = seed_settings();
    settings["set"]["connectwise.site"] = json!(mock.site);
    // The seed's boards are not the mock's: saved unchecked.
    save_ok(
        app,
        &tenant.admin,
        &format!("{root}?validate=false"),
        &etag,
        settings,
    )
    .await;
    (tenant.admin, root)
}

#[tokio::test]
async fn oversize_connectwise_answers_are_cut_off_with_a_clear_error() {
    let mock = MockConnectWise::start().await;
    let app = app_allowing_loopback().await;
    let (admin, root) = tenant_on_mock(&app, &mock).await;
    let companies = format!("/api/v1/connectwise/companies?policy_id={root}");

    // About 2.5 MB of text that would take hundreds of MB once parsed: refused while parsing.
    let bloated = format!("[{}{{\"a\":0}}]", "{\"a\":0},".repeat(300_000));
    // A single answer over the per-answer bound (8 MiB).
    let huge = format!("[{{\"id\":1,\"name\":\"{}\"}}]", "x".repeat(9 * 1024 * 1024));
    for (what, body) in [("bloated", bloated), ("huge", huge)] {
        let body = Arc::new(body);
        mock.set(|b| b.raw_answer = Some(body.clone()));
        let problem = assert_problem(
            app.get(&companies, &admin.access).await,
            502,
            "connectwise_unavailable",
        )
        .await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("MiB one request may use"), "{what}: {detail}");

        let tested: Value = test_connection(&app, &admin, &json!({"policy_id": root}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (tested["ok"].as_bool(), tested["reason"].as_str()),
            (Some(false), Some("unexpected_response")),
            "{what}: {tested}"
        );
        assert!(
            tested["detail"].as_str().unwrap().contains("MiB"),
            "{what}: {tested}"
        );
    }
    let (entries, bytes) = app.state.lookups.usage();
    assert_eq!(entries, 0, "a failed lookup is not cached");
    assert!(bytes <= LOOKUP_CACHE_BYTES);

    // ConnectWise answering normally again: the lookup works and is cached within its bound.
    mock.set(|b| b.raw_answer = None);
    let response = app.get(&companies, &admin.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 5);
    let (entries, bytes) = app.state.lookups.usage();
    assert_eq!(entries, 1);
    assert!(bytes > 0 && bytes <= LOOKUP_CACHE_BYTES);
}

#[tokio::test]
async fn what_one_lookup_keeps_is_bounded_across_all_its_pages() {
    let mock = MockConnectWise::start().await;
    let app = app_allowing_loopback().await;
    let (admin, root) = tenant_on_mock(&app, &mock).await;
    // Pages of about 1 MiB each, every one well under the per-answer bound, whose records
    // survive normalisation whole (long names), and a next page after every page.
    let page = format!(
        "[{}]",
        (0..10)
            .map(|i| format!("{{\"id\":{i},\"name\":\"{}\"}}", "n".repeat(100 * 1024)))
            .collect::<Vec<_>>()
            .join(",")
    );
    let page = Arc::new(page);
    mock.set(|b| {
        b.raw_answer = Some(page.clone());
        b.endless = true;
    });
    let problem = assert_problem(
        app.get(
            &format!("/api/v1/connectwise/companies?policy_id={root}"),
            &admin.access,
        )
        .await,
        502,
        "connectwise_unavailable",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("24 MiB one request may use"),
        "{problem}"
    );
    let pages = mock.api_requests().len();
    assert!(
        (20..50).contains(&pages),
        "stopped by the memory bound after about 24 pages, before the 50-page cap: {pages}"
    );
}
