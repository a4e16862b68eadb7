//! The field audit's answers: who inherits or overrides a field, where each device stands
//! (one rule for its flags everywhere), the policy dashboard with descendants and versions,
//! and what a device had at a past moment.

use crate::devices::{TestDevice, fast_tenant, inherited_report, pull, register, report};
use crate::helpers::{TestApp, assert_problem};
use crate::policies::{SECRET, create_child, root_policy, save_ok, seed_settings};
use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOARD: &str = "ticketing.events.failed_backup.service_board";
const SITE: &str = "connectwise.site";

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["device_id"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// Pulls and reports every served field inherited, except `changed` (`field → state`).
async fn pull_and_report(app: &TestApp, device: &TestDevice, changed: &[(&str, Value)]) -> Value {
    let config: Value = pull(app, device, None).await.json().await.unwrap();
    let mut body = inherited_report(&config);
    for (field, state) in changed {
        body["fields"][*field] = state.clone();
    }
    let receipt = report(app, device, &body).await;
    assert_eq!(receipt.status(), StatusCode::OK);
    config
}

fn overridden_board() -> Value {
    json!({"state": "overridden", "value": {"id": 77, "name": "Local desk"}})
}

fn overridden_site() -> Value {
    json!({"state": "overridden", "value": "rogue.example"})
}

fn failed() -> Value {
    json!({"state": "failed", "error": "board not found"})
}

/// A tenant whose root policy has the seed settings with the site locked (version 2).
async fn seeded(app: &TestApp) -> (crate::helpers::TenantFixture, String, String) {
    let tenant = fast_tenant(app, "Acme").await;
    let (root, etag) = root_policy(app, &tenant.admin).await;
    let mut settings = seed_settings();
    settings["lock"] = json!([SITE]);
    let (_, etag) = save_ok(app, &tenant.admin, &root, &etag, settings).await;
    (tenant, root, etag)
}

#[tokio::test]
async fn inherited_and_overrides_list_what_they_say_with_hostnames_and_filters() {
    let app = TestApp::spawn().await;
    let (tenant, _, _) = seeded(&app).await;
    let admin = &tenant.admin;
    let applied = register(&app, admin, "HW-A", "appliance").await;
    let overriding = register(&app, admin, "HW-B", "vault").await;
    let failing = register(&app, admin, "HW-C", "appliance").await;
    let silent = register(&app, admin, "HW-D", "vault").await;
    pull_and_report(&app, &applied, &[]).await;
    pull_and_report(
        &app,
        &overriding,
        &[(BOARD, overridden_board()), (SITE, overridden_site())],
    )
    .await;
    pull_and_report(&app, &failing, &[(BOARD, failed())]).await;
    pull(&app, &silent, None).await;

    // Only devices that inherit the board: applied it, or not reported yet.
    let path = format!("/api/v1/audit/inherited?field={BOARD}");
    let all = app.get_json(&path, &admin.access).await;
    assert_eq!(
        sorted(ids(&all)),
        sorted(vec![applied.id.clone(), silent.id.clone()])
    );
    let item = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["device_id"] == applied.id.as_str())
        .unwrap();
    assert_eq!(item["hostname"], "hw-a.local");
    assert_eq!(item["policy_version"], 2);
    assert_eq!(item["reported"]["state"], "inherited");
    let reported = app
        .get_json(&format!("{path}&state=inherited"), &admin.access)
        .await;
    assert_eq!(ids(&reported), [applied.id.as_str()]);
    let not_reported = app
        .get_json(&format!("{path}&state=not_reported"), &admin.access)
        .await;
    assert_eq!(ids(&not_reported), [silent.id.as_str()]);
    assert!(not_reported["items"][0]["reported"].is_null());
    let first = app.get_json(&format!("{path}&limit=1"), &admin.access).await;
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = app
        .get_json(&format!("{path}&limit=1&cursor={cursor}"), &admin.access)
        .await;
    assert!(second["next_cursor"].is_null());
    assert_eq!(sorted([ids(&first), ids(&second)].concat()), sorted(ids(&all)));

    // A typo is a 422 with the nearest path, not an empty list; a wrong state a 400.
    let typo = app
        .get(
            "/api/v1/audit/inherited?field=ticketing.events.failed_backup.service_bord",
            &admin.access,
        )
        .await;
    let problem = assert_problem(typo, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "field");
    assert_eq!(problem["errors"][0]["code"], "unknown_setting");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("did you mean `{BOARD}`")),
        "{problem}"
    );
    assert_problem(
        app.get(&format!("{path}&state=sideways"), &admin.access).await,
        400,
        "invalid_query",
    )
    .await;

    // Overrides: both of the overriding vault's fields, paginated, filterable, named.
    let overrides = app.get_json("/api/v1/audit/overrides", &admin.access).await;
    let fields: Vec<&str> = overrides["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, [SITE, BOARD], "in device, then field order");
    assert!(
        overrides["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["device_id"] == overriding.id.as_str() && i["hostname"] == "hw-b.local")
    );
    assert!(overrides["next_cursor"].is_null());
    let page_one = app
        .get_json("/api/v1/audit/overrides?limit=1", &admin.access)
        .await;
    assert_eq!(page_one["items"].as_array().unwrap().len(), 1);
    let cursor = page_one["next_cursor"].as_str().expect("a second page");
    let page_two = app
        .get_json(
            &format!("/api/v1/audit/overrides?limit=1&cursor={cursor}"),
            &admin.access,
        )
        .await;
    assert_eq!(page_two["items"].as_array().unwrap().len(), 1);
    assert_ne!(page_one["items"][0]["field"], page_two["items"][0]["field"]);
    assert!(page_two["next_cursor"].is_null());
    let violations = app
        .get_json("/api/v1/audit/overrides?state=violation", &admin.access)
        .await;
    assert_eq!(violations["items"].as_array().unwrap().len(), 1);
    assert_eq!(violations["items"][0]["field"], SITE);
    assert_eq!(violations["items"][0]["violation"], true);
    let allowed = app
        .get_json(
            &format!("/api/v1/audit/overrides?state=allowed&field={BOARD}"),
            &admin.access,
        )
        .await;
    assert_eq!(allowed["items"][0]["field"], BOARD);
    assert_eq!(
        allowed["items"][0]["reported"]["local_value"],
        json!({"id": 77, "name": "Local desk"})
    );
    let typo = app
        .get("/api/v1/audit/overrides?field=connectwise.stie", &admin.access)
        .await;
    let problem = assert_problem(typo, 422, "validation_failed").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("did you mean `connectwise.site`")
    );
    assert_problem(
        app.get("/api/v1/audit/overrides?cursor=nonsense", &admin.access)
            .await,
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        app.get("/api/v1/audit/overrides?limit=0", &admin.access).await,
        400,
        "invalid_query",
    )
    .await;

    // A decommissioned device runs nothing the server serves: it leaves both lists.
    for device in [&applied, &overriding] {
        let retired = app
            .post(
                &format!("/api/v1/devices/{}/decommission", device.id),
                Some(&admin.access),
                &json!({}),
            )
            .await;
        assert_eq!(retired.status(), StatusCode::OK);
    }
    let all = app.get_json(&path, &admin.access).await;
    assert_eq!(ids(&all), [silent.id.as_str()]);
    let overrides = app.get_json("/api/v1/audit/overrides", &admin.access).await;
    assert_eq!(overrides["items"], json!([]));
}

/// `(sync_state, in_sync, pending, failed)` of a device response.
fn flags(device: &Value) -> (String, bool, bool, bool) {
    (
        device["sync_state"].as_str().unwrap().to_owned(),
        device["in_sync"].as_bool().unwrap(),
        device["pending"].as_bool().unwrap(),
        device["failed"].as_bool().unwrap(),
    )
}

fn expected(state: &str) -> (String, bool, bool, bool) {
    (
        state.to_owned(),
        state == "in_sync",
        state == "pending",
        state == "failed",
    )
}

#[tokio::test]
async fn device_flags_follow_the_field_table_and_the_dashboard_counts_descendants_and_versions() {
    let app = TestApp::spawn().await;
    let (tenant, root, etag) = seeded(&app).await;
    let admin = &tenant.admin;
    let (child, _) = create_child(&app, admin, json!({"name": "Client"})).await;
    let child_id = child["id"].as_str().unwrap().to_owned();

    let applied = register(&app, admin, "HW-A", "appliance").await;
    let violating = register(&app, admin, "HW-B", "vault").await;
    let failing = register(&app, admin, "HW-C", "appliance").await;
    let silent = register(&app, admin, "HW-D", "vault").await;
    let both = register(&app, admin, "HW-E", "appliance").await;
    let below = register(&app, admin, "HW-F", "appliance").await;
    let path = format!("/api/v1/devices/{}", below.id);
    let etag_below = crate::helpers::etag_of(&app.get(&path, &admin.access).await);
    let moved = app
        .patch(
            &path,
            &admin.access,
            Some(&etag_below),
            &json!({"policy_id": child_id}),
        )
        .await;
    assert_eq!(moved.status(), StatusCode::OK);

    pull_and_report(&app, &applied, &[]).await;
    pull_and_report(&app, &violating, &[(SITE, overridden_site())]).await;
    pull_and_report(&app, &failing, &[(BOARD, failed())]).await;
    pull(&app, &silent, None).await;
    pull_and_report(&app, &below, &[]).await;
    // Applied the config first, then a field failed and the locked site runs a local value:
    // failed, not in sync.
    let config = pull_and_report(&app, &both, &[]).await;
    let mut later = inherited_report(&config);
    later["fields"][BOARD] = failed();
    later["fields"][SITE] = overridden_site();
    assert_eq!(report(&app, &both, &later).await.status(), StatusCode::OK);

    let cases = [
        (&applied, "in_sync"),
        (&violating, "pending"),
        (&failing, "failed"),
        (&silent, "pending"),
        (&both, "failed"),
        (&below, "in_sync"),
    ];
    let list = app.get_json("/api/v1/devices?limit=200", &admin.access).await;
    for (device, state) in cases {
        let detail = app
            .get_json(&format!("/api/v1/devices/{}", device.id), &admin.access)
            .await;
        assert_eq!(flags(&detail), expected(state), "{}", device.id);
        let fields = app
            .get_json(&format!("/api/v1/devices/{}/fields", device.id), &admin.access)
            .await;
        assert_eq!(flags(&fields["device"]), expected(state), "{}", device.id);
        let listed = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == device.id.as_str())
            .unwrap();
        assert_eq!(flags(listed), expected(state), "{}", device.id);
        let failed_fields = fields["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["reported"]["state"] == "failed");
        assert_eq!(failed_fields, state == "failed", "the field table agrees");
    }
    let pending = app
        .get_json(
            &format!("/api/v1/policies/{root}/devices?state=pending"),
            &admin.access,
        )
        .await;
    let pending: Vec<String> = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sorted(pending),
        sorted(vec![violating.id.clone(), silent.id.clone()])
    );

    // The devices of the root (its child's too) page like every list.
    let mut listed = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get_json(
                &format!("/api/v1/policies/{root}/devices?limit=4{cursor}"),
                &admin.access,
            )
            .await;
        listed.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(listed.len(), 6);
    assert_eq!(listed, sorted(listed.clone()), "in id order, no repeats");

    // The root counts its child's device too; `direct` only its own.
    let dashboard = app.get_json("/api/v1/dashboard/policies", &admin.access).await;
    let policy = |id: &str| {
        dashboard["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["policy_id"] == id)
            .unwrap()
            .clone()
    };
    let top = policy(&root);
    let counts = |p: &Value| {
        [
            "assigned",
            "in_sync",
            "pending",
            "failed",
            "overridden",
            "violations",
        ]
        .map(|k| p[k].as_u64().unwrap())
    };
    assert_eq!(counts(&top), [6, 2, 2, 2, 2, 2]);
    assert_eq!(counts(&top["direct"]), [5, 1, 2, 2, 2, 2]);
    let client = policy(&child_id);
    assert_eq!(client["parent_id"], root.as_str());
    assert_eq!(counts(&client), [1, 1, 0, 0, 0, 0]);
    assert_eq!(counts(&client["direct"]), [1, 1, 0, 0, 0, 0]);

    // Versions: the applied devices run version 2; the failed and the silent ones do not run
    // what they were served; the child's device gets nothing from the child itself.
    assert_eq!(
        top["compliance"],
        json!({"current_version": 2, "on_current_version": 3, "on_older_version": 0,
               "not_applied": 3, "not_served": 0, "versions": [{"version": 2, "devices": 3}]})
    );
    assert_eq!(client["compliance"]["not_served"], 1);

    // Version 3: one device takes it, the others still run version 2.
    save_ok(
        &app,
        admin,
        &root,
        &etag,
        json!({"set": {"ticketing.events.agent_status.enabled": false}}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    pull_and_report(&app, &applied, &[]).await;
    let dashboard = app.get_json("/api/v1/dashboard/policies", &admin.access).await;
    let top = dashboard["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["policy_id"] == root.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        top["compliance"],
        json!({"current_version": 3, "on_current_version": 1, "on_older_version": 2,
               "not_applied": 3, "not_served": 0,
               "versions": [{"version": 3, "devices": 1}, {"version": 2, "devices": 2}]})
    );
    assert_eq!(
        top["in_sync"], 1,
        "the others have not applied version 3's config"
    );
}

fn at_param(time: chrono::DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[tokio::test]
async fn a_devices_fields_at_a_past_moment_with_the_policy_version_each_came_from() {
    let app = TestApp::spawn().await;
    let (tenant, root, etag) = seeded(&app).await;
    let admin = &tenant.admin;
    let missed = "ticketing.events.missed_backup.service_board";
    let device = register(&app, admin, "HW-T", "vault").await;
    let before_pull = Utc::now();
    pull_and_report(&app, &device, &[(BOARD, overridden_board())]).await;
    let on_version_2 = Utc::now();
    save_ok(
        &app,
        admin,
        &root,
        &etag,
        json!({"set": {missed: {"id": 42, "name": "Escalations"}}}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    pull_and_report(&app, &device, &[]).await;
    let on_version_3 = Utc::now();

    let fields_at = |time: String| {
        let app = &app;
        let device = &device;
        async move {
            app.get_json(
                &format!("/api/v1/devices/{}/fields?at={time}", device.id),
                &admin.access,
            )
            .await
        }
    };
    let field = |body: &Value, path: &str| {
        body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == path)
            .unwrap_or_else(|| panic!("no {path} in {body}"))
            .clone()
    };

    let then = fields_at(at_param(on_version_2)).await;
    let echoed = chrono::DateTime::parse_from_rfc3339(then["at"].as_str().unwrap()).unwrap();
    assert_eq!(at_param(echoed.with_timezone(&Utc)), at_param(on_version_2));
    let board = field(&then, missed);
    assert_eq!(board["source"], "policy");
    assert_eq!(board["source_policy"]["policy_name"], "Default");
    assert_eq!(board["source_policy"]["version"], 2);
    assert_eq!(board["value"], json!({"id": 2, "name": "Board 2"}));
    assert_eq!(board["reported"]["state"], "inherited");
    let local = field(&then, BOARD);
    assert_eq!(local["reported"]["state"], "overridden");
    assert_eq!(
        local["reported"]["local_value"],
        json!({"id": 77, "name": "Local desk"})
    );
    let site = field(&then, SITE);
    assert_eq!(site["locked"], true);
    assert_eq!(field(&then, "connectwise.private_key")["value"]["set"], true);
    assert!(!then.to_string().contains(SECRET), "secrets stay masked");

    let later = fields_at(at_param(on_version_3)).await;
    let board = field(&later, missed);
    assert_eq!(board["source_policy"]["version"], 3);
    assert_eq!(board["value"], json!({"id": 42, "name": "Escalations"}));
    assert_eq!(field(&later, BOARD)["reported"]["state"], "inherited");
    // The same moment written with an offset.
    let offset = on_version_3
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(SecondsFormat::Micros, false)
        .replace('+', "%2B");
    assert_eq!(fields_at(offset).await["fields"], later["fields"]);

    // Registered but not served yet: nothing, said plainly.
    let empty = fields_at(at_param(before_pull)).await;
    assert_eq!(empty["fields"], json!([]));

    // Before the device existed: a 404 that says so; a malformed time: a 422 naming `at`.
    let url = |at: &str| format!("/api/v1/devices/{}/fields?at={at}", device.id);
    let gone = assert_problem(
        app.get(&url("2000-01-01T00:00:00Z"), &admin.access).await,
        404,
        "not_found",
    )
    .await;
    assert!(
        gone["detail"].as_str().unwrap().contains("registered at"),
        "{gone}"
    );
    for bad in ["yesterday", "2026-13-01T00:00:00Z", "2026-11-28"] {
        let problem = assert_problem(app.get(&url(bad), &admin.access).await, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "at");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("RFC 3339"), "{detail}");
        assert!(!detail.contains("input"), "no parser internals: {detail}");
    }
}

#[tokio::test]
async fn policy_versions_page_with_next_cursor() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let admin = &tenant.admin;
    let (root, mut etag) = root_policy(&app, admin).await;
    for i in 0..4 {
        let (_, next) = save_ok(&app, admin, &root, &etag, json!({"description": format!("v{i}")})).await;
        etag = next;
    }
    let path = format!("/api/v1/policies/{root}/versions");
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get_json(&format!("{path}?limit=2{cursor}"), &admin.access)
            .await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["version"].as_i64().unwrap()),
        );
        assert!(page.get("next_after").is_none());
        match page["next_cursor"].as_i64() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    assert_problem(
        app.get(&format!("{path}?after=2"), &admin.access).await,
        400,
        "invalid_query",
    )
    .await;
}
