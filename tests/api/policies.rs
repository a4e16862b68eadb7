use crate::helpers::{Session, TestApp, assert_problem, etag_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub const SECRET: &str = "PLAINTEXT-PRIVATE-KEY-7f3a9c";

/// The tenant's root policy: (id, ETag).
pub async fn root_policy(app: &TestApp, session: &Session) -> (String, String) {
    let list: Value = app
        .get("/api/v1/policies", &session.access)
        .await
        .json()
        .await
        .unwrap();
    let root = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["parent_id"].is_null())
        .expect("a root policy");
    let id = root["id"].as_str().unwrap().to_owned();
    let etag = etag_of(&app.get(&format!("/api/v1/policies/{id}"), &session.access).await);
    (id, etag)
}

pub async fn save(app: &TestApp, session: &Session, id: &str, etag: &str, body: Value) -> reqwest::Response {
    app.patch(
        &format!("/api/v1/policies/{id}"),
        &session.access,
        Some(etag),
        &body,
    )
    .await
}

/// Saves and asserts success; returns the policy and its new ETag.
pub async fn save_ok(app: &TestApp, session: &Session, id: &str, etag: &str, body: Value) -> (Value, String) {
    let response = save(app, session, id, etag, body).await;
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    (body, etag.unwrap())
}

fn board(id: i64, name: &str) -> Value {
    json!({"id": id, "name": name})
}

/// A class's board with the New and Closed statuses a board is set with.
fn with_statuses(class: &str, service_board: Value) -> Value {
    let id = service_board["id"].as_i64().unwrap();
    json!({
        format!("ticketing.events.{class}.service_board"): service_board,
        format!("ticketing.events.{class}.new_status"): board(id * 10, "New"),
        format!("ticketing.events.{class}.closed_status"): board(id * 10 + 9, "Closed"),
    })
}

/// The source document's ConnectWise settings: credentials plus tickets for three event classes.
pub fn seed_settings() -> Value {
    let mut set = json!({
        "connectwise.site": "https://NA.myconnectwise.invalid/",
        "connectwise.company_id": "acme",
        "connectwise.public_key": "AbCdEf0123456789",
        "connectwise.private_key": SECRET,
    });
    for (class, board_id) in [("failed_backup", 1), ("missed_backup", 2), ("disk_usage", 3)] {
        let prefix = format!("ticketing.events.{class}");
        set[format!("{prefix}.enabled")] = json!(true);
        set[format!("{prefix}.service_board")] = board(board_id, &format!("Board {board_id}"));
        set[format!("{prefix}.new_status")] = board(100 + board_id, "New");
        set[format!("{prefix}.closed_status")] = board(200 + board_id, "Closed");
    }
    json!({"set": set, "comment": "ConnectWise integration"})
}

/// Creates a policy (under the root unless `parent_id` says otherwise); returns it and its ETag.
pub async fn create_child(app: &TestApp, session: &Session, body: Value) -> (Value, String) {
    let response = app.post("/api/v1/policies", Some(&session.access), &body).await;
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (body, etag.unwrap())
}

#[tokio::test]
async fn the_source_documents_flow_resolves_with_provenance() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root_id, etag) = root_policy(&app, admin).await;
    assert_eq!(etag, "\"1\"");
    let (root, etag) = save_ok(&app, admin, &root_id, &etag, seed_settings()).await;
    assert_eq!(etag, "\"2\"");
    assert_eq!(
        root["values"]["connectwise.site"], "na.myconnectwise.invalid",
        "normalised"
    );
    assert_eq!(root["values"]["connectwise.private_key"]["set"], true);
    assert!(!root.to_string().contains(SECRET));

    let (child, _) = create_child(
        &app,
        admin,
        json!({
            "name": "Client A",
            "set": {
                "ticketing.events.missed_backup.service_board": board(22, "Client A Desk"),
                "ticketing.events.missed_backup.new_status": board(220, "New"),
                "ticketing.events.missed_backup.closed_status": board(229, "Closed"),
            },
            "lock": ["connectwise.site"],
        }),
    )
    .await;
    assert_eq!(child["parent_id"], root_id.as_str());
    assert_eq!(child["version"], 1);
    let child_id = child["id"].as_str().unwrap();

    let resolved: Value = app
        .get(&format!("/api/v1/policies/{child_id}/resolved"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let fields = &resolved["fields"];
    let board_field = &fields["ticketing.events.missed_backup.service_board"];
    assert_eq!(board_field["value"], board(22, "Client A Desk"));
    assert_eq!(board_field["source"]["policy_id"], child_id);
    assert_eq!(board_field["source"]["policy_name"], "Client A");
    assert_eq!(board_field["source"]["version"], 1);
    let inherited = &fields["ticketing.events.failed_backup.service_board"];
    assert_eq!(inherited["value"], board(1, "Board 1"));
    assert_eq!(inherited["source"]["policy_name"], "Default");
    assert_eq!(inherited["source"]["version"], 2);
    assert_eq!(inherited["locked"], false);
    let site = &fields["connectwise.site"];
    assert_eq!(site["value"], "na.myconnectwise.invalid");
    assert_eq!(site["locked"], true);
    assert_eq!(site["locked_by"]["policy_name"], "Client A");
    assert_eq!(fields["connectwise.private_key"]["value"]["set"], true);
    assert!(!resolved.to_string().contains(SECRET));
    assert_eq!(fields.as_object().unwrap().len(), 4 + 3 * 4);
}

#[tokio::test]
async fn stale_or_missing_if_match_is_refused_and_nothing_changes() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (id, etag) = root_policy(&app, admin).await;
    let body = json!({"set": {"ticketing.events.disk_usage.enabled": false}});
    save_ok(&app, admin, &id, &etag, body.clone()).await;
    assert_problem(
        save(&app, admin, &id, &etag, body.clone()).await,
        412,
        "precondition_failed",
    )
    .await;
    let path = format!("/api/v1/policies/{id}");
    assert_problem(
        app.patch(&path, &admin.access, None, &body).await,
        428,
        "precondition_required",
    )
    .await;
    let current = app.get(&path, &admin.access).await;
    assert_eq!(etag_of(&current), "\"2\"");
}

#[tokio::test]
async fn concurrent_saves_let_exactly_one_win_and_never_repeat_a_version() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (id, etag) = root_policy(&app, admin).await;
    let bodies: Vec<Value> = (0..8)
        .map(|i| json!({"set": with_statuses("failed_backup", board(i + 1, "B"))}))
        .collect();
    let responses =
        futures_util::future::join_all(bodies.into_iter().map(|body| save(&app, admin, &id, &etag, body)))
            .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 412), "{statuses:?}");

    // Clients that each re-read before saving all succeed, one after the other.
    let writers = (0..4).map(|i| {
        let app = &app;
        let id = &id;
        async move {
            loop {
                let etag = etag_of(&app.get(&format!("/api/v1/policies/{id}"), &admin.access).await);
                let body = json!({"set": with_statuses("disk_usage", board(50 + i, "W"))});
                match save(app, admin, id, &etag, body).await.status().as_u16() {
                    200 => break,
                    412 => continue,
                    other => panic!("unexpected {other}"),
                }
            }
        }
    });
    futures_util::future::join_all(writers).await;
    let versions: Value = app
        .get(&format!("/api/v1/policies/{id}/versions"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let numbers: Vec<i64> = versions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (1..=6).collect::<Vec<_>>(),
        "versions are consecutive and unique"
    );
}

#[tokio::test]
async fn diff_and_rollback() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (id, etag) = root_policy(&app, admin).await;
    let (_, etag) = save_ok(&app, admin, &id, &etag, seed_settings()).await;
    let (_, etag) = save_ok(
        &app,
        admin,
        &id,
        &etag,
        json!({
            "set": {"ticketing.events.failed_backup.service_board": board(9, "Escalations"), "connectwise.private_key": "ROTATED-KEY-123"},
            "unset": ["ticketing.events.disk_usage.enabled"],
            "lock": ["connectwise.site"],
            "description": "changed"
        }),
    )
    .await;
    assert_eq!(etag, "\"3\"");

    let diff: Value = app
        .get(&format!("/api/v1/policies/{id}/diff?from=2&to=3"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let changes = diff["changes"].as_array().unwrap();
    let by_field = |field: &str| {
        changes
            .iter()
            .find(|c| c["field"] == field)
            .unwrap_or_else(|| panic!("{field} in {diff}"))
    };
    assert_eq!(
        by_field("values.ticketing.events.failed_backup.service_board")["before"],
        board(1, "Board 1")
    );
    assert_eq!(
        by_field("values.ticketing.events.failed_backup.service_board")["after"],
        board(9, "Escalations")
    );
    assert_eq!(
        by_field("values.ticketing.events.disk_usage.enabled")["change"],
        "removed"
    );
    assert_eq!(by_field("locks.connectwise.site")["after"], true);
    let secret = by_field("values.connectwise.private_key");
    assert_eq!(
        (secret["change"].as_str(), secret["secret"].as_bool()),
        (Some("changed"), Some(true))
    );
    assert!(secret.get("before").is_none() && secret.get("after").is_none());
    assert!(!diff.to_string().contains("ROTATED-KEY") && !diff.to_string().contains(SECRET));
    assert_eq!(changes.len(), 5, "{diff}");
    // Default: the last save.
    let last: Value = app
        .get(&format!("/api/v1/policies/{id}/diff"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((last["from"].as_i64(), last["to"].as_i64()), (Some(2), Some(3)));

    let rollback = app
        .post_with_if_match(
            &format!("/api/v1/policies/{id}/rollback"),
            &admin.access,
            &etag,
            &json!({"version": 2}),
        )
        .await;
    assert_eq!(rollback.status(), StatusCode::OK);
    assert_eq!(etag_of(&rollback), "\"4\"");
    let rolled: Value = rollback.json().await.unwrap();
    assert_eq!(
        rolled["values"]["ticketing.events.failed_backup.service_board"],
        board(1, "Board 1")
    );
    assert_eq!(rolled["locks"], json!([]));
    assert_eq!(rolled["comment"], "rolled back to version 2");
    let back: Value = app
        .get(&format!("/api/v1/policies/{id}/diff?from=2&to=4"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        back["changes"],
        json!([]),
        "version 4 has version 2's content, secret included"
    );
    let v2: Value = app
        .get(&format!("/api/v1/policies/{id}/versions/2"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v2["values"]["connectwise.site"], "na.myconnectwise.invalid");
    assert_problem(
        app.get(&format!("/api/v1/policies/{id}/versions/99"), &admin.access)
            .await,
        404,
        "not_found",
    )
    .await;
    let missing = app
        .post_with_if_match(
            &format!("/api/v1/policies/{id}/rollback"),
            &admin.access,
            "\"4\"",
            &json!({"version": 42}),
        )
        .await;
    assert_problem(missing, 404, "not_found").await;
}

#[tokio::test]
async fn a_child_cannot_set_a_field_an_ancestor_locked() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root_id, etag) = root_policy(&app, admin).await;
    save_ok(&app, admin, &root_id, &etag, json!({"set": {"ticketing.events.replication.enabled": false}, "lock": ["ticketing.events.replication.enabled"]})).await;
    let (child, child_etag) = create_child(&app, admin, json!({"name": "Client"})).await;
    let child_id = child["id"].as_str().unwrap();

    let response = save(
        &app,
        admin,
        child_id,
        &child_etag,
        json!({"set": {"ticketing.events.replication.enabled": true}}),
    )
    .await;
    let problem = assert_problem(response, 409, "conflict").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("Default"),
        "{problem}"
    );
    assert_eq!(problem["errors"][0]["code"], "locked_by_ancestor");
    assert_eq!(
        problem["errors"][0]["field"],
        "set.ticketing.events.replication.enabled"
    );

    let create = app
        .post(
            "/api/v1/policies",
            Some(&admin.access),
            &json!({"name": "Other", "set": {"ticketing.events.replication.enabled": true}}),
        )
        .await;
    assert_problem(create, 409, "conflict").await;
    let unchanged = app
        .get(&format!("/api/v1/policies/{child_id}"), &admin.access)
        .await;
    assert_eq!(etag_of(&unchanged), "\"1\"");
}

#[tokio::test]
async fn device_scoped_and_unknown_fields_are_rejected_on_policies() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (id, etag) = root_policy(&app, admin).await;
    let response = save(
        &app,
        admin,
        &id,
        &etag,
        json!({"set": {"ticketing.service_ticket_company": board(5, "Customer"), "billing.enabled": true, "connectwise.colour": "red"}}),
    )
    .await;
    let problem = assert_problem(response, 422, "validation_failed").await;
    let errors: Vec<(String, String)> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(errors.contains(&(
        "set.ticketing.service_ticket_company".into(),
        "device_scoped_setting".into()
    )));
    assert!(errors.contains(&("set.billing.enabled".into(), "device_scoped_setting".into())));
    assert!(errors.contains(&("set.connectwise.colour".into(), "unknown_setting".into())));
    let message = &problem["errors"][0]["message"];
    assert!(message.as_str().unwrap().contains("per device"), "{message}");
    let lock = save(&app, admin, &id, &etag, json!({"lock": ["billing.company"]})).await;
    assert_problem(lock, 422, "validation_failed").await;
}

#[tokio::test]
async fn every_validation_rule_rejects_a_bad_value_naming_the_field() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (id, etag) = root_policy(&app, admin).await;
    let p = "ticketing.events.pool_status";
    let cases = [
        (
            json!({"set": {"connectwise.site": "http://na.myconnectwise.invalid"}}),
            "set.connectwise.site",
            "invalid_site",
        ),
        (
            json!({"set": {"connectwise.site": "https://u:p@na.myconnectwise.invalid"}}),
            "set.connectwise.site",
            "invalid_site",
        ),
        (
            json!({"set": {"connectwise.site": "https://na.myconnectwise.invalid/?q=1"}}),
            "set.connectwise.site",
            "invalid_site",
        ),
        (
            json!({"set": {"connectwise.company_id": "has space"}}),
            "set.connectwise.company_id",
            "invalid_characters",
        ),
        (
            json!({"set": {"connectwise.public_key": "x".repeat(65)}}),
            "set.connectwise.public_key",
            "too_long",
        ),
        (
            json!({"set": {"connectwise.private_key": ""}}),
            "set.connectwise.private_key",
            "required",
        ),
        (
            json!({"set": {format!("{p}.enabled"): "yes"}}),
            &format!("set.{p}.enabled"),
            "invalid_type",
        ),
        (
            json!({"set": {format!("{p}.service_board"): board(0, "Zero")}}),
            &format!("set.{p}.service_board"),
            "invalid_reference",
        ),
        (
            json!({"set": {format!("{p}.service_board"): {"id": 3}}}),
            &format!("set.{p}.service_board"),
            "invalid_reference",
        ),
        (
            json!({"set": {format!("{p}.enabled"): true}}),
            &format!("{p}.service_board"),
            "required_when_enabled",
        ),
        (
            json!({"set": {
                format!("{p}.enabled"): true,
                format!("{p}.service_board"): board(1, "Desk"),
                format!("{p}.new_status"): board(7, "New"),
                format!("{p}.closed_status"): board(7, "New"),
            }}),
            &format!("{p}.closed_status"),
            "statuses_must_differ",
        ),
        (
            json!({"set": {"connectwise.site": "na.myconnectwise.invalid"}}),
            "connectwise.private_key",
            "required_with",
        ),
        (
            json!({"set": {"connectwise.site": "a.example"}, "unset": ["connectwise.site"]}),
            "unset",
            "contradictory",
        ),
        (
            json!({"lock": ["connectwise.site"], "unlock": ["connectwise.site"]}),
            "unlock",
            "contradictory",
        ),
        (json!({"name": ""}), "name", "required"),
        (json!({"comment": "x".repeat(501)}), "comment", "too_long"),
    ];
    for (body, field, code) in cases {
        let problem = assert_problem(
            save(&app, admin, &id, &etag, body.clone()).await,
            422,
            "validation_failed",
        )
        .await;
        let found = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == field && e["code"] == code);
        assert!(found, "expected {field}/{code} for {body}; got {problem}");
    }
    // Nothing was saved by any of them.
    let current = app.get(&format!("/api/v1/policies/{id}"), &admin.access).await;
    assert_eq!(etag_of(&current), "\"1\"");
}

#[tokio::test]
async fn a_parent_change_that_breaks_a_descendant_is_refused() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root_id, etag) = root_policy(&app, admin).await;
    let (_, etag) = save_ok(&app, admin, &root_id, &etag, seed_settings()).await;
    // The child enables an event class relying on the parent's board and statuses…
    let c = "ticketing.events.agent_status";
    let (_, _) = save_ok(
        &app,
        admin,
        &root_id,
        &etag,
        json!({"set": {format!("{c}.service_board"): board(4, "Desk"), format!("{c}.new_status"): board(40, "New"), format!("{c}.closed_status"): board(41, "Done")}}),
    )
    .await;
    let (child, _) = create_child(
        &app,
        admin,
        json!({"name": "Client", "set": {format!("{c}.enabled"): true}}),
    )
    .await;
    // …so the parent cannot drop the board.
    let etag = etag_of(
        &app.get(&format!("/api/v1/policies/{root_id}"), &admin.access)
            .await,
    );
    let response = save(
        &app,
        admin,
        &root_id,
        &etag,
        json!({"unset": [format!("{c}.service_board")]}),
    )
    .await;
    let problem = assert_problem(response, 422, "validation_failed").await;
    assert!(
        problem.to_string().contains("Client"),
        "names the descendant: {problem}"
    );
    assert_eq!(child["version"], 1);
}

#[tokio::test]
async fn the_tree_has_a_depth_limit_no_cycles_and_safe_deletes() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root_id, root_etag) = root_policy(&app, admin).await;
    let mut parent = root_id.clone();
    let mut chain = Vec::new();
    for level in 2..=5 {
        let (policy, etag) = create_child(
            &app,
            admin,
            json!({"name": format!("Level {level}"), "parent_id": parent}),
        )
        .await;
        parent = policy["id"].as_str().unwrap().to_owned();
        chain.push((parent.clone(), etag));
    }
    let too_deep = app
        .post(
            "/api/v1/policies",
            Some(&admin.access),
            &json!({"name": "Level 6", "parent_id": parent}),
        )
        .await;
    let problem = assert_problem(too_deep, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["code"], "too_deep");

    // Level 2 under level 4 would be a cycle.
    let (level2, level2_etag) = &chain[0];
    let cycle = save(&app, admin, level2, level2_etag, json!({"parent_id": chain[2].0})).await;
    assert_eq!(
        assert_problem(cycle, 422, "validation_failed").await["errors"][0]["code"],
        "cycle"
    );
    let root_move = save(&app, admin, &root_id, &root_etag, json!({"parent_id": level2})).await;
    assert_problem(root_move, 409, "conflict").await;

    let with_children = app
        .delete(
            &format!("/api/v1/policies/{level2}"),
            &admin.access,
            Some(level2_etag),
        )
        .await;
    assert!(
        assert_problem(with_children, 409, "conflict").await["detail"]
            .as_str()
            .unwrap()
            .contains("Level 3")
    );
    let root_delete = app
        .delete(&format!("/api/v1/policies/{root_id}"), &admin.access, Some("*"))
        .await;
    assert_problem(root_delete, 409, "conflict").await;
    let (leaf, leaf_etag) = &chain[3];
    assert_eq!(
        app.delete(
            &format!("/api/v1/policies/{leaf}"),
            &admin.access,
            Some(leaf_etag)
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get(&format!("/api/v1/policies/{leaf}"), &admin.access).await,
        404,
        "not_found",
    )
    .await;

    let duplicate = app
        .post(
            "/api/v1/policies",
            Some(&admin.access),
            &json!({"name": "Level 2"}),
        )
        .await;
    assert_problem(duplicate, 409, "conflict").await;
}

#[tokio::test]
async fn viewers_read_and_only_editors_change_policies() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let viewer = app.create_operator(&tenant.admin, "viewer").await;
    let editor = app.create_operator(&tenant.admin, "editor").await;
    let (id, etag) = root_policy(&app, &viewer).await;
    assert_eq!(
        app.get(&format!("/api/v1/policies/{id}/resolved"), &viewer.access)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/settings/catalog", &viewer.access).await.status(),
        StatusCode::OK
    );
    let body = json!({"set": {"ticketing.events.disk_usage.enabled": false}});
    assert_problem(
        save(&app, &viewer, &id, &etag, body.clone()).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        app.post("/api/v1/policies", Some(&viewer.access), &json!({"name": "X"}))
            .await,
        403,
        "forbidden",
    )
    .await;
    save_ok(&app, &editor, &id, &etag, body).await;
    // Secrets leave only with an admin's passphrase.
    let export = app
        .post(
            &format!("/api/v1/policies/{id}/export"),
            Some(&editor.access),
            &json!({"passphrase": "a long export passphrase"}),
        )
        .await;
    assert_problem(export, 403, "forbidden").await;
}

#[tokio::test]
async fn the_catalogue_lists_fields_event_classes_and_rules() {
    let app = TestApp::spawn().await;
    let catalog: Value = app
        .get("/api/v1/settings/catalog", &app.platform.access)
        .await
        .json()
        .await
        .unwrap();
    let fields = catalog["fields"].as_array().unwrap();
    let field = |path: &str| fields.iter().find(|f| f["path"] == path).unwrap();
    assert_eq!(field("connectwise.private_key")["secret"], true);
    assert_eq!(field("connectwise.site")["type"], "site");
    assert_eq!(field("ticketing.service_ticket_company")["scope"], "device");
    assert_eq!(
        field("ticketing.events.boot_vm_check.new_status")["reference"],
        "status"
    );
    let classes: Vec<&str> = catalog["event_classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        classes,
        [
            "agent_status",
            "boot_vm_check",
            "disk_usage",
            "failed_backup",
            "missed_backup",
            "successful_backup",
            "pool_status",
            "replication"
        ]
    );
    assert_eq!(fields.len(), 6 + 8 * 4 + 4);
    assert!(
        catalog["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "statuses_must_differ")
    );
}
