//! Secrets never appear in clear in storage, logs or responses.

use crate::connectwise_mock::MockConnectWise;
use crate::helpers::{SERVER_ADMIN, Server, TestApp, TestDb, contains_bytes};
use crate::policies::{SECRET, root_policy, save, save_ok, seed_settings};
use reqwest::StatusCode;
use serde_json::json;

const REJECTED_SECRET: &str = "REJECTED-PRIVATE-KEY-91bd";

#[tokio::test]
async fn secrets_are_encrypted_in_the_database() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (id, etag) = root_policy(&app, admin).await;
    let (_, etag) = save_ok(&app, admin, &id, &etag, seed_settings()).await;
    // A rejected save carrying another secret stores nothing.
    let rejected = save(
        &app,
        admin,
        &id,
        &etag,
        json!({"set": {"connectwise.private_key": REJECTED_SECRET, "connectwise.site": "ftp://bad"}}),
    )
    .await;
    assert_eq!(rejected.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let dump = app.db.dump();
    assert!(
        contains_bytes(&dump, "na.myconnectwise.invalid"),
        "the dump holds the stored settings"
    );
    assert!(
        !contains_bytes(&dump, SECRET),
        "the private key is stored in clear"
    );
    assert!(!contains_bytes(&dump, REJECTED_SECRET));
    assert!(contains_bytes(&dump, "$secret"), "stored as a sealed envelope");
}

#[tokio::test]
async fn secrets_never_reach_logs_responses_or_the_change_log() {
    let db = TestDb::fresh().await;
    let mock = MockConnectWise::start().await;
    let server = Server::start(
        &db,
        &[
            ("GMP_BOOTSTRAP_ADMIN_EMAIL", SERVER_ADMIN.0),
            ("GMP_BOOTSTRAP_ADMIN_PASSWORD", SERVER_ADMIN.1),
            ("GMP_LOG_LEVEL", "debug"),
            ("GMP_CONNECTWISE_ALLOW_HTTP", "true"),
            ("GMP_CONNECTWISE_ALLOWED_HOSTS", "127.0.0.1"),
        ],
    );
    let session = server.sign_in().await;
    let (client, token, policy_url) = (
        &session.client,
        session.token.as_str(),
        session.policy_url.clone(),
    );

    let mut bodies = Vec::new();
    let saved = client
        .patch(&policy_url)
        .bearer_auth(token)
        .header("if-match", "\"1\"")
        .json(&seed_settings())
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::OK);
    bodies.push(saved.text().await.unwrap());
    let rejected = client
        .patch(&policy_url)
        .bearer_auth(token)
        .header("if-match", "\"2\"")
        .json(&json!({"set": {"connectwise.private_key": REJECTED_SECRET, "connectwise.site": "ftp://bad"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), StatusCode::UNPROCESSABLE_ENTITY);
    bodies.push(rejected.text().await.unwrap());
    let stale = client
        .patch(&policy_url)
        .bearer_auth(token)
        .header("if-match", "\"1\"")
        .json(&json!({"set": {"connectwise.private_key": REJECTED_SECRET}}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    bodies.push(stale.text().await.unwrap());
    for path in ["", "/resolved", "/versions/2", "/diff", "/export"] {
        let response = client
            .get(format!("{policy_url}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        bodies.push(response.text().await.unwrap());
    }
    let audit = client
        .get(server.url("/api/v1/audit/changes?limit=200"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    bodies.push(audit.text().await.unwrap());
    let exported = client
        .post(format!("{policy_url}/export"))
        .bearer_auth(token)
        .json(&json!({"passphrase": "a long export passphrase"}))
        .send()
        .await
        .unwrap();
    bodies.push(exported.text().await.unwrap());

    // The policy's credentials used against ConnectWise: accepted, then refused.
    // Moving the credentials to another site takes the secret again (it is bound to its site).
    let point_at_mock = json!({"set": {"connectwise.site": mock.site, "connectwise.private_key": SECRET}});
    let moved = client
        .patch(&policy_url)
        .bearer_auth(token)
        .header("if-match", "*")
        .json(&point_at_mock)
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), StatusCode::OK);
    let policy_id = policy_url.rsplit('/').next().unwrap().to_owned();
    for status in [200, 401] {
        mock.set(|b| b.status = status);
        let tested = client
            .post(server.url("/api/v1/connectwise/test-connection"))
            .bearer_auth(token)
            .json(&json!({"policy_id": policy_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(tested.status(), StatusCode::OK);
        bodies.push(tested.text().await.unwrap());
    }
    assert!(mock.api_requests().len() >= 2, "the secret was really used");

    // Health checks log at debug level: proof that the debug output is captured.
    client.get(server.url("/healthz")).send().await.unwrap();
    server.wait_for(|line| line.contains("\"level\":\"DEBUG\"") && line.contains("/healthz"));
    let output = server.output();
    assert!(server.terminate().success());
    assert!(
        !output.contains(SECRET) && !output.contains(REJECTED_SECRET),
        "a secret reached the log"
    );
    for body in &bodies {
        assert!(
            !body.contains(SECRET) && !body.contains(REJECTED_SECRET),
            "a secret reached a response: {body}"
        );
    }
}
