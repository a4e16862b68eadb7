//! Billing usage: the storage each appliance last reported, and the history of its changes.

use crate::db::entities::{device_billing_usage as latest, device_billing_usage_history as history};
use crate::domain::billing::{Usage, UsageRecord, VaultUsage};
use crate::domain::{DeviceId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use std::collections::BTreeMap;
use uuid::Uuid;

fn decode(
    device: Uuid,
    storage_gb: f64,
    vaults: Option<String>,
    at: DateTime<Utc>,
) -> Result<UsageRecord, DbErr> {
    let vaults = match vaults {
        Some(text) => {
            Some(serde_json::from_str::<Vec<VaultUsage>>(&text).map_err(|e| DbErr::Json(e.to_string()))?)
        }
        None => None,
    };
    Ok(UsageRecord {
        device_id: DeviceId(device),
        usage: Usage { storage_gb, vaults },
        at,
    })
}

fn encode(usage: &Usage) -> Result<Option<String>, DbErr> {
    usage
        .vaults
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| DbErr::Json(e.to_string()))
}

fn from_latest(m: latest::Model) -> Result<UsageRecord, DbErr> {
    decode(m.device_id, m.storage_gb, m.vaults, m.reported_at)
}

/// The usage the device last reported.
pub async fn latest(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    device: DeviceId,
) -> Result<Option<UsageRecord>, DbErr> {
    latest::Entity::find()
        .filter(latest::Column::TenantId.eq(tenant.0))
        .filter(latest::Column::DeviceId.eq(device.0))
        .one(conn)
        .await?
        .map(from_latest)
        .transpose()
}

/// The last usage of every device of the tenant that reported one.
pub async fn latest_for_tenant(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
) -> Result<BTreeMap<DeviceId, UsageRecord>, DbErr> {
    latest::Entity::find()
        .filter(latest::Column::TenantId.eq(tenant.0))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| from_latest(m).map(|r| (r.device_id, r)))
        .collect()
}

/// Makes `usage` the device's latest and appends it to the history.
pub async fn record(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    device: DeviceId,
    usage: &Usage,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let vaults = encode(usage)?;
    latest::Entity::delete_many()
        .filter(latest::Column::TenantId.eq(tenant.0))
        .filter(latest::Column::DeviceId.eq(device.0))
        .exec(conn)
        .await?;
    latest::Entity::insert(latest::ActiveModel {
        device_id: Set(device.0),
        tenant_id: Set(tenant.0),
        storage_gb: Set(usage.storage_gb),
        vaults: Set(vaults.clone()),
        reported_at: Set(at),
    })
    .exec_without_returning(conn)
    .await?;
    history::Entity::insert(history::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant.0),
        device_id: Set(device.0),
        storage_gb: Set(usage.storage_gb),
        vaults: Set(vaults),
        recorded_at: Set(at),
    })
    .exec_without_returning(conn)
    .await
    .map(|_| ())
}

/// A device's usage history, newest first, after `cursor` (an entry id); ids with the records.
pub async fn history(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    device: DeviceId,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<Vec<(Uuid, UsageRecord)>, DbErr> {
    let mut query = history::Entity::find()
        .filter(history::Column::TenantId.eq(tenant.0))
        .filter(history::Column::DeviceId.eq(device.0))
        .order_by_desc(history::Column::Id)
        .limit(limit);
    if let Some(before) = cursor {
        query = query.filter(history::Column::Id.lt(before));
    }
    query
        .all(conn)
        .await?
        .into_iter()
        .map(|m| decode(m.device_id, m.storage_gb, m.vaults, m.recorded_at).map(|r| (m.id, r)))
        .collect()
}
