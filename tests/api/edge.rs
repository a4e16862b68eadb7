//! The server's edge: keys anyone could know stop it at start, `/metrics` is not on the public
//! listener and names no tenant, every response carries the security headers, and TLS is
//! served natively with the certificate reloaded on SIGHUP.

use crate::devices::{pull, register};
use crate::helpers::{
    Server, TestApp, TestDb, assert_problem, gmp_command, test_jwt_secret, test_master_key,
};
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The `/metrics` URL of a `gmp serve` started with `GMP_METRICS_BIND`, from its log.
pub fn metrics_url(server: &Server) -> String {
    let line = server.wait_for(|line| line.contains("serving metrics"));
    let entry: Value = serde_json::from_str(&line).expect("a JSON log line");
    let port = entry["metrics_port"]
        .as_u64()
        .expect("the metrics port is logged");
    format!("http://127.0.0.1:{port}/metrics")
}

/// `gmp serve` with these variables must stop at once; returns what it printed.
fn refused_start(db: &TestDb, env: &[(&str, &str)]) -> String {
    let output = gmp_command(db, env)
        .arg("serve")
        .env("GMP_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.status.success(),
        "gmp serve started with {env:?}:\n{printed}"
    );
    printed
}

#[tokio::test]
async fn keys_published_in_the_repository_or_looking_like_placeholders_stop_the_server() {
    let db = TestDb::fresh().await;
    let all_same = base64_of(&[7u8; 32]);
    let refused: [(&str, &str, &str); 8] = [
        ("GMP_JWT_SECRET", "REPLACE_ME", "`jwt_secret`"),
        // What deploy/compose.yaml and deploy/k8s/secret.yaml used to ship.
        (
            "GMP_JWT_SECRET",
            "change-me-to-at-least-32-random-bytes-0000",
            "`jwt_secret`",
        ),
        (
            "GMP_JWT_SECRET",
            "CHANGE-ME-to-at-least-32-random-bytes",
            "`jwt_secret`",
        ),
        (
            "GMP_JWT_SECRET",
            "our-production-jwt-secret-2026-do-not-share",
            "`jwt_secret`",
        ),
        ("GMP_JWT_SECRET", &"k".repeat(48), "`jwt_secret`"),
        (
            "GMP_MASTER_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "`master_key`",
        ),
        ("GMP_MASTER_KEY", &all_same, "`master_key`"),
        ("GMP_MASTER_KEY", "REPLACE_ME", "`master_key`"),
    ];
    for (variable, value, named) in refused {
        let mut env = vec![
            ("GMP_JWT_SECRET", test_jwt_secret()),
            ("GMP_MASTER_KEY", test_master_key()),
        ];
        env.retain(|(name, _)| *name != variable);
        env.push((variable, value));
        let printed = refused_start(&db, &env);
        assert!(printed.contains(named), "{value}: {printed}");
        assert!(
            printed.contains("openssl rand -base64"),
            "says how to make one: {printed}"
        );
        assert!(
            !printed.contains(value),
            "the refused key is not echoed: {printed}"
        );
    }

    // A key file is checked like a value.
    let file = db.dir.path().join("jwt-key");
    std::fs::write(&file, "changeme-changeme-changeme-changeme-changeme\n").unwrap();
    let file = file.to_str().unwrap();
    let printed = refused_start(
        &db,
        &[
            ("GMP_JWT_SECRET_FILE", file),
            ("GMP_MASTER_KEY", test_master_key()),
        ],
    );
    assert!(printed.contains("`jwt_secret_file`"), "{printed}");

    // An earlier master key that anyone knows still opens what it sealed: serving refuses it…
    let published = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let with_previous = [
        ("GMP_JWT_SECRET", test_jwt_secret()),
        ("GMP_MASTER_KEY", test_master_key()),
        ("GMP_PREVIOUS_MASTER_KEYS", published),
    ];
    let printed = refused_start(&db, &with_previous);
    assert!(printed.contains("`previous_master_keys` entry 1"), "{printed}");
    assert!(printed.contains("gmp keys rotate"), "{printed}");
    // …while `gmp keys rotate`, the way out of it, accepts it.
    let rotate = gmp_command(&db, &with_previous)
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn metrics_are_not_on_the_main_listener_and_name_no_tenant() {
    // By default there is no metrics listener, and the main one has no /metrics.
    let plain = TestApp::spawn().await;
    assert!(plain.metrics_address.is_none());
    let response = plain.client.get(plain.url("/metrics")).send().await.unwrap();
    assert_problem(response, 404, "route_not_found").await;
    drop(plain);

    let app = TestApp::spawn_with(|config| config.metrics_bind = Some("127.0.0.1:0".into())).await;
    let tenant = app.create_tenant("Initech Confidential").await;
    let device = register(&app, &tenant.admin, "HW-METRICS", "vault").await;
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::OK);
    gmp::jobs::connectivity_job(&app.state, Utc::now()).await.unwrap();

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_problem(response, 404, "route_not_found").await;
    let metrics = app.metrics_address.clone().expect("a metrics listener");
    let response = app.client.get(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.contains("gmp_devices{status=\"online\"} 1"), "{text}");
    assert!(!text.contains("Initech"), "no tenant name: {text}");
    assert!(!text.contains(&tenant.id), "no tenant id unless asked: {text}");
    // The metrics listener serves nothing else.
    let response = app.client.get(format!("{metrics}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn per_tenant_device_counts_use_ids_only_when_asked() {
    let app = TestApp::spawn_with(|config| {
        config.metrics_bind = Some("127.0.0.1:0".into());
        config.metrics_per_tenant = true;
    })
    .await;
    let tenant = app.create_tenant("Initech Confidential").await;
    let device = register(&app, &tenant.admin, "HW-METRICS", "vault").await;
    assert_eq!(pull(&app, &device, None).await.status(), StatusCode::OK);
    gmp::jobs::connectivity_job(&app.state, Utc::now()).await.unwrap();
    let metrics = app.metrics_address.clone().unwrap();
    let text = app
        .client
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("gmp_devices{{tenant=\"{}\",status=\"online\"}} 1", tenant.id);
    assert!(text.contains(&line), "{text}");
    assert!(!text.contains("Initech"), "{text}");
}

fn assert_security_headers(response: &reqwest::Response, no_store: bool) {
    let headers = response.headers();
    let url = response.url().path();
    assert_eq!(headers["x-content-type-options"], "nosniff", "{url}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{url}");
    if no_store {
        assert_eq!(headers["cache-control"], "no-store", "{url}");
    }
    assert!(
        headers.get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP: {url}"
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_device_pulls_still_revalidate() {
    let clock = gmp::clock::Clock::manual(chrono::Utc::now());
    let app = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_security_headers(&health, false);
    let login = app
        .login(crate::helpers::ADMIN_EMAIL, crate::helpers::ADMIN_PASSWORD)
        .await;
    assert_eq!(login.status(), StatusCode::OK);
    assert_security_headers(&login, true);
    let me = app.get("/api/v1/me", &app.platform.access).await;
    assert_security_headers(&me, true);
    let denied = app.get("/api/v1/me", "not-a-token").await;
    assert_security_headers(&denied, true);
    let unknown = app.client.get(app.url("/nowhere")).send().await.unwrap();
    assert_security_headers(&unknown, false);

    // A device's config (it may carry a secret) is not stored by any cache, yet the device's
    // own If-None-Match still gets 304.
    let tenant = app.create_tenant("Acme").await;
    let device = register(&app, &tenant.admin, "HW-HEADERS", "vault").await;
    let first = pull(&app, &device, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_security_headers(&first, true);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    clock.advance(chrono::Duration::hours(4));
    let again = pull(&app, &device, Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert_security_headers(&again, true);
}

/// A private CA and a server certificate for 127.0.0.1 signed by it, made by `openssl`:
/// returns the CA certificate (PEM) a client trusts.
pub fn make_certificate(dir: &Path, name: &str) -> Vec<u8> {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("this test needs the openssl command");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let ca_subject = format!("/CN={name} test CA");
    run(&[
        &["req", "-x509"],
        &ec[..],
        &[
            "-keyout",
            &format!("{name}-ca.key"),
            "-out",
            &format!("{name}-ca.pem"),
            "-subj",
            &ca_subject,
            "-days",
            "3650",
        ],
    ]
    .concat());
    run(&[
        &["req"],
        &ec[..],
        &[
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &format!("{name}.csr"),
        "-CA",
        &format!("{name}-ca.pem"),
        "-CAkey",
        &format!("{name}-ca.key"),
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        "server.ext",
        "-out",
        &format!("{name}.pem"),
    ]);
    std::fs::read(dir.join(format!("{name}-ca.pem"))).unwrap()
}

/// A client that trusts only `ca`, with a fresh connection pool.
fn client_trusting(ca: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca).unwrap()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn tls_is_served_natively_with_hsts_and_the_certificate_reloads_on_sighup() {
    let db = TestDb::fresh().await;
    let certs = tempfile::tempdir().unwrap();
    let first_ca = make_certificate(certs.path(), "first");
    let second_ca = make_certificate(certs.path(), "second");
    let (cert, key) = (certs.path().join("tls.pem"), certs.path().join("tls.key"));
    std::fs::copy(certs.path().join("first.pem"), &cert).unwrap();
    std::fs::copy(certs.path().join("first.key"), &key).unwrap();
    let server = Server::start(
        &db,
        &[
            ("GMP_TLS_CERT_FILE", cert.to_str().unwrap()),
            ("GMP_TLS_KEY_FILE", key.to_str().unwrap()),
        ],
    );
    let url = server.url("/healthz").replacen("http://", "https://", 1);

    let response = client_trusting(&first_ca).get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(client_trusting(&second_ca).get(&url).send().await.is_err());
    let plain = reqwest::Client::new().get(server.url("/healthz")).send().await;
    assert!(plain.is_err(), "nothing is served in clear on the TLS port");

    // The renewed certificate is served after SIGHUP, without a restart.
    std::fs::copy(certs.path().join("second.pem"), &cert).unwrap();
    std::fs::copy(certs.path().join("second.key"), &key).unwrap();
    server.signal("HUP");
    server.wait_for(|line| line.contains("reloaded the TLS certificate"));
    let response = client_trusting(&second_ca).get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(client_trusting(&first_ca).get(&url).send().await.is_err());

    // A broken renewal keeps the certificate being served.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    server.signal("HUP");
    server.wait_for(|line| line.contains("kept the TLS certificate being served"));
    let response = client_trusting(&second_ca).get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(server.terminate().success());
}

#[tokio::test]
async fn tls_needs_both_the_certificate_and_the_key() {
    let db = TestDb::fresh().await;
    let certs = tempfile::tempdir().unwrap();
    make_certificate(certs.path(), "only");
    let cert = certs.path().join("only.pem");
    let key = certs.path().join("only.key");
    let printed = refused_start(&db, &[("GMP_TLS_CERT_FILE", cert.to_str().unwrap())]);
    assert!(printed.contains("`tls_key_file`"), "{printed}");
    let printed = refused_start(&db, &[("GMP_TLS_KEY_FILE", key.to_str().unwrap())]);
    assert!(printed.contains("`tls_cert_file`"), "{printed}");
    // A key that does not belong to the certificate is refused too.
    make_certificate(certs.path(), "other");
    let printed = refused_start(
        &db,
        &[
            ("GMP_TLS_CERT_FILE", cert.to_str().unwrap()),
            (
                "GMP_TLS_KEY_FILE",
                certs.path().join("other.key").to_str().unwrap(),
            ),
        ],
    );
    assert!(printed.contains("does not fit"), "{printed}");
}
