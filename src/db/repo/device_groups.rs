//! Devices read by group for impact previews and rollouts: counts per distinct (policy, device
//! values), the devices under a set of policies page by page, and a rollout wave's devices
//! counted per group, by their stored place on the rollout scale.

use crate::db::entities::device_buckets as buckets;
use crate::db::entities::device_checkins as checkins;
use crate::db::entities::devices::{Column, Entity};
use crate::domain::device::Lifecycle;
use crate::domain::{DeviceId, PolicyId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Alias, CaseStatement, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Select,
};
use uuid::Uuid;

/// The tenant's active devices assigned to one of `policies`.
fn under(tenant: TenantId, policies: &[PolicyId]) -> Select<Entity> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::Status.eq(Lifecycle::Active.as_str()))
        .filter(Column::PolicyId.is_in(policies.iter().map(|p| p.0)))
}

/// `under`, after `cursor` in id order, at most `limit`.
fn page_under(
    tenant: TenantId,
    policies: &[PolicyId],
    cursor: Option<DeviceId>,
    limit: u64,
) -> Select<Entity> {
    let query = under(tenant, policies).order_by_asc(Column::Id).limit(limit);
    match cursor {
        Some(after) => query.filter(Column::Id.gt(after.0)),
        None => query,
    }
}

/// Active devices assigned to one policy with the same device values (stored form).
#[derive(Debug, Clone, FromQueryResult)]
pub struct ValueGroup {
    pub policy_id: Uuid,
    pub device_values: String,
    pub devices: i64,
}

/// The active devices under `policies`, counted per policy and distinct device values: most
/// devices have none, so a fleet of any size is a handful of groups.
pub async fn value_groups(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    policies: &[PolicyId],
) -> Result<Vec<ValueGroup>, DbErr> {
    under(tenant, policies)
        .select_only()
        .column(Column::PolicyId)
        .column(Column::DeviceValues)
        .column_as(Column::Id.count(), "devices")
        .group_by(Column::PolicyId)
        .group_by(Column::DeviceValues)
        .into_model::<ValueGroup>()
        .all(conn)
        .await
}

/// One device as an impact list shows it.
#[derive(Debug, Clone, FromQueryResult)]
pub struct GroupedDevice {
    pub id: Uuid,
    pub hostname: String,
    pub policy_id: Uuid,
    pub device_values: String,
}

/// Active devices under `policies` after `cursor`, in id order, with their group keys.
pub async fn page_of_devices(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    policies: &[PolicyId],
    cursor: Option<DeviceId>,
    limit: u64,
) -> Result<Vec<GroupedDevice>, DbErr> {
    page_under(tenant, policies, cursor, limit)
        .select_only()
        .column(Column::Id)
        .column(Column::Hostname)
        .column(Column::PolicyId)
        .column(Column::DeviceValues)
        .into_model::<GroupedDevice>()
        .all(conn)
        .await
}

/// Active devices under `policies`.
pub async fn count_under(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    policies: &[PolicyId],
) -> Result<u64, DbErr> {
    let count = under(tenant, policies).count(conn).await?;
    Ok(count)
}

/// Up to `limit` of the devices under `policies` that have no place on the rollout scale
/// stored yet (an index-only anti-join: once placed, it returns nothing).
pub async fn devices_without_bucket(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    policies: &[PolicyId],
    limit: u64,
) -> Result<Vec<Uuid>, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        id: Uuid,
    }
    let query = Query::select()
        .column((Entity, Column::Id))
        .from(Entity)
        .left_join(
            buckets::Entity,
            Expr::col((buckets::Entity, buckets::Column::DeviceId)).equals((Entity, Column::Id)),
        )
        .and_where(Expr::col((Entity, Column::TenantId)).eq(tenant.0))
        .and_where(Expr::col((Entity, Column::PolicyId)).is_in(policies.iter().map(|p| p.0)))
        .and_where(Expr::col((buckets::Entity, buckets::Column::DeviceId)).is_null())
        .limit(limit)
        .to_owned();
    let rows = Row::find_by_statement(conn.get_database_backend().build(&query))
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Stores devices' places on the rollout scale (a row already there stays).
pub async fn insert_buckets(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    placed: &[(Uuid, u32)],
) -> Result<(), DbErr> {
    if placed.is_empty() {
        return Ok(());
    }
    let rows = placed.iter().map(|&(device, bucket)| buckets::ActiveModel {
        device_id: Set(device),
        tenant_id: Set(tenant.0),
        bucket: Set(i32::try_from(bucket).unwrap_or(i32::MAX)),
    });
    buckets::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(buckets::Column::DeviceId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// What a wave's devices are counted by.
#[derive(Debug, Clone)]
pub struct WaveQuery<'a> {
    pub tenant: TenantId,
    pub policies: &'a [PolicyId],
    /// Rising bucket limits; the last is the wave's (devices at or above it are not counted).
    /// A device's band is the index of the first limit above its bucket.
    pub bands: &'a [u32],
    /// Devices last seen before this are silent (offline).
    pub offline_before: DateTime<Utc>,
    /// Devices whose next pull was due before this are silent (stale).
    pub overdue_before: DateTime<Utc>,
    /// Devices seen at or after this have pulled since the rollout started.
    pub since: DateTime<Utc>,
}

/// How a device has been heard from, as counted in [`WaveGroup::heard`].
pub const NEVER_SEEN: i32 = 0;
pub const SILENT: i32 = 1;
pub const PULLING: i32 = 2;

/// Devices of a wave alike in everything the rollout gate looks at.
#[derive(Debug, Clone, FromQueryResult)]
pub struct WaveGroup {
    pub policy_id: Uuid,
    pub device_values: String,
    pub reassert: String,
    /// Index into [`WaveQuery::bands`].
    pub band: i32,
    pub applied_hash: Option<String>,
    pub failed_hash: Option<String>,
    /// [`NEVER_SEEN`], [`SILENT`] or [`PULLING`].
    pub heard: i32,
    /// 1 when seen since [`WaveQuery::since`].
    pub since_start: i32,
    pub devices: i64,
}

/// The active devices under `q.policies` whose bucket is below the wave's limit, counted per
/// group: one query, grouped in the database (through `idx_devices_tenant_policy` and the
/// primary keys of the buckets and the check-ins), so a wave of any size is as many rows as it
/// has distinct groups.
pub async fn wave_groups(conn: &impl ConnectionTrait, q: &WaveQuery<'_>) -> Result<Vec<WaveGroup>, DbErr> {
    let Some(&limit) = q.bands.last() else {
        return Ok(Vec::new());
    };
    let bucket = || Expr::col((buckets::Entity, buckets::Column::Bucket));
    let col = |c: Column| Expr::col((Entity, c));
    let seen = || Expr::col((checkins::Entity, checkins::Column::LastSeenAt));
    let next = Expr::col((checkins::Entity, checkins::Column::NextPullAfter));
    let mut band = CaseStatement::new();
    for (i, &upper) in q.bands.iter().enumerate() {
        band = band.case(
            bucket().lt(upper),
            Expr::val(i32::try_from(i).unwrap_or(i32::MAX)),
        );
    }
    let heard = CaseStatement::new()
        .case(seen().is_null(), Expr::val(NEVER_SEEN))
        .case(
            seen().lt(q.offline_before).or(next.lt(q.overdue_before)),
            Expr::val(SILENT),
        )
        .finally(Expr::val(PULLING));
    let since = CaseStatement::new()
        .case(seen().gte(q.since), Expr::val(1))
        .finally(Expr::val(0));
    let grouped = [
        "policy_id",
        "device_values",
        "reassert",
        "band",
        "applied_hash",
        "failed_hash",
        "heard",
        "since_start",
    ];
    let query = Query::select()
        .expr_as(col(Column::PolicyId), Alias::new("policy_id"))
        .expr_as(col(Column::DeviceValues), Alias::new("device_values"))
        .expr_as(col(Column::Reassert), Alias::new("reassert"))
        .expr_as(band, Alias::new("band"))
        .expr_as(col(Column::AppliedHash), Alias::new("applied_hash"))
        .expr_as(col(Column::FailedHash), Alias::new("failed_hash"))
        .expr_as(heard, Alias::new("heard"))
        .expr_as(since, Alias::new("since_start"))
        .expr_as(Expr::col((Entity, Column::Id)).count(), Alias::new("devices"))
        .from(Entity)
        .inner_join(
            buckets::Entity,
            Expr::col((buckets::Entity, buckets::Column::DeviceId)).equals((Entity, Column::Id)),
        )
        .left_join(
            checkins::Entity,
            Expr::col((checkins::Entity, checkins::Column::DeviceId)).equals((Entity, Column::Id)),
        )
        .and_where(col(Column::TenantId).eq(q.tenant.0))
        .and_where(col(Column::Status).eq(Lifecycle::Active.as_str()))
        .and_where(col(Column::PolicyId).is_in(q.policies.iter().map(|p| p.0)))
        .and_where(bucket().lt(limit))
        .group_by_columns(grouped.map(Alias::new))
        .to_owned();
    WaveGroup::find_by_statement(conn.get_database_backend().build(&query))
        .all(conn)
        .await
}
