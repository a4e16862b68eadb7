//! Drafts, impact previews and staged rollouts over a simulated fleet, on a manual clock: hold
//! periods and pull intervals pass by advancing the clock, never by sleeping.

use crate::devices::{TestDevice, enrollment_token, fast_tenant, register_with};
use crate::helpers::{Session, TenantFixture, TestApp, assert_problem, etag_of, test_config};
use crate::policies::{SECRET, root_policy, save, save_ok, seed_settings};
use chrono::{Duration, Utc};
use gmp::clock::Clock;
use gmp::services::rollouts::rollout_job;
use gmp::startup::Application;
use gmp::state::AppState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub(crate) const BOARD: &str = "ticketing.events.failed_backup.service_board";
const NEW_STATUS: &str = "ticketing.events.failed_backup.new_status";
const CLOSED_STATUS: &str = "ticketing.events.failed_backup.closed_status";
pub(crate) const DISK: &str = "ticketing.events.disk_usage.enabled";
/// The tenant's pull interval (see `fast_tenant`).
pub(crate) const INTERVAL: i64 = 60;

/// A replica: where it listens and its state (to run its jobs).
pub(crate) struct Replica {
    address: String,
    state: AppState,
}

impl Replica {
    pub(crate) fn of(app: &TestApp) -> Self {
        Self {
            address: app.address.clone(),
            state: app.state.clone(),
        }
    }

    /// Another replica on the same database and clock, with empty caches: a restart.
    async fn start(app: &TestApp, clock: &Clock) -> Self {
        let application = Application::build_with_clock(test_config(&app.db), clock.clone())
            .await
            .expect("second replica starts");
        let replica = Self {
            address: format!("http://127.0.0.1:{}", application.port()),
            state: application.state().clone(),
        };
        tokio::spawn(application.run_until(std::future::pending()));
        replica
    }
}

pub(crate) async fn spawn() -> (TestApp, Clock) {
    let clock = Clock::manual(Utc::now());
    let app = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    (app, clock)
}

/// `n` devices registered with one token, assigned to the root policy.
async fn fleet(app: &TestApp, admin: &Session, n: usize) -> Vec<TestDevice> {
    let token = enrollment_token(app, admin, json!({"max_uses": n})).await;
    let token = token["token"].as_str().unwrap().to_owned();
    let mut devices = Vec::with_capacity(n);
    for i in 0..n {
        let response = register_with(app, &token, &format!("HW-FLEET-{i:04}"), "appliance").await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        devices.push(TestDevice {
            id: body["device_id"].as_str().unwrap().to_owned(),
            credential: body["credential"].as_str().unwrap().to_owned(),
        });
    }
    devices
}

/// A seeded tenant with `n` devices on its root policy; the root's id and ETag.
pub(crate) async fn seeded(app: &TestApp, n: usize) -> (TenantFixture, Vec<TestDevice>, String, String) {
    let tenant = fast_tenant(app, "Acme").await;
    let (root, etag) = root_policy(app, &tenant.admin).await;
    let (_, etag) = save_ok(app, &tenant.admin, &root, &etag, seed_settings()).await;
    let devices = fleet(app, &tenant.admin, n).await;
    (tenant, devices, root, etag)
}

pub(crate) async fn pull_from(app: &TestApp, replica: &Replica, device: &TestDevice) -> Value {
    let response = app
        .client
        .get(format!("{}/device/v1/config", replica.address))
        .bearer_auth(&device.credential)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// One pull cycle: the clock moves one interval on, every device pulls and reports. A device
/// for which `fails` says so reports the failed-backup board as failed.
pub(crate) async fn cycle(
    app: &TestApp,
    replica: &Replica,
    clock: &Clock,
    devices: &[TestDevice],
    fails: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    clock.advance(Duration::seconds(INTERVAL + 1));
    let mut configs = Vec::with_capacity(devices.len());
    for device in devices {
        let config = pull_from(app, replica, device).await;
        let mut fields: serde_json::Map<String, Value> = config["settings"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (k.clone(), json!({"state": "inherited"})))
            .collect();
        if fails(&config) {
            fields.insert(BOARD.into(), json!({"state": "failed", "error": "no such board"}));
        }
        let response = app
            .client
            .post(format!("{}/device/v1/report", replica.address))
            .bearer_auth(&device.credential)
            .json(&json!({"config_hash": config["config_hash"], "fields": fields}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        configs.push(config);
    }
    configs
}

pub(crate) fn board_id(config: &Value) -> i64 {
    config["settings"][BOARD]["id"].as_i64().unwrap()
}

/// The edit that moves failed-backup tickets to board 7.
pub(crate) fn board_edit() -> Value {
    json!({"set": {
        BOARD: {"id": 7, "name": "Board 7"},
        NEW_STATUS: {"id": 107, "name": "New"},
        CLOSED_STATUS: {"id": 207, "name": "Closed"},
    }, "comment": "failed backups to board 7"})
}

pub(crate) async fn create_draft(app: &TestApp, admin: &Session, policy: &str, body: &Value) -> Value {
    let response = app
        .post(
            &format!("/api/v1/policies/{policy}/drafts"),
            Some(&admin.access),
            body,
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn start_rollout(app: &TestApp, admin: &Session, policy: &str, draft: &str) -> Value {
    let response = app
        .post(
            &format!("/api/v1/policies/{policy}/rollouts"),
            Some(&admin.access),
            &json!({
                "draft_id": draft,
                "waves": [{"percent": 10, "hold_pull_cycles": 1}, {"percent": 50, "hold_pull_cycles": 1}, {"percent": 100}],
                "health": {"max_failed_ratio": 0.05, "min_reports": 5},
            }),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// The member of a list of fields or changes with this `path`.
pub(crate) fn by_path(list: &Value, path: &str) -> Value {
    let found = list.as_array().unwrap().iter().find(|f| f["path"] == path);
    found.cloned().unwrap_or_else(|| panic!("no `{path}` in {list}"))
}

pub(crate) async fn rollout(app: &TestApp, admin: &Session, id: &str) -> Value {
    app.get(&format!("/api/v1/rollouts/{id}"), &admin.access)
        .await
        .json()
        .await
        .unwrap()
}

pub(crate) async fn actions(app: &TestApp, admin: &Session, query: &str) -> Vec<Value> {
    let page: Value = app
        .get(&format!("/api/v1/audit/changes?limit=200{query}"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_healthy_rollout_advances_wave_by_wave_and_publishes() {
    let (app, clock) = spawn().await;
    let (tenant, devices, root, etag) = seeded(&app, 200).await;
    let admin = &tenant.admin;
    let here = Replica::of(&app);
    let before = cycle(&app, &here, &clock, &devices, |_| false).await;
    assert!(before.iter().all(|c| board_id(c) == 1));

    let draft = create_draft(&app, admin, &root, &board_edit()).await;
    let started = start_rollout(&app, admin, &root, draft["id"].as_str().unwrap()).await;
    let id = started["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (started["state"].clone(), started["wave"].clone()),
        (json!("running"), json!(1))
    );
    assert_eq!(
        (started["from_version"].clone(), started["to_version"].clone()),
        (json!(2), json!(3))
    );

    // While it runs, the policy cannot be saved, and no second rollout starts.
    let blocked = save(&app, admin, &root, &etag, json!({"description": "meanwhile"})).await;
    let detail = assert_problem(blocked, 409, "conflict").await["detail"].clone();
    assert!(detail.as_str().unwrap().contains(&id), "{detail}");
    let other = create_draft(&app, admin, &root, &json!({"description": "other"})).await;
    let second = app
        .post(
            &format!("/api/v1/policies/{root}/rollouts"),
            Some(&admin.access),
            &json!({"draft_id": other["id"], "waves": [{"percent": 100}], "health": {"max_failed_ratio": 0.1}}),
        )
        .await;
    assert_problem(second, 409, "conflict").await;

    // Wave 1: about 10 % of the fleet gets board 7, the rest keeps board 1.
    let configs = cycle(&app, &here, &clock, &devices, |_| false).await;
    let on_new = configs.iter().filter(|c| board_id(c) == 7).count();
    assert!((5..=40).contains(&on_new), "{on_new} of 200 in a 10 % wave");
    assert!(configs.iter().all(|c| [1, 7].contains(&board_id(c))));
    let status = rollout(&app, admin, &id).await;
    assert_eq!(status["waves"][0]["figures"]["served"], on_new as u64, "{status}");
    assert_eq!(status["waves"][0]["figures"]["reported"], on_new as u64);
    assert_eq!(
        status["devices_per_version"],
        json!({"2": 200 - on_new, "3": on_new})
    );

    // The job advances once the hold is over and the wave is healthy; the same devices stay in.
    let wave_one: Vec<usize> = (0..200).filter(|i| board_id(&configs[*i]) == 7).collect();
    let mut waves_seen = vec![on_new];
    for _ in 0..6 {
        rollout_job(&app.state, clock.now()).await.unwrap();
        if rollout(&app, admin, &id).await["state"] == "completed" {
            break;
        }
        let configs = cycle(&app, &here, &clock, &devices, |_| false).await;
        assert!(
            wave_one.iter().all(|i| board_id(&configs[*i]) == 7),
            "a device left its wave"
        );
        waves_seen.push(configs.iter().filter(|c| board_id(c) == 7).count());
    }
    let done = rollout(&app, admin, &id).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert!(waves_seen.windows(2).all(|w| w[0] <= w[1]), "{waves_seen:?}");
    assert!(
        waves_seen.iter().any(|n| (60..=140).contains(n)),
        "a half wave: {waves_seen:?}"
    );
    assert_eq!(done["devices_per_version"], json!({"3": 200}));

    // Published as version 3; the draft is gone; every device gets board 7.
    let policy: Value = app
        .get(&format!("/api/v1/policies/{root}"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(policy["version"], 3);
    assert_eq!(policy["values"][BOARD]["id"], 7);
    let gone = app
        .get(
            &format!("/api/v1/policies/{root}/drafts/{}", draft["id"].as_str().unwrap()),
            &admin.access,
        )
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let last = cycle(&app, &here, &clock, &devices, |_| false).await;
    assert!(last.iter().all(|c| board_id(c) == 7));
    assert!(last.iter().all(|c| c["provenance"][BOARD]["version"] == 3));

    let log = actions(&app, admin, "&target_type=rollout").await;
    let names: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "rollout.completed",
            "rollout.advanced",
            "rollout.advanced",
            "rollout.started"
        ],
        "newest first"
    );
    let published = actions(&app, admin, "&action=policy.rolled_out").await;
    assert_eq!(published.len(), 1);
}

#[tokio::test]
async fn a_failing_wave_halts_and_rolls_back_automatically() {
    let (app, clock) = spawn().await;
    let (tenant, devices, root, _) = seeded(&app, 200).await;
    let admin = &tenant.admin;
    let here = Replica::of(&app);
    cycle(&app, &here, &clock, &devices, |_| false).await;
    let draft = create_draft(&app, admin, &root, &board_edit()).await;
    let started = start_rollout(&app, admin, &root, draft["id"].as_str().unwrap()).await;
    let id = started["id"].as_str().unwrap().to_owned();

    // Board 7 does not exist: every device given it reports the field as failed.
    let configs = cycle(&app, &here, &clock, &devices, |c| board_id(c) == 7).await;
    let wave: Vec<usize> = (0..200).filter(|i| board_id(&configs[*i]) == 7).collect();
    assert!(!wave.is_empty());
    rollout_job(&app.state, clock.now()).await.unwrap();
    let halted = rollout(&app, admin, &id).await;
    assert_eq!(halted["state"], "rolled_back", "{halted}");
    assert_eq!(halted["wave"], 1);
    assert_eq!(halted["waves"][0]["figures"]["failed"], wave.len() as u64);
    let reason = halted["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{} of {}", wave.len(), wave.len())),
        "{reason}"
    );
    assert_eq!(halted["devices_per_version"], json!({"2": 200}));

    // Every device is served the previous version again; the policy did not move.
    let configs = cycle(&app, &here, &clock, &devices, |_| false).await;
    assert!(configs.iter().all(|c| board_id(c) == 1));
    assert!(configs.iter().all(|c| c["provenance"][BOARD]["version"] == 2));
    let policy: Value = app
        .get(&format!("/api/v1/policies/{root}"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(policy["version"], 2);

    // The change log says why, with the figures; the draft stays for a fix.
    let log = actions(&app, admin, "&action=rollout.rolled_back").await;
    assert_eq!(log.len(), 1);
    let changes = log[0]["changes"].as_array().unwrap();
    let figures = changes.iter().find(|c| c["field"] == "figures").unwrap();
    assert_eq!(figures["after"]["failed"], wave.len() as u64);
    assert!(changes.iter().any(|c| c["field"] == "reason"));
    let kept = app
        .get(
            &format!("/api/v1/policies/{root}/drafts/{}", draft["id"].as_str().unwrap()),
            &admin.access,
        )
        .await;
    assert_eq!(kept.status(), StatusCode::OK);
    // A stopped rollout takes no more commands.
    let promote = app
        .post(
            &format!("/api/v1/rollouts/{id}/promote"),
            Some(&admin.access),
            &json!({}),
        )
        .await;
    assert_problem(promote, 409, "conflict").await;
}

#[tokio::test]
async fn a_rollout_resumes_on_another_replica_and_operators_steer_it() {
    let (app, clock) = spawn().await;
    let (tenant, devices, root, _) = seeded(&app, 60).await;
    let admin = &tenant.admin;
    let first = Replica::of(&app);
    cycle(&app, &first, &clock, &devices, |_| false).await;
    let draft = create_draft(&app, admin, &root, &board_edit()).await;
    let id = start_rollout(&app, admin, &root, draft["id"].as_str().unwrap()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let configs = cycle(&app, &first, &clock, &devices, |_| false).await;
    let wave: Vec<usize> = (0..devices.len())
        .filter(|i| board_id(&configs[*i]) == 7)
        .collect();

    // A fresh replica (nothing cached) serves the same waves and runs the job on.
    let second = Replica::start(&app, &clock).await;
    let again = cycle(&app, &second, &clock, &devices, |_| false).await;
    let wave_again: Vec<usize> = (0..devices.len()).filter(|i| board_id(&again[*i]) == 7).collect();
    assert_eq!(wave, wave_again);

    let unknown = app
        .post(
            &format!("/api/v1/rollouts/{id}/explode"),
            Some(&admin.access),
            &json!({}),
        )
        .await;
    assert_problem(unknown, 400, "invalid_path").await;
    let paused = app
        .post(
            &format!("/api/v1/rollouts/{id}/pause"),
            Some(&admin.access),
            &json!({}),
        )
        .await;
    assert_eq!(paused.status(), StatusCode::OK);
    rollout_job(&second.state, clock.now()).await.unwrap();
    assert_eq!(
        rollout(&app, admin, &id).await["wave"],
        1,
        "a paused rollout holds"
    );
    app.post(
        &format!("/api/v1/rollouts/{id}/resume"),
        Some(&admin.access),
        &json!({}),
    )
    .await;
    rollout_job(&second.state, clock.now()).await.unwrap();
    assert_eq!(rollout(&app, admin, &id).await["wave"], 2);

    let promoted: Value = app
        .post(
            &format!("/api/v1/rollouts/{id}/promote"),
            Some(&admin.access),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(promoted["state"], "completed", "{promoted}");
    let configs = cycle(&app, &second, &clock, &devices, |_| false).await;
    assert!(configs.iter().all(|c| board_id(c) == 7));

    // Aborting serves the previous version again and keeps the draft.
    let (_, etag) = root_policy(&app, admin).await;
    let revert = create_draft(&app, admin, &root, &json!({"set": {DISK: false}})).await;
    let id = start_rollout(&app, admin, &root, revert["id"].as_str().unwrap()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let aborted: Value = app
        .post(
            &format!("/api/v1/rollouts/{id}/abort"),
            Some(&admin.access),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(aborted["state"], "aborted");
    let configs = cycle(&app, &first, &clock, &devices, |_| false).await;
    assert!(configs.iter().all(|c| c["settings"][DISK] == true));
    save_ok(
        &app,
        admin,
        &root,
        &etag,
        json!({"description": "saves work again"}),
    )
    .await;
}

#[tokio::test]
async fn a_draft_never_reaches_a_device_and_is_published_like_a_save() {
    let (app, clock) = spawn().await;
    let (tenant, devices, root, etag) = seeded(&app, 3).await;
    let admin = &tenant.admin;
    let here = Replica::of(&app);
    let before = cycle(&app, &here, &clock, &devices, |_| false).await;

    let mut edit = board_edit();
    edit["set"]["connectwise.private_key"] = json!("A-NEW-SECRET-9d2e");
    let draft = create_draft(&app, admin, &root, &edit).await;
    assert!(!draft.to_string().contains("A-NEW-SECRET-9d2e"));
    assert_eq!(draft["base_version"], 2);
    assert!(
        draft["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == format!("values.{BOARD}"))
    );
    let draft_id = draft["id"].as_str().unwrap();
    let path = format!("/api/v1/policies/{root}/drafts/{draft_id}");

    let after = cycle(&app, &here, &clock, &devices, |_| false).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b["config_hash"], a["config_hash"], "a draft reached a device");
    }
    let listed: Value = app
        .get(&format!("/api/v1/policies/{root}/drafts"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    // Replacing needs the draft's ETag; bad input is a 422 and changes nothing.
    let stale = app
        .request(Method::PUT, &path, Some(&admin.access))
        .header("if-match", "\"7\"")
        .json(&board_edit())
        .send()
        .await
        .unwrap();
    assert_problem(stale, 412, "precondition_failed").await;
    let invalid = app
        .request(Method::PUT, &path, Some(&admin.access))
        .header("if-match", "\"1\"")
        .json(&json!({"set": {"no.such.field": 1}}))
        .send()
        .await
        .unwrap();
    assert_problem(invalid, 422, "validation_failed").await;
    let replaced = app
        .request(Method::PUT, &path, Some(&admin.access))
        .header("if-match", "\"1\"")
        .json(&board_edit())
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    assert_eq!(etag_of(&replaced), "\"2\"");

    // Publishing is a save: If-Match with the policy's version.
    let publish = format!("{path}/publish?validate=false");
    let stale = app
        .post_with_if_match(&publish, &admin.access, "\"1\"", &json!({}))
        .await;
    assert_problem(stale, 412, "precondition_failed").await;
    let published = app
        .post_with_if_match(&publish, &admin.access, &etag, &json!({}))
        .await;
    assert_eq!(published.status(), StatusCode::OK);
    let policy: Value = published.json().await.unwrap();
    assert_eq!(
        (policy["version"].clone(), policy["values"][BOARD]["id"].clone()),
        (json!(3), json!(7))
    );
    assert_eq!(
        app.get(&path, &admin.access).await.status(),
        StatusCode::NOT_FOUND
    );
    let configs = cycle(&app, &here, &clock, &devices, |_| false).await;
    assert!(configs.iter().all(|c| board_id(c) == 7));

    // Discarding a draft.
    let other = create_draft(&app, admin, &root, &json!({"set": {DISK: false}})).await;
    let other_path = format!("/api/v1/policies/{root}/drafts/{}", other["id"].as_str().unwrap());
    assert_eq!(
        app.delete(&other_path, &admin.access, None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&other_path, &admin.access).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_impact_preview_is_what_devices_are_then_served() {
    let (app, clock) = spawn().await;
    let (tenant, devices, root, etag) = seeded(&app, 7).await;
    let admin = &tenant.admin;
    let here = Replica::of(&app);
    // Two devices override disk-usage tickets; one sits under a child policy that sets them.
    for device in &devices[..2] {
        let path = format!("/api/v1/devices/{}", device.id);
        let etag = etag_of(&app.get(&path, &admin.access).await);
        let updated = app
            .patch(
                &format!("{path}?validate=false"),
                &admin.access,
                Some(&etag),
                &json!({"set": {DISK: true}}),
            )
            .await;
        assert_eq!(updated.status(), StatusCode::OK);
    }
    let child: Value = app
        .post(
            "/api/v1/policies",
            Some(&admin.access),
            &json!({"name": "Client A", "set": {DISK: true}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/devices/{}", devices[2].id);
    let device_etag = etag_of(&app.get(&path, &admin.access).await);
    app.patch(
        &path,
        &admin.access,
        Some(&device_etag),
        &json!({"policy_id": child["id"]}),
    )
    .await;
    let before = cycle(&app, &here, &clock, &devices, |_| false).await;

    let draft = create_draft(
        &app,
        admin,
        &root,
        &json!({"set": {DISK: false, "connectwise.private_key": "ROTATED-KEY-41b7"}}),
    )
    .await;
    let impact_path = format!(
        "/api/v1/policies/{root}/drafts/{}/impact?limit=3",
        draft["id"].as_str().unwrap()
    );
    let impact: Value = app.get(&impact_path, &admin.access).await.json().await.unwrap();
    assert!(!impact.to_string().contains("ROTATED-KEY-41b7"));
    assert!(!impact.to_string().contains(SECRET));
    assert_eq!(impact["devices_in_scope"], 7, "{impact}");
    assert_eq!(impact["devices_changing"], 7, "the secret changes everywhere");
    let field = |path: &str| {
        impact["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap()
            .clone()
    };
    let disk = field(DISK);
    assert_eq!(
        (
            disk["changing"].clone(),
            disk["hidden_by_override"].clone(),
            disk["hidden_by_policy_below"].clone()
        ),
        (json!(4), json!(2), json!(1)),
        "{disk}"
    );
    let key = by_path(&impact["fields"], "connectwise.private_key");
    assert_eq!(
        (key["changing"].clone(), key["secret"].clone()),
        (json!(7), json!(true))
    );

    // Page through every changing device, then publish and compare with what is served.
    let mut listed = impact["devices"].as_array().unwrap().clone();
    let mut cursor = impact["next_cursor"].clone();
    while let Some(next) = cursor.as_str() {
        let page: Value = app
            .get(&format!("{impact_path}&cursor={next}"), &admin.access)
            .await
            .json()
            .await
            .unwrap();
        listed.extend(page["devices"].as_array().unwrap().iter().cloned());
        cursor = page["next_cursor"].clone();
    }
    assert_eq!(listed.len(), 7);
    let secret_change = listed[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "connectwise.private_key")
        .unwrap()
        .clone();
    assert_eq!(secret_change["change"], "changed");
    assert!(secret_change.get("after").is_none());

    let published = app
        .post_with_if_match(
            &format!(
                "/api/v1/policies/{root}/drafts/{}/publish?validate=false",
                draft["id"].as_str().unwrap()
            ),
            &admin.access,
            &etag,
            &json!({}),
        )
        .await;
    assert_eq!(published.status(), StatusCode::OK);
    let after = cycle(&app, &here, &clock, &devices, |_| false).await;
    for (i, device) in devices.iter().enumerate() {
        let entry = listed
            .iter()
            .find(|d| d["device_id"] == device.id.as_str())
            .unwrap();
        let disk_change = entry["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == DISK)
            .cloned();
        match disk_change {
            Some(change) => {
                assert_eq!(change["before"], before[i]["settings"][DISK]);
                assert_eq!(change["after"], after[i]["settings"][DISK]);
            }
            None => assert_eq!(before[i]["settings"][DISK], after[i]["settings"][DISK]),
        }
        assert_ne!(before[i]["config_hash"], after[i]["config_hash"]);
    }

    // Rolling back to version 2 would undo it for the same devices.
    let rollback: Value = app
        .get(
            &format!("/api/v1/policies/{root}/versions/2/impact"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rollback["devices_changing"], 7, "{rollback}");
    let undo = rollback["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == DISK)
        .unwrap()
        .clone();
    assert_eq!(undo["changing"], 4);
    // And an import is previewed the same way, changing nothing.
    let document: Value = app
        .get(&format!("/api/v1/policies/{root}/export"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    let mut changed = document.clone();
    changed["values"][DISK] = json!(true);
    let import: Value = app
        .post(
            &format!("/api/v1/policies/{root}/import/impact?validate=false"),
            Some(&admin.access),
            &json!({"document": changed}),
        )
        .await
        .json()
        .await
        .unwrap();
    let import_disk = import["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == DISK)
        .unwrap()
        .clone();
    assert_eq!(import_disk["changing"], 4, "{import}");
    let policy: Value = app
        .get(&format!("/api/v1/policies/{root}"), &admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(policy["version"], 3, "a preview changes nothing");
}
