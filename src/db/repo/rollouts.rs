//! Rollouts: what is rolled out, the plan and where it stands. Replicas serve from these rows
//! (through the tenant's policy revision, bumped by every transition), so a restart resumes.

use super::policies::{decode_values, encode_values};
use super::tenants;
use crate::db::changes::Announce;
use crate::db::entities::rollouts::{ActiveModel, Column, Entity, Model};
use crate::domain::policy::PolicyContent;
use crate::domain::rollout::{Plan, Rollout, RolloutState, WaveFigures};
use crate::domain::{DraftId, OperatorId, PolicyId, RolloutId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Select,
};
use std::collections::BTreeSet;

fn json_error(e: serde_json::Error) -> DbErr {
    DbErr::Json(e.to_string())
}

const ACTIVE: [&str; 2] = [RolloutState::Running.as_str(), RolloutState::Paused.as_str()];

fn to_domain(m: Model) -> Result<Rollout, DbErr> {
    Ok(Rollout {
        id: RolloutId(m.id),
        tenant_id: TenantId(m.tenant_id),
        policy_id: PolicyId(m.policy_id),
        draft_id: DraftId(m.draft_id),
        base_version: m.base_version,
        parent_id: m.parent_id.map(PolicyId),
        content: PolicyContent {
            name: m.name,
            description: m.description,
            values: decode_values(&m.setting_values)?,
            locks: serde_json::from_str::<BTreeSet<String>>(&m.locks).map_err(json_error)?,
        },
        plan: serde_json::from_str::<Plan>(&m.plan).map_err(json_error)?,
        state: RolloutState::parse(&m.state)
            .ok_or_else(|| DbErr::Type(format!("unknown rollout state `{}`", m.state)))?,
        wave: usize::try_from(m.wave).unwrap_or_default(),
        wave_started_at: m.wave_started_at,
        waves: serde_json::from_str::<Vec<WaveFigures>>(&m.waves).map_err(json_error)?,
        reason: m.reason,
        created_by: m.created_by.map(OperatorId),
        created_at: m.created_at,
        updated_at: m.updated_at,
        finished_at: m.finished_at,
    })
}

fn all(models: Vec<Model>) -> Result<Vec<Rollout>, DbErr> {
    models.into_iter().map(to_domain).collect()
}

/// Stores a new rollout and bumps the tenant's policy revision (its first wave is served now).
pub async fn insert(conn: &impl Announce, rollout: &Rollout) -> Result<(), DbErr> {
    Entity::insert(ActiveModel {
        id: Set(rollout.id.0),
        tenant_id: Set(rollout.tenant_id.0),
        policy_id: Set(rollout.policy_id.0),
        draft_id: Set(rollout.draft_id.0),
        base_version: Set(rollout.base_version),
        parent_id: Set(rollout.parent_id.map(|p| p.0)),
        name: Set(rollout.content.name.clone()),
        description: Set(rollout.content.description.clone()),
        setting_values: Set(encode_values(&rollout.content.values)?),
        locks: Set(serde_json::to_string(&rollout.content.locks).map_err(json_error)?),
        plan: Set(serde_json::to_string(&rollout.plan).map_err(json_error)?),
        state: Set(rollout.state.as_str().to_owned()),
        wave: Set(rollout.wave as i32),
        wave_started_at: Set(rollout.wave_started_at),
        waves: Set(serde_json::to_string(&rollout.waves).map_err(json_error)?),
        reason: Set(rollout.reason.clone()),
        created_by: Set(rollout.created_by.map(|o| o.0)),
        created_at: Set(rollout.created_at),
        updated_at: Set(rollout.updated_at),
        finished_at: Set(rollout.finished_at),
    })
    .exec_without_returning(conn)
    .await?;
    tenants::bump_policy_revision(conn, rollout.tenant_id).await
}

async fn one(conn: &impl ConnectionTrait, query: Select<Entity>) -> Result<Option<Rollout>, DbErr> {
    query.one(conn).await?.map(to_domain).transpose()
}

pub async fn get(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: RolloutId,
) -> Result<Option<Rollout>, DbErr> {
    one(
        conn,
        Entity::find_by_id(id.0).filter(Column::TenantId.eq(tenant.0)),
    )
    .await
}

/// Reads and locks a rollout for a transition (the job and operators never cross).
pub async fn get_for_update(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: RolloutId,
) -> Result<Option<Rollout>, DbErr> {
    let query = Entity::find_by_id(id.0).filter(Column::TenantId.eq(tenant.0));
    one(conn, query.lock_exclusive()).await
}

/// The running or paused rollout of a policy.
pub async fn active_for_policy(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    policy: PolicyId,
) -> Result<Option<Rollout>, DbErr> {
    let query = Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::PolicyId.eq(policy.0))
        .filter(Column::State.is_in(ACTIVE));
    one(conn, query).await
}

/// The tenant's rollouts in id order after `cursor`, of one policy when given.
pub async fn list(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    policy: Option<PolicyId>,
    cursor: Option<uuid::Uuid>,
    limit: u64,
) -> Result<Vec<Rollout>, DbErr> {
    let mut query = Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .order_by_asc(Column::Id)
        .limit(limit);
    if let Some(policy) = policy {
        query = query.filter(Column::PolicyId.eq(policy.0));
    }
    if let Some(after) = cursor {
        query = query.filter(Column::Id.gt(after));
    }
    all(query.all(conn).await?)
}

/// The tenant's running and paused rollouts: what the pull overlays on the tree.
pub async fn active_for_tenant(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<Vec<Rollout>, DbErr> {
    all(Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::State.is_in(ACTIVE))
        .order_by_asc(Column::Id)
        .all(conn)
        .await?)
}

/// Every running rollout of every tenant, for the rollout job (a platform task).
pub async fn all_running(conn: &impl ConnectionTrait) -> Result<Vec<Rollout>, DbErr> {
    all(Entity::find()
        .filter(Column::State.eq(RolloutState::Running.as_str()))
        .order_by_asc(Column::Id)
        .all(conn)
        .await?)
}

/// Stores where the rollout stands. `served_changes`: the transition changes what devices are
/// served (a wave starts, the rollout stops), so the tenant's policy revision is bumped.
pub async fn save_progress(
    conn: &impl Announce,
    rollout: &Rollout,
    served_changes: bool,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::State, Expr::value(rollout.state.as_str()))
        .col_expr(Column::Wave, Expr::value(rollout.wave as i32))
        .col_expr(Column::WaveStartedAt, Expr::value(rollout.wave_started_at))
        .col_expr(
            Column::Waves,
            Expr::value(serde_json::to_string(&rollout.waves).map_err(json_error)?),
        )
        .col_expr(Column::Reason, Expr::value(rollout.reason.clone()))
        .col_expr(Column::UpdatedAt, Expr::value(rollout.updated_at))
        .col_expr(Column::FinishedAt, Expr::value(rollout.finished_at))
        .filter(Column::Id.eq(rollout.id.0))
        .filter(Column::TenantId.eq(rollout.tenant_id.0))
        .exec(conn)
        .await?;
    if served_changes {
        tenants::bump_policy_revision(conn, rollout.tenant_id).await?;
    }
    Ok(())
}

/// Ends a rollout in `state` (the policy save that completes it bumps the revision itself).
pub async fn finish(
    conn: &impl ConnectionTrait,
    id: RolloutId,
    state: RolloutState,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::State, Expr::value(state.as_str()))
        .col_expr(Column::Reason, Expr::value(reason))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .col_expr(Column::FinishedAt, Expr::value(Some(now)))
        .filter(Column::Id.eq(id.0))
        .exec(conn)
        .await
        .map(|_| ())
}
