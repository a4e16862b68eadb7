//! The rollout gate at its edges, on a manual clock: a wave smaller than `min_reports`, devices
//! that stop pulling, devices already silent when the rollout starts; and the impact preview of
//! devices with fields to reassert.

use crate::helpers::{Session, TestApp, etag_of};
use crate::rollouts::{
    BOARD, DISK, INTERVAL, Replica, board_edit, board_id, create_draft, cycle, pull_from, rollout, seeded,
    spawn,
};
use chrono::Duration;
use gmp::services::rollouts::rollout_job;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Longer than the stale grace (`stale_grace_seconds`, 3600 by default) plus an interval: every
/// device that has not pulled since is stale.
const SILENCE: i64 = 3600 + 2 * INTERVAL;

async fn start(
    app: &TestApp,
    admin: &Session,
    policy: &str,
    draft: &Value,
    waves: Value,
    min_reports: u32,
) -> String {
    let response = app
        .post(
            &format!("/api/v1/policies/{policy}/rollouts"),
            Some(&admin.access),
            &json!({
                "draft_id": draft["id"],
                "waves": waves,
                "health": {"max_failed_ratio": 0.05, "min_reports": min_reports},
            }),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_wave_smaller_than_min_reports_is_judged_on_its_devices_and_silence_after_pulling_fails() {
    let (app, clock) = spawn().await;
    let (tenant, devices, root, _) = seeded(&app, 20).await;
    let admin = &tenant.admin;
    let here = Replica::of(&app);
    cycle(&app, &here, &clock, &devices, |_| false).await;
    let draft = create_draft(&app, admin, &root, &board_edit()).await;
    let waves = json!([{"percent": 30, "hold_pull_cycles": 1}, {"percent": 100, "hold_pull_cycles": 1}]);
    // 20 reports needed, but the first wave holds about 6 devices.
    let id = start(&app, admin, &root, &draft, waves, 20).await;

    // Every device pulls; half the wave reports: the gate waits for the rest, even after the
    // hold.
    clock.advance(Duration::seconds(INTERVAL + 1));
    let mut configs = Vec::new();
    for device in &devices {
        configs.push(pull_from(&app, &here, device).await);
    }
    let wave: Vec<usize> = (0..devices.len())
        .filter(|&i| board_id(&configs[i]) == 7)
        .collect();
    assert!(
        (1..20).contains(&wave.len()),
        "{} devices in a 30 % wave",
        wave.len()
    );
    let first: Vec<_> = wave
        .iter()
        .take(wave.len() / 2)
        .map(|&i| devices[i].clone())
        .collect();
    if !first.is_empty() {
        cycle(&app, &here, &clock, &first, |_| false).await;
    }
    rollout_job(&app.state, clock.now()).await.unwrap();
    let waiting = rollout(&app, admin, &id).await;
    assert_eq!(
        (waiting["state"].clone(), waiting["wave"].clone()),
        (json!("running"), json!(1)),
        "{waiting}"
    );
    assert_eq!(waiting["waves"][0]["figures"]["served"], wave.len() as u64);
    assert_eq!(waiting["waves"][0]["figures"]["reported"], first.len() as u64);

    // Every device of the wave reported, fewer than min_reports: judged healthy, it advances.
    cycle(&app, &here, &clock, &devices, |_| false).await;
    rollout_job(&app.state, clock.now()).await.unwrap();
    let advanced = rollout(&app, admin, &id).await;
    assert_eq!(advanced["wave"], 2, "{advanced}");
    assert_eq!(advanced["waves"][0]["figures"]["reported"], wave.len() as u64);

    // Wave 2: every device pulls the new version, then the whole fleet goes silent without a
    // report. Silence after pulling counts as failure: rolled back, and the reason says so.
    clock.advance(Duration::seconds(INTERVAL + 1));
    for device in &devices {
        assert_eq!(board_id(&pull_from(&app, &here, device).await), 7);
    }
    clock.advance(Duration::seconds(SILENCE));
    rollout_job(&app.state, clock.now()).await.unwrap();
    let halted = rollout(&app, admin, &id).await;
    assert_eq!(halted["state"], "rolled_back", "{halted}");
    let figures = &halted["waves"][1]["figures"];
    assert_eq!(figures["stopped"], 20 - wave.len() as u64, "{figures}");
    assert_eq!(figures["absent"], 0);
    let reason = halted["reason"].as_str().unwrap();
    assert!(reason.contains("stopped pulling"), "{reason}");
}

#[tokio::test]
async fn a_wave_whose_devices_were_already_silent_does_not_hang() {
    let (app, clock) = spawn().await;
    let (tenant, devices, root, _) = seeded(&app, 10).await;
    let admin = &tenant.admin;
    let here = Replica::of(&app);
    cycle(&app, &here, &clock, &devices, |_| false).await;
    // The whole fleet goes quiet before the rollout starts.
    clock.advance(Duration::seconds(SILENCE));
    let draft = create_draft(&app, admin, &root, &board_edit()).await;
    let id = start(
        &app,
        admin,
        &root,
        &draft,
        json!([{"percent": 100, "hold_pull_cycles": 2}]),
        5,
    )
    .await;

    // Nobody can answer: nothing to judge, so only the hold counts.
    clock.advance(Duration::seconds(INTERVAL));
    rollout_job(&app.state, clock.now()).await.unwrap();
    let held = rollout(&app, admin, &id).await;
    assert_eq!(held["state"], "running", "{held}");
    let figures = &held["waves"][0]["figures"];
    assert_eq!(
        (
            figures["served"].clone(),
            figures["absent"].clone(),
            figures["stopped"].clone()
        ),
        (json!(10), json!(10), json!(0)),
        "{figures}"
    );
    clock.advance(Duration::seconds(INTERVAL + 1));
    rollout_job(&app.state, clock.now()).await.unwrap();
    let done = rollout(&app, admin, &id).await;
    assert_eq!(done["state"], "completed", "{done}");
    // A device back from silence gets the published version.
    assert_eq!(board_id(&pull_from(&app, &here, &devices[0]).await), 7);
}

#[tokio::test]
async fn the_impact_preview_holds_for_devices_with_fields_to_reassert() {
    let (app, clock) = spawn().await;
    let (tenant, devices, root, etag) = seeded(&app, 3).await;
    let admin = &tenant.admin;
    let here = Replica::of(&app);
    cycle(&app, &here, &clock, &devices, |_| false).await;
    // Device 0 reasserts the field the draft changes; device 1 overrides it and reasserts
    // another; device 2 has neither.
    let device_path = |i: usize| format!("/api/v1/devices/{}", devices[i].id);
    let reassert = async |i: usize, field: &str| {
        let etag = etag_of(&app.get(&device_path(i), &admin.access).await);
        let response = app
            .post_with_if_match(
                &format!("{}/reassert", device_path(i)),
                &admin.access,
                &etag,
                &json!({"field": field}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    };
    let etag1 = etag_of(&app.get(&device_path(1), &admin.access).await);
    let overridden = app
        .patch(
            &format!("{}?validate=false", device_path(1)),
            &admin.access,
            Some(&etag1),
            &json!({"set": {DISK: true}}),
        )
        .await;
    assert_eq!(overridden.status(), StatusCode::OK);
    reassert(0, DISK).await;
    reassert(1, BOARD).await;

    // Pulls only (a report of the field as inherited would end the reassert).
    clock.advance(Duration::seconds(INTERVAL + 1));
    let mut before = Vec::new();
    for device in &devices {
        before.push(pull_from(&app, &here, device).await);
    }
    assert_eq!(before[0]["reassert"], json!([DISK]));
    assert_eq!(before[1]["reassert"], json!([BOARD]));

    let draft = create_draft(&app, admin, &root, &json!({"set": {DISK: false}})).await;
    let draft_id = draft["id"].as_str().unwrap();
    let impact: Value = app
        .get(
            &format!("/api/v1/policies/{root}/drafts/{draft_id}/impact"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    let published = app
        .post_with_if_match(
            &format!("/api/v1/policies/{root}/drafts/{draft_id}/publish?validate=false"),
            &admin.access,
            &etag,
            &json!({}),
        )
        .await;
    assert_eq!(published.status(), StatusCode::OK);
    clock.advance(Duration::seconds(INTERVAL + 1));
    let mut after = Vec::new();
    for device in &devices {
        after.push(pull_from(&app, &here, device).await);
    }

    // Listed in the preview exactly when what the device is served (its hash, which covers the
    // fields to reassert) changes, with the values it is then served.
    let listed = impact["devices"].as_array().unwrap();
    assert_eq!(impact["devices_changing"], 2, "{impact}");
    for (i, device) in devices.iter().enumerate() {
        let entry = listed.iter().find(|d| d["device_id"] == device.id.as_str());
        assert_eq!(
            entry.is_some(),
            before[i]["config_hash"] != after[i]["config_hash"],
            "device {i}: {impact}"
        );
        assert_eq!(
            before[i]["reassert"], after[i]["reassert"],
            "publishing keeps the reassert list"
        );
        if let Some(entry) = entry {
            let change = entry["changes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["path"] == DISK)
                .unwrap();
            assert_eq!(change["before"], before[i]["settings"][DISK]);
            assert_eq!(change["after"], after[i]["settings"][DISK]);
        }
    }
}
