//! The web UI over HTTP: sign-in with a session cookie, its flags, CSRF refusals, the
//! Content-Security-Policy, role-based controls and tenant isolation of pages.

use crate::helpers::{ADMIN_EMAIL, PASSWORD, SERVER_ADMIN, Session, TestApp};
use crate::policies::root_policy;
use crate::ui_client::{Browser, FORM, cookie_value, encode, hidden, location, set_cookies};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn signed_out_visitors_are_sent_to_the_sign_in_page() {
    let app = TestApp::spawn().await;
    for path in ["/", "/policies", "/policies/00000000-0000-0000-0000-000000000000"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&response), "/login", "{path}");
    }
    // A forged cookie is no session either.
    let forged = app
        .client
        .get(app.url("/policies"))
        .header("cookie", "gmp_session=made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(location(&forged), "/login");
    // The JSON API keeps answering with problem details, not pages.
    let api = app.client.get(app.url("/api/v1/policies")).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_and_pages_carry_a_strict_csp() {
    let app = TestApp::spawn().await;
    let (response, login_cookies) =
        Browser::post_login(&app, ADMIN_EMAIL, crate::helpers::ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/dashboard");
    let session = set_cookies(&response)
        .into_iter()
        .find(|c| c.starts_with("gmp_session="))
        .unwrap();
    assert!(session.contains("; HttpOnly"), "{session}");
    assert!(session.contains("; SameSite=Strict"), "{session}");
    assert!(session.contains("; Path=/"), "{session}");
    assert!(
        !session.contains("Secure"),
        "no TLS in this test, so no Secure flag: {session}"
    );
    assert!(
        cookie_value(&session).len() > "gmp_session=".len() + 40,
        "a long random id"
    );
    assert!(
        login_cookies
            .iter()
            .all(|c| c.contains("HttpOnly") && c.contains("SameSite=Strict"))
    );

    let browser = Browser {
        app: &app,
        address: app.address.clone(),
        cookie: cookie_value(&session).to_owned(),
    };
    let page = browser.get("/policies").await;
    let root = location(&page);
    let page = browser.get(&root).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "no inline script or style"
    );
    assert!(html.contains("src=\"/assets/htmx-2.0.4.min.js\""));
    // The assets come from the server itself.
    for asset in ["/assets/htmx-2.0.4.min.js", "/assets/gmp.js", "/assets/gmp.css"] {
        let response = app.client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(!response.bytes().await.unwrap().is_empty());
    }
    assert_eq!(
        app.client
            .get(app.url("/assets/nope.js"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_session_cookie_is_secure_when_the_server_speaks_tls() {
    let certs = tempfile::tempdir().unwrap();
    let ca = crate::edge::make_certificate(certs.path(), "ui");
    let db = crate::helpers::TestDb::fresh().await;
    let (cert, key) = (certs.path().join("ui.pem"), certs.path().join("ui.key"));
    let server = crate::helpers::Server::start(
        &db,
        &[
            ("GMP_TLS_CERT_FILE", cert.to_str().unwrap()),
            ("GMP_TLS_KEY_FILE", key.to_str().unwrap()),
            ("GMP_BOOTSTRAP_ADMIN_EMAIL", SERVER_ADMIN.0),
            ("GMP_BOOTSTRAP_ADMIN_PASSWORD", SERVER_ADMIN.1),
        ],
    );
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = server.url("").replace("http://", "https://");
    let form = client.get(format!("{base}/login")).send().await.unwrap();
    let login_cookie = set_cookies(&form)
        .into_iter()
        .find(|c| c.starts_with("gmp_login="))
        .unwrap();
    assert!(login_cookie.contains("; Secure"), "{login_cookie}");
    let csrf = hidden(&form.text().await.unwrap(), "csrf");
    let response = client
        .post(format!("{base}/login"))
        .header("cookie", cookie_value(&login_cookie))
        .header("content-type", FORM)
        .body(encode(&[
            ("csrf", csrf.as_str()),
            ("email", SERVER_ADMIN.0),
            ("password", SERVER_ADMIN.1),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let session = set_cookies(&response)
        .into_iter()
        .find(|c| c.starts_with("gmp_session="))
        .unwrap();
    assert!(
        session.contains("; Secure") && session.contains("; HttpOnly"),
        "{session}"
    );
    assert!(response.headers().contains_key("strict-transport-security"));
    server.terminate();
}

#[tokio::test]
async fn a_sign_in_or_a_form_without_the_csrf_token_is_refused() {
    let app = TestApp::spawn().await;
    // Sign-in without the form's token (a login-CSRF attempt from another site).
    let forged = app
        .client
        .post(app.url("/login"))
        .header("content-type", FORM)
        .body(encode(&[
            ("email", ADMIN_EMAIL),
            ("password", crate::helpers::ADMIN_PASSWORD),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        set_cookies(&forged)
            .iter()
            .all(|c| !c.starts_with("gmp_session="))
    );

    let tenant = app.create_tenant("Acme").await;
    let browser = Browser::sign_in(&app, &tenant.admin.email, PASSWORD).await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    let version = etag.trim_matches('"').to_owned();
    let path = format!("/policies/{root}");
    for csrf in [None, Some("wrong-token")] {
        let mut form = vec![
            ("version", version.as_str()),
            ("connectwise.company_id", "forged"),
        ];
        if let Some(csrf) = csrf {
            form.push(("csrf", csrf));
        }
        let response = browser.post(&path, &form).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "csrf {csrf:?}");
    }
    for action in ["revert", "test-connection"] {
        let response = browser
            .post(&format!("{path}/{action}"), &[("version", &version)])
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{action}");
    }
    let signed_out = browser.post("/logout", &[]).await;
    assert_eq!(
        signed_out.status(),
        StatusCode::FORBIDDEN,
        "sign-out needs the token too"
    );
    // Nothing was saved.
    let (_, after) = root_policy(&app, &tenant.admin).await;
    assert_eq!(after, etag);

    // With the page's token the same save goes through.
    let page = browser.page(&path).await;
    let csrf = hidden(&page, "csrf");
    let response = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("ticketing.events.disk_usage.enabled", ""),
            ],
        )
        .await;
    // Enabling an event class without its board is refused by the service, with the field named.
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("ticketing.events.disk_usage.service_board"),
        "{body}"
    );
}

#[tokio::test]
async fn viewers_see_no_edit_controls_and_cannot_save() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let viewer = app.create_operator(&tenant.admin, "viewer").await;
    let editor = app.create_operator(&tenant.admin, "editor").await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    let path = format!("/policies/{root}");

    let as_editor = Browser::sign_in(&app, &editor.email, PASSWORD)
        .await
        .page(&path)
        .await;
    assert!(as_editor.contains("Save Configuration and Credentials"));
    assert!(as_editor.contains("Test Connection"));
    assert!(!as_editor.contains("<fieldset class=\"plain\" disabled>"));

    let browser = Browser::sign_in(&app, &viewer.email, PASSWORD).await;
    let page = browser.page(&path).await;
    assert!(page.contains("ConnectWise Settings") && page.contains("Ticketing Settings"));
    assert!(
        !page.contains("Save Configuration and Credentials"),
        "no save button for a viewer"
    );
    assert!(!page.contains("Test Connection"));
    assert!(
        page.contains("<fieldset class=\"plain\" disabled>"),
        "every control read-only"
    );
    let csrf = hidden(&page, "csrf");
    let version = etag.trim_matches('"');
    let response = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("version", version),
                ("connectwise.company_id", "x"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (_, after) = root_policy(&app, &tenant.admin).await;
    assert_eq!(after, etag, "nothing saved");
}

#[tokio::test]
async fn pages_never_show_another_tenants_policies() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("Acme").await;
    let other = app.create_tenant("Other").await;
    let (acme_root, _) = root_policy(&app, &acme.admin).await;
    let (other_root, other_etag) = root_policy(&app, &other.admin).await;
    let browser = Browser::sign_in(&app, &acme.admin.email, PASSWORD).await;

    assert_eq!(
        location(&browser.get("/policies").await),
        format!("/policies/{acme_root}")
    );
    let tree = browser.page(&format!("/policies/{acme_root}")).await;
    assert!(
        !tree.contains(&other_root),
        "the tree lists only the tenant's policies"
    );
    assert!(tree.contains("Acme"));

    let foreign = browser.get(&format!("/policies/{other_root}")).await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    let csrf = hidden(&tree, "csrf");
    let version = other_etag.trim_matches('"');
    let save = browser
        .post(
            &format!("/policies/{other_root}"),
            &[
                ("csrf", &csrf),
                ("version", version),
                ("connectwise.company_id", "stolen"),
            ],
        )
        .await;
    assert_eq!(save.status(), StatusCode::NOT_FOUND);
    let statuses = browser
        .get(&format!("/policies/{other_root}/statuses?event=failed_backup"))
        .await;
    assert_eq!(statuses.status(), StatusCode::NOT_FOUND);
    let (_, after) = root_policy(&app, &other.admin).await;
    assert_eq!(after, other_etag);
}

#[tokio::test]
async fn a_save_creates_a_version_and_a_stale_save_says_someone_saved_meanwhile() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let (root, etag) = root_policy(&app, &tenant.admin).await;
    let path = format!("/policies/{root}");
    let browser = Browser::sign_in(&app, &tenant.admin.email, PASSWORD).await;
    let page = browser.page(&path).await;
    let csrf = hidden(&page, "csrf");
    let version = hidden(&page, "version");
    assert_eq!(format!("\"{version}\""), etag);

    let saved = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("connectwise.site", "na.myconnectwise.invalid"),
                ("connectwise.company_id", "acme"),
                ("connectwise.public_key", "PUBLIC1"),
                ("connectwise.private_key", "s3cret-value"),
                ("comment", "first credentials"),
            ],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let next = location(&saved);
    let shown = browser.page(&next).await;
    assert!(shown.contains("Saved as version"), "{shown}");
    assert!(shown.contains("Set · changed on"), "the secret shows as set");
    assert!(!shown.contains("s3cret-value"), "never echoed");
    let policy: serde_json::Value = app
        .get(&format!("/api/v1/policies/{root}"), &tenant.admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(policy["values"]["connectwise.company_id"], "acme");
    assert_eq!(policy["comment"], "first credentials");

    // The old version number: someone saved meanwhile.
    let stale = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("connectwise.site", "na.myconnectwise.invalid"),
                ("connectwise.company_id", "acme"),
                ("connectwise.public_key", "OTHERKEY123"),
            ],
        )
        .await;
    let status = stale.status();
    let body = stale.text().await.unwrap();
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert!(body.contains("Someone saved this policy meanwhile"), "{body}");
    assert!(body.contains(&format!("href=\"/policies/{root}\">Reload")));
    assert!(
        body.contains(&format!(
            "/policies/{root}/versions?from={version}&amp;to=2\">compare"
        )),
        "compare what was saved since the form was read: {body}"
    );

    // Ticketing on Default; a child overrides one status, then reverts to the inherited one.
    let page = browser.page(&path).await;
    let version = hidden(&page, "version");
    let ticketing = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("connectwise.site", "na.myconnectwise.invalid"),
                ("connectwise.company_id", "acme"),
                ("connectwise.public_key", "PUBLIC1"),
                ("ticketing.events.failed_backup.enabled", "on"),
                ("ticketing.events.failed_backup.service_board", "1:Help Desk"),
                ("ticketing.events.failed_backup.new_status", "10:New"),
                ("ticketing.events.failed_backup.closed_status", "19:Closed"),
            ],
        )
        .await;
    // The test site is not a real ConnectWise: saved, with the unchecked references said.
    assert_eq!(ticketing.status(), StatusCode::OK);
    let saved = ticketing.text().await.unwrap();
    assert!(saved.contains("Saved as version 3"), "{saved}");
    assert!(
        saved.contains("id=\"save-warnings\"") && saved.contains("not checked against ConnectWise"),
        "{saved}"
    );
    let child = app
        .post(
            "/api/v1/policies",
            Some(&tenant.admin.access),
            &json!({"name": "Client A", "parent_id": root}),
        )
        .await;
    assert_eq!(child.status(), StatusCode::CREATED);
    let child: serde_json::Value = child.json().await.unwrap();
    let child_path = format!("/policies/{}", child["id"].as_str().unwrap());
    let page = browser.page(&child_path).await;
    assert!(page.contains("Inherited from Default · v3"), "{page}");
    let version = hidden(&page, "version");
    let overridden = browser
        .post(
            &child_path,
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("ticketing.events.failed_backup.enabled", "on"),
                ("ticketing.events.failed_backup.service_board", "1:Help Desk"),
                ("ticketing.events.failed_backup.new_status", "11:In Progress"),
                ("ticketing.events.failed_backup.closed_status", "19:Closed"),
            ],
        )
        .await;
    assert_eq!(overridden.status(), StatusCode::OK);
    let saved = overridden.text().await.unwrap();
    assert!(saved.contains("id=\"save-warnings\""), "{saved}");
    let page = browser.page(&child_path).await;
    assert_eq!(
        page.matches(">Overridden<").count(),
        1,
        "only the changed field: {page}"
    );
    assert!(page.contains("Revert (to New)"), "{page}");
    let version = hidden(&page, "version");
    let reverted = browser
        .post(
            &format!("{child_path}/revert"),
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("path", "ticketing.events.failed_backup.new_status"),
            ],
        )
        .await;
    assert_eq!(
        reverted.status(),
        StatusCode::OK,
        "saved with the unchecked references said"
    );
    let page = reverted.text().await.unwrap();
    assert!(page.contains("id=\"save-warnings\""), "{page}");
    assert!(!page.contains(">Overridden<"), "back to inheriting");
}

#[tokio::test]
async fn sign_out_and_a_password_change_end_the_session() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let browser = Browser::sign_in(&app, &tenant.admin.email, PASSWORD).await;
    let page = browser.page(&location(&browser.get("/policies").await)).await;
    let csrf = hidden(&page, "csrf");
    let out = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&out)
            .iter()
            .any(|c| c.starts_with("gmp_session=;") && c.contains("Max-Age=0"))
    );
    let after = browser.get("/policies").await;
    assert_eq!(location(&after), "/login", "the old cookie no longer works");

    // Another sign-in ends when the password changes (its refresh tokens are revoked too).
    let browser = Browser::sign_in(&app, &tenant.admin.email, PASSWORD).await;
    assert_eq!(browser.get("/policies").await.status(), StatusCode::SEE_OTHER);
    assert!(location(&browser.get("/policies").await).starts_with("/policies/"));
    let api: Session = app.sign_in(&tenant.admin.email, PASSWORD).await;
    let changed = app
        .post(
            "/api/v1/me/password",
            Some(&api.access),
            &json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(location(&browser.get("/policies").await), "/login");
}

#[test]
fn the_image_build_copies_what_the_ui_compiles_in() {
    // Templates (askama) and assets (`include_bytes!`) are read at compile time: an image build
    // without them fails.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    for dir in ["templates", "assets"] {
        assert!(root.join(dir).is_dir());
        assert!(
            dockerfile
                .lines()
                .any(|l| l.trim() == format!("COPY {dir} ./{dir}")),
            "deploy/Dockerfile does not copy {dir}/"
        );
    }
}

#[tokio::test]
async fn a_wrong_password_shows_the_apis_answer_on_the_sign_in_page() {
    let app = TestApp::spawn().await;
    let (response, _) = Browser::post_login(&app, ADMIN_EMAIL, "not the password at all").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        set_cookies(&response)
            .iter()
            .all(|c| !c.starts_with("gmp_session="))
    );
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("id=\"login-error\"") && html.contains("the email or password is wrong"));
    assert!(
        html.contains(&format!("value=\"{ADMIN_EMAIL}\"")),
        "the email is kept"
    );
}
