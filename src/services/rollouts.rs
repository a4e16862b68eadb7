//! Staged rollouts of a draft: waves of devices (by a stable hash of the device id) are served
//! the new version while the others keep the previous one; a scheduled job checks each wave
//! against the health gate and advances it, or halts and rolls back. State lives in the
//! database and every transition bumps the tenant's policy revision, so every replica serves
//! the same waves and a restart resumes where the rollout stood.

use super::drafts;
use super::effective::{self, Freshness};
use super::policies::{self, Build, Publishes, SaveKind};
use super::references::References;
use super::{Page, PageRequest, audit, checkins, conflict_if_duplicate, written};
use crate::db;
use crate::db::repo::device_groups::{self, WaveQuery};
use crate::db::repo::policies::decode_values;
use crate::db::repo::{policies as policies_repo, rollouts as repo};
use crate::domain::audit::{Actor, NewEntry};
use crate::domain::diff::Change;
use crate::domain::policy::PolicyNode;
use crate::domain::rollout::{Plan, Rollout, RolloutState, Verdict, WaveFigures, bucket, hold_over, judge};
use crate::domain::{DraftId, Expected, PolicyId, RolloutId, TenantId};
use crate::error::{ApiError, Code};
use crate::jobs::Outcome;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

/// A rollout with its live figures.
#[derive(Debug, Clone)]
pub struct RolloutStatus {
    pub rollout: Rollout,
    /// Active devices assigned to the policy or below it, and of those the devices served the
    /// rolled-out version (`base_version + 1`) now; `None` in lists, which count nothing.
    pub devices: Option<(u64, u64)>,
}

/// The tenant's rollouts (of one policy when given), oldest first, as stored.
pub async fn list(
    state: &AppState,
    tenant: TenantId,
    policy: Option<PolicyId>,
    page: PageRequest,
) -> Result<Page<RolloutStatus>, ApiError> {
    let rows = repo::list(&state.db, tenant, policy, page.cursor, page.fetch_limit()).await?;
    let page = page.page(rows, |r| r.id.0);
    Ok(Page {
        items: page
            .items
            .into_iter()
            .map(|rollout| RolloutStatus {
                rollout,
                devices: None,
            })
            .collect(),
        next_cursor: page.next_cursor,
    })
}

fn entry(rollout: &Rollout, action: &'static str, mut changes: Vec<Change>) -> NewEntry {
    changes.insert(
        0,
        Change::of(
            "policy_id",
            None,
            Some(Value::from(rollout.policy_id.to_string())),
        ),
    );
    NewEntry {
        action,
        target_type: "rollout",
        target_id: rollout.id.0,
        changes,
    }
}

fn state_change(from: RolloutState, to: RolloutState) -> Change {
    Change::of("state", Some(from.as_str().into()), Some(to.as_str().into()))
}

fn figures_json(figures: &WaveFigures) -> Value {
    json!({
        "served": figures.served,
        "reported": figures.reported,
        "failed": figures.failed,
        "stopped": figures.stopped,
        "absent": figures.absent,
        "failed_ratio": figures.failed_ratio(),
    })
}

/// Starts rolling out `draft` with `plan`: the first wave is served the new version at once.
pub async fn start(
    state: &AppState,
    actor: &Actor,
    policy: PolicyId,
    draft: DraftId,
    plan: Plan,
) -> Result<Rollout, ApiError> {
    let errors = plan.check();
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let tenant = actor.tenant_id;
    let draft = drafts::get(state, tenant, policy, draft).await?;
    let now = state.clock.now();
    let (_, node, changes) = drafts::propose_edit(state, tenant, policy, &draft.edit).await?;
    if changes.is_empty() {
        return Err(ApiError::conflict(
            "the draft changes nothing in the policy as it now is; there is nothing to roll out",
        ));
    }
    let txn = db::begin_write(&state.db).await?;
    // The version the draft was checked against must still be the current one.
    let base = Expected::Version(node.version - 1);
    written(
        policies_repo::lock_for_update(&txn, tenant, policy, base).await?,
        "policy",
    )?;
    if let Some(running) = repo::active_for_policy(&txn, tenant, policy).await? {
        return Err(busy(&running));
    }
    let rollout = Rollout {
        id: RolloutId::new(),
        tenant_id: tenant,
        policy_id: policy,
        draft_id: draft.id,
        base_version: node.version - 1,
        parent_id: node.parent_id,
        content: node.content,
        plan,
        state: RolloutState::Running,
        wave: 0,
        wave_started_at: now,
        waves: vec![WaveFigures::default()],
        reason: None,
        created_by: actor.operator_id,
        created_at: now,
        updated_at: now,
        finished_at: None,
    };
    repo::insert(&txn, &rollout).await.map_err(conflict_if_duplicate(
        "the policy already has a rollout running".into(),
    ))?;
    let mut logged = vec![
        Change::of("draft_id", None, Some(draft.id.to_string().into())),
        Change::of("plan", None, Some(plan_json(&rollout.plan))),
    ];
    logged.extend(changes);
    audit::record_at(
        &txn,
        actor,
        tenant,
        entry(&rollout, "rollout.started", logged),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    Ok(rollout)
}

fn plan_json(plan: &Plan) -> Value {
    serde_json::to_value(plan).unwrap_or(Value::Null)
}

fn busy(running: &Rollout) -> ApiError {
    ApiError::conflict(format!(
        "rollout {} of this policy is {}; wait for it to finish, or abort it (POST /api/v1/rollouts/{}/abort)",
        running.id,
        running.state.as_str(),
        running.id
    ))
}

pub async fn get(state: &AppState, tenant: TenantId, id: RolloutId) -> Result<RolloutStatus, ApiError> {
    let rollout = repo::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rollout"))?;
    let (in_scope, figures) = count(state, &rollout).await?;
    let on_new_version = match rollout.state {
        RolloutState::Running | RolloutState::Paused => figures.served,
        RolloutState::Completed => in_scope,
        RolloutState::RolledBack | RolloutState::Aborted => 0,
    };
    let mut rollout = rollout;
    if rollout.state.is_active()
        && let Some(current) = rollout.waves.get_mut(rollout.wave)
    {
        *current = figures;
    }
    Ok(RolloutStatus {
        rollout,
        devices: Some((in_scope, on_new_version)),
    })
}

/// The devices under the rollout's policy, and the figures of those its current wave covers
/// (zero when the rollout has stopped: no device is served its version).
///
/// Bounded work: buffered check-ins are written first, devices without a stored place on the
/// rollout scale get one (new devices only, after the first count), then the wave is counted
/// by one grouped query; the served hash is computed once per group (policy, values of their
/// own, fields to reassert, band of the scale), not per device.
async fn count(state: &AppState, rollout: &Rollout) -> Result<(u64, WaveFigures), ApiError> {
    let tenant = rollout.tenant_id;
    checkins::flush(state).await?;
    let view = effective::current(state, tenant, Freshness::Database).await?.view;
    let scope: Vec<PolicyId> = std::iter::once(rollout.policy_id)
        .chain(view.descendants(rollout.policy_id))
        .collect();
    let in_scope = device_groups::count_under(&state.db, tenant, &scope).await?;
    if !rollout.state.is_active() {
        return Ok((in_scope, WaveFigures::default()));
    }
    place_devices(state, tenant, &scope).await?;
    // Bands of the scale that are served alike: split at every active rollout's limit below
    // this wave's, since overlapping rollouts (on a policy and one below it) mix their nodes.
    let cutoff = rollout.plan.cutoff(rollout.wave);
    let mut bands: Vec<u32> = view
        .rollouts()
        .iter()
        .filter(|r| r.state.is_active())
        .map(|r| r.plan.cutoff(r.wave))
        .filter(|&c| c < cutoff)
        .chain([cutoff])
        .collect();
    bands.sort_unstable();
    bands.dedup();
    let now = state.clock.now();
    let thresholds = state.config.thresholds();
    let query = WaveQuery {
        tenant,
        policies: &scope,
        bands: &bands,
        offline_before: now - thresholds.offline_after,
        overdue_before: now - thresholds.grace,
        since: rollout.created_at,
    };
    let mut hashes: HashMap<(Uuid, String, String, i32), String> = HashMap::new();
    let mut figures = WaveFigures::default();
    for group in device_groups::wave_groups(&state.db, &query).await? {
        let key = (
            group.policy_id,
            group.device_values.clone(),
            group.reassert.clone(),
            group.band,
        );
        let hash = match hashes.get(&key) {
            Some(hash) => hash.clone(),
            None => {
                let lowest = usize::try_from(group.band - 1)
                    .ok()
                    .and_then(|i| bands.get(i).copied())
                    .unwrap_or(0);
                let policy = PolicyId(group.policy_id);
                let tree = view.tree(view.mask_at(lowest, policy));
                let reassert: BTreeSet<String> = serde_json::from_str(&group.reassert)
                    .map_err(|e| ApiError::internal(format!("a device's reassert list: {e}")))?;
                let hash =
                    effective::hash_of(&tree, policy, &decode_values(&group.device_values)?, &reassert);
                hashes.insert(key, hash.clone());
                hash
            }
        };
        let n = u64::try_from(group.devices).unwrap_or_default();
        figures.served += n;
        let since_start = group.since_start == 1;
        if group.failed_hash.as_deref() == Some(hash.as_str()) {
            figures.reported += n;
            figures.failed += n;
        } else if group.applied_hash.as_deref() == Some(hash.as_str()) {
            figures.reported += n;
        } else if group.heard == device_groups::SILENT && since_start {
            figures.stopped += n;
        } else if group.heard != device_groups::PULLING && !since_start {
            figures.absent += n;
        }
    }
    Ok((in_scope, figures))
}

/// Devices placed on the rollout scale per transaction.
const PLACE_BATCH: u64 = 1_000;

/// Stores the place on the rollout scale of the devices under `scope` that have none yet.
async fn place_devices(state: &AppState, tenant: TenantId, scope: &[PolicyId]) -> Result<(), ApiError> {
    loop {
        let missing = device_groups::devices_without_bucket(&state.db, tenant, scope, PLACE_BATCH).await?;
        let placed: Vec<(Uuid, u32)> = missing.iter().map(|&id| (id, bucket(id))).collect();
        let txn = db::begin_write(&state.db).await?;
        device_groups::insert_buckets(&txn, tenant, &placed).await?;
        txn.commit().await?;
        if (missing.len() as u64) < PLACE_BATCH {
            return Ok(());
        }
    }
}

/// What an operator asks of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Promote,
    Abort,
}

pub async fn command(
    state: &AppState,
    actor: &Actor,
    id: RolloutId,
    command: Command,
) -> Result<RolloutStatus, ApiError> {
    let tenant = actor.tenant_id;
    let rollout = repo::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rollout"))?;
    match command {
        Command::Pause => {
            move_to(
                state,
                actor,
                &rollout,
                RolloutState::Running,
                RolloutState::Paused,
                None,
            )
            .await?
        }
        Command::Resume => {
            move_to(
                state,
                actor,
                &rollout,
                RolloutState::Paused,
                RolloutState::Running,
                None,
            )
            .await?
        }
        Command::Abort => {
            if !rollout.state.is_active() {
                return Err(not_now(&rollout, "aborted"));
            }
            let reason =
                Some("aborted by an operator; every device is served the previous version again".into());
            move_to(
                state,
                actor,
                &rollout,
                rollout.state,
                RolloutState::Aborted,
                reason,
            )
            .await?
        }
        Command::Promote => {
            if !rollout.state.is_active() {
                return Err(not_now(&rollout, "promoted"));
            }
            complete(state, actor, &rollout, "promoted by an operator").await?
        }
    }
    get(state, tenant, id).await
}

fn not_now(rollout: &Rollout, what: &str) -> ApiError {
    ApiError::new(
        Code::Conflict,
        format!("the rollout is {} and cannot be {what}", rollout.state.as_str()),
    )
}

/// Moves the rollout from `from` to `to` (a `409` when it is not in `from` any more). A stop
/// (`to` not active) serves every device the previous version again.
async fn move_to(
    state: &AppState,
    actor: &Actor,
    seen: &Rollout,
    from: RolloutState,
    to: RolloutState,
    reason: Option<String>,
) -> Result<(), ApiError> {
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    let mut rollout = repo::get_for_update(&txn, seen.tenant_id, seen.id)
        .await?
        .ok_or_else(|| ApiError::not_found("rollout"))?;
    if rollout.state != from {
        return Err(not_now(&rollout, to.as_str()));
    }
    rollout.state = to;
    rollout.updated_at = now;
    let mut changes = vec![state_change(from, to)];
    if let Some(figures) = seen.waves.get(seen.wave) {
        rollout.waves[rollout.wave] = *figures;
        changes.push(Change::of("figures", None, Some(figures_json(figures))));
    }
    if !to.is_active() {
        rollout.finished_at = Some(now);
        rollout.reason = reason.clone();
    }
    if let Some(reason) = reason {
        changes.push(Change::of("reason", None, Some(reason.into())));
    }
    let action = match to {
        RolloutState::Paused => "rollout.paused",
        RolloutState::Running => "rollout.resumed",
        RolloutState::RolledBack => "rollout.rolled_back",
        RolloutState::Aborted => "rollout.aborted",
        RolloutState::Completed => "rollout.completed",
    };
    repo::save_progress(&txn, &rollout, !to.is_active()).await?;
    audit::record_at(
        &txn,
        actor,
        rollout.tenant_id,
        entry(&rollout, action, changes),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Publishes the rolled-out version as the policy's next version; the rollout is completed and
/// its draft discarded in the same transaction.
async fn complete(state: &AppState, actor: &Actor, rollout: &Rollout, why: &str) -> Result<(), ApiError> {
    let comment = format!("rollout {}: {why}", rollout.id);
    let kind = SaveKind {
        action: "policy.rolled_out",
        comment: Some(&comment),
        field_prefix: "set.",
        // Checked when the rollout started; the job has no one to show a warning to.
        references: References::Skip,
        publishes: Publishes::Rollout(rollout.id, rollout.draft_id),
    };
    let node = rollout.node();
    let build: Build = Box::new(move |_, current: &PolicyNode| {
        Ok(PolicyNode {
            parent_id: node.parent_id,
            content: node.content.clone(),
            ..current.clone()
        })
    });
    let expected = Expected::Version(rollout.base_version);
    policies::save(state, actor, rollout.policy_id, expected, kind, build).await?;
    let changes = vec![
        state_change(rollout.state, RolloutState::Completed),
        Change::of("reason", None, Some(why.into())),
    ];
    let txn = db::begin_write(&state.db).await?;
    audit::record_at(
        &txn,
        actor,
        rollout.tenant_id,
        entry(rollout, "rollout.completed", changes),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The rollout job: every running rollout checked against its gate, advanced, completed or
/// rolled back. Runs under the job lease, so once per tick whatever the number of replicas.
pub async fn rollout_job(state: &AppState, now: DateTime<Utc>) -> Result<Outcome, ApiError> {
    let mut outcome = Outcome::default();
    for rollout in repo::all_running(&state.db).await? {
        if step(state, rollout, now).await? {
            outcome.changed += 1;
        }
    }
    Ok(outcome)
}

/// One rollout's step; true when it moved.
async fn step(state: &AppState, mut rollout: Rollout, now: DateTime<Utc>) -> Result<bool, ApiError> {
    let tenant = rollout.tenant_id;
    let interval = effective::current(state, tenant, Freshness::Database)
        .await?
        .interval;
    let (_, figures) = count(state, &rollout).await?;
    let wave = rollout.plan.waves[rollout.wave];
    let verdict = judge(
        &rollout.plan.health,
        &figures,
        hold_over(&wave, rollout.wave_started_at, interval, now),
    );
    let system = Actor::system(tenant);
    let number = rollout.wave + 1;
    match verdict {
        Verdict::Wait => {
            if rollout.waves[rollout.wave] != figures {
                rollout.waves[rollout.wave] = figures;
                rollout.updated_at = now;
                let txn = db::begin_write(&state.db).await?;
                repo::save_progress(&txn, &rollout, false).await?;
                txn.commit().await?;
            }
            Ok(false)
        }
        Verdict::RollBack => {
            let reason = format!(
                "health gate failed in wave {number} ({} %): {} of {} devices heard from failed \
                 ({} reported failed fields, {} stopped pulling; failed ratio {:.3} above {}); \
                 every device is served version {} again",
                wave.percent,
                figures.failed + figures.stopped,
                figures.reported + figures.stopped,
                figures.failed,
                figures.stopped,
                figures.failed_ratio(),
                rollout.plan.health.max_failed_ratio,
                rollout.base_version
            );
            rollout.waves[rollout.wave] = figures;
            let from = rollout.state;
            move_to(
                state,
                &system,
                &rollout,
                from,
                RolloutState::RolledBack,
                Some(reason),
            )
            .await?;
            Ok(true)
        }
        Verdict::Advance if rollout.wave + 1 == rollout.plan.waves.len() => {
            complete(state, &system, &rollout, "every wave passed its health gate").await?;
            Ok(true)
        }
        Verdict::Advance => {
            let txn = db::begin_write(&state.db).await?;
            let Some(mut locked) = repo::get_for_update(&txn, tenant, rollout.id).await? else {
                return Ok(false);
            };
            if locked.state != RolloutState::Running || locked.wave != rollout.wave {
                return Ok(false);
            }
            locked.waves[locked.wave] = figures;
            locked.wave += 1;
            locked.waves.push(WaveFigures::default());
            locked.wave_started_at = now;
            locked.updated_at = now;
            let next = locked.plan.waves[locked.wave];
            let changes = vec![
                Change::of("wave", Some(number.into()), Some((number + 1).into())),
                Change::of("percent", Some(wave.percent.into()), Some(next.percent.into())),
                Change::of("figures", None, Some(figures_json(&figures))),
            ];
            repo::save_progress(&txn, &locked, true).await?;
            audit::record_at(
                &txn,
                &system,
                tenant,
                entry(&locked, "rollout.advanced", changes),
                state.clock.now(),
            )
            .await?;
            txn.commit().await?;
            Ok(true)
        }
    }
}
