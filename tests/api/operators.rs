use crate::helpers::{PASSWORD, TestApp, assert_problem, etag_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn admin_creates_reads_updates_and_deletes_an_operator() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let token = &tenant.admin.access;

    let created = app
        .post(
            "/api/v1/operators",
            Some(token),
            &json!({"email": "Jane@Example.com", "display_name": "Jane", "role": "editor", "password": PASSWORD}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(etag_of(&created), "\"1\"");
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["email"], "jane@example.com");
    assert_eq!(body["role"], "editor");
    assert_eq!(body["tenant_id"], tenant.id);
    assert!(body.get("password").is_none() && body.get("password_hash").is_none());
    assert_eq!(
        location,
        format!("/api/v1/operators/{}", body["id"].as_str().unwrap())
    );

    let read = app.get(&location, token).await;
    assert_eq!(read.status(), StatusCode::OK);
    let etag = etag_of(&read);

    let updated = app
        .patch(
            &location,
            token,
            Some(&etag),
            &json!({"role": "viewer", "display_name": "J."}),
        )
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(etag_of(&updated), "\"2\"");
    let body: Value = updated.json().await.unwrap();
    assert_eq!(
        (body["role"].as_str(), body["display_name"].as_str()),
        (Some("viewer"), Some("J."))
    );

    assert_eq!(
        app.delete(&location, token, Some("\"2\"")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(app.get(&location, token).await, 404, "not_found").await;
}

#[tokio::test]
async fn updates_need_a_current_if_match() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let token = &tenant.admin.access;
    let editor = app.create_operator(&tenant.admin, "editor").await;
    let path = format!("/api/v1/operators/{}", editor.operator_id);

    assert_problem(
        app.patch(&path, token, None, &json!({"role": "viewer"})).await,
        428,
        "precondition_required",
    )
    .await;
    assert_problem(app.delete(&path, token, None).await, 428, "precondition_required").await;
    assert_problem(
        app.patch(&path, token, Some("W/\"1\""), &json!({"role": "viewer"}))
            .await,
        400,
        "invalid_header",
    )
    .await;

    // Two clients read version 1; the first write wins, the second is told it is stale.
    let first = app
        .patch(&path, token, Some("\"1\""), &json!({"display_name": "first"}))
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = app
        .patch(&path, token, Some("\"1\""), &json!({"display_name": "second"}))
        .await;
    assert_problem(second, 412, "precondition_failed").await;
    assert_problem(
        app.delete(&path, token, Some("\"1\"")).await,
        412,
        "precondition_failed",
    )
    .await;
    let current: Value = app.get(&path, token).await.json().await.unwrap();
    assert_eq!(current["display_name"], "first");

    // `*` means "whatever is current".
    assert_eq!(
        app.patch(&path, token, Some("*"), &json!({"display_name": "any"}))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn concurrent_updates_with_the_same_etag_let_exactly_one_win() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let editor = app.create_operator(&tenant.admin, "editor").await;
    let path = format!("/api/v1/operators/{}", editor.operator_id);
    let token = &tenant.admin.access;
    let bodies: Vec<Value> = (0..6)
        .map(|i| json!({"display_name": format!("writer {i}")}))
        .collect();
    let results = futures_util::future::join_all(
        bodies
            .iter()
            .map(|body| app.patch(&path, token, Some("\"1\""), body)),
    )
    .await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 412), "{statuses:?}");
    let current: Value = app.get(&path, token).await.json().await.unwrap();
    assert_eq!(current["version"], 2);
}

#[tokio::test]
async fn duplicate_emails_are_a_conflict_across_tenants() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("Acme").await;
    let globex = app.create_tenant("Globex").await;
    let body = json!({"email": "shared@example.com", "role": "viewer", "password": PASSWORD});
    assert_eq!(
        app.post("/api/v1/operators", Some(&acme.admin.access), &body)
            .await
            .status(),
        StatusCode::CREATED
    );
    let duplicate = app
        .post("/api/v1/operators", Some(&globex.admin.access), &body)
        .await;
    let problem = assert_problem(duplicate, 409, "conflict").await;
    // Refused without confirming that another tenant uses the email (see signin.rs).
    assert_eq!(problem["errors"][0]["code"], "email_unavailable");
}

#[tokio::test]
async fn roles_limit_what_operators_may_do() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let editor = app.create_operator(&tenant.admin, "editor").await;
    let viewer = app.create_operator(&tenant.admin, "viewer").await;
    let new = json!({"email": "x@example.com", "role": "viewer", "password": PASSWORD});

    // Everyone reads.
    for session in [&editor, &viewer] {
        assert_eq!(
            app.get("/api/v1/operators", &session.access).await.status(),
            StatusCode::OK
        );
    }
    // Only admins manage operators.
    for session in [&editor, &viewer] {
        let response = app.post("/api/v1/operators", Some(&session.access), &new).await;
        let body = assert_problem(response, 403, "forbidden").await;
        assert!(body["detail"].as_str().unwrap().contains("admin"));
        let path = format!("/api/v1/operators/{}", session.operator_id);
        assert_problem(
            app.patch(&path, &session.access, Some("*"), &json!({"role": "admin"}))
                .await,
            403,
            "forbidden",
        )
        .await;
        assert_problem(
            app.delete(&path, &session.access, Some("*")).await,
            403,
            "forbidden",
        )
        .await;
    }
    // Only platform admins provision tenants, even a tenant's own admin may not.
    let tenant_body = json!({"name": "Evil", "admin": {"email": "e@evil.test", "password": PASSWORD}});
    assert_problem(
        app.post("/api/v1/tenants", Some(&tenant.admin.access), &tenant_body)
            .await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        app.get("/api/v1/tenants", &tenant.admin.access).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.post("/api/v1/operators", Some(&tenant.admin.access), &new)
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_tenant_always_keeps_an_admin() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let me = format!("/api/v1/operators/{}", tenant.admin.operator_id);
    let token = &tenant.admin.access;
    let demote = app.patch(&me, token, Some("*"), &json!({"role": "editor"})).await;
    let body = assert_problem(demote, 409, "conflict").await;
    assert!(body["detail"].as_str().unwrap().contains("admin"));
    assert_problem(app.delete(&me, token, Some("*")).await, 409, "conflict").await;
    // Nothing was half-written: still admin, still version 1.
    let read = app.get(&me, token).await;
    assert_eq!(etag_of(&read), "\"1\"");
    assert_eq!(read.json::<Value>().await.unwrap()["role"], "admin");

    // With a second admin, the first may step down.
    let second = app.create_operator(&tenant.admin, "admin").await;
    assert_eq!(
        app.patch(&me, token, Some("*"), &json!({"role": "editor"}))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/operators", &second.access).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn role_change_and_password_reset_end_the_operators_sessions() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let editor = app.create_operator(&tenant.admin, "editor").await;
    let path = format!("/api/v1/operators/{}", editor.operator_id);
    let reset = app
        .patch(
            &path,
            &tenant.admin.access,
            Some("*"),
            &json!({"password": "reset by the admin 42"}),
        )
        .await;
    assert_eq!(reset.status(), StatusCode::OK);
    let refresh = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": editor.refresh}),
        )
        .await;
    assert_problem(refresh, 401, "invalid_refresh_token").await;
    assert_eq!(
        app.login(&editor.email, "reset by the admin 42").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn operators_are_listed_with_cursor_pagination() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    for _ in 0..4 {
        app.create_operator(&tenant.admin, "viewer").await;
    }
    let token = &tenant.admin.access;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/operators?limit=2&cursor={cursor}"),
            None => "/api/v1/operators?limit=2".to_owned(),
        };
        let page: Value = app.get(&path, token).await.json().await.unwrap();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["tenant_id"], tenant.id);
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "4 viewers and the admin");
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "no operator appears twice");

    assert_problem(
        app.get("/api/v1/operators?limit=0", token).await,
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        app.get("/api/v1/operators?limit=201", token).await,
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        app.get("/api/v1/operators?cursor=nope", token).await,
        400,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn invalid_operator_fields_are_all_reported() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let response = app
        .post(
            "/api/v1/operators",
            Some(&tenant.admin.access),
            &json!({"email": "no-at-sign", "role": "editor", "password": "short", "display_name": " "}),
        )
        .await;
    let body = assert_problem(response, 422, "validation_failed").await;
    let mut fields: Vec<(&str, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            ("display_name", "required"),
            ("email", "invalid_email"),
            ("password", "too_short")
        ]
    );
    let bad_role = app
        .post(
            "/api/v1/operators",
            Some(&tenant.admin.access),
            &json!({"email": "a@example.com", "role": "owner", "password": PASSWORD}),
        )
        .await;
    let body = assert_problem(bad_role, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "role");
}
