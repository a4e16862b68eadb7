//! Devices read by group for impact previews and rollouts: counts per distinct (policy, device
//! values), and the devices under a set of policies page by page.

use super::devices;
use crate::db::entities::devices::{Column, Entity};
use crate::domain::device::{Device, Lifecycle};
use crate::domain::{DeviceId, PolicyId, TenantId};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
    Select,
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

/// Active devices under `policies` after `cursor`, in id order, in full (for rollout figures).
pub async fn devices_under(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    policies: &[PolicyId],
    cursor: Option<DeviceId>,
    limit: u64,
) -> Result<Vec<Device>, DbErr> {
    devices::all(page_under(tenant, policies, cursor, limit).all(conn).await?)
}
