//! Devices read by group for impact previews and rollouts: counts per distinct (policy, device
//! values), and the devices under a set of policies page by page.

use super::devices;
use crate::db::entities::devices::{Column, Entity};
use crate::domain::device::{Device, Lifecycle};
use crate::domain::{DeviceId, PolicyId, TenantId};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

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
    Entity::find()
        .select_only()
        .column(Column::PolicyId)
        .column(Column::DeviceValues)
        .column_as(Column::Id.count(), "devices")
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::Status.eq(Lifecycle::Active.as_str()))
        .filter(Column::PolicyId.is_in(policies.iter().map(|p| p.0)))
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
    let mut query = Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::Hostname)
        .column(Column::PolicyId)
        .column(Column::DeviceValues)
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::Status.eq(Lifecycle::Active.as_str()))
        .filter(Column::PolicyId.is_in(policies.iter().map(|p| p.0)))
        .order_by_asc(Column::Id)
        .limit(limit);
    if let Some(after) = cursor {
        query = query.filter(Column::Id.gt(after.0));
    }
    query.into_model::<GroupedDevice>().all(conn).await
}

/// Active devices under `policies` after `cursor`, in id order, in full (for rollout figures).
pub async fn devices_under(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    policies: &[PolicyId],
    cursor: Option<DeviceId>,
    limit: u64,
) -> Result<Vec<Device>, DbErr> {
    let mut query = Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::Status.eq(Lifecycle::Active.as_str()))
        .filter(Column::PolicyId.is_in(policies.iter().map(|p| p.0)))
        .order_by_asc(Column::Id)
        .limit(limit);
    if let Some(after) = cursor {
        query = query.filter(Column::Id.gt(after.0));
    }
    devices::all(query.all(conn).await?)
}
