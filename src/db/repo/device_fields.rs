//! The field audit: the current state of every field on every device, and its append-only
//! history, written only when something changes.

use crate::db::entities::{device_field_history as history, device_fields as fields};
use crate::domain::device::{FieldRecord, ReportedRecord, ServedField};
use crate::domain::{DeviceId, PolicyId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

fn source_name(source: &str) -> &'static str {
    match source {
        "policy" => "policy",
        "device" => "device",
        _ => "unset",
    }
}

fn parse_json(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn to_domain(m: fields::Model) -> FieldRecord {
    FieldRecord {
        device_id: DeviceId(m.device_id),
        served: ServedField {
            fingerprint: m.served_fingerprint,
            source: source_name(&m.source),
            policy_id: m.policy_id,
            policy_version: m.policy_version,
            locked: m.locked,
        },
        served_since: m.served_since,
        reported: m.reported_state.map(|state| ReportedRecord {
            state,
            local_value: parse_json(m.local_value),
            error: m.error,
            since: m.reported_since.unwrap_or(m.served_since),
        }),
        violation: m.violation,
        path: m.path,
    }
}

pub async fn load(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    device: DeviceId,
) -> Result<BTreeMap<String, FieldRecord>, DbErr> {
    Ok(fields::Entity::find()
        .filter(fields::Column::TenantId.eq(tenant.0))
        .filter(fields::Column::DeviceId.eq(device.0))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| (m.path.clone(), to_domain(m)))
        .collect())
}

/// Writes the record, replacing the previous state of that field.
pub async fn put(conn: &impl ConnectionTrait, tenant: TenantId, record: &FieldRecord) -> Result<(), DbErr> {
    fields::Entity::delete_many()
        .filter(fields::Column::TenantId.eq(tenant.0))
        .filter(fields::Column::DeviceId.eq(record.device_id.0))
        .filter(fields::Column::Path.eq(record.path.as_str()))
        .exec(conn)
        .await?;
    let reported = record.reported.as_ref();
    let model = fields::ActiveModel {
        device_id: Set(record.device_id.0),
        path: Set(record.path.clone()),
        tenant_id: Set(tenant.0),
        served_fingerprint: Set(record.served.fingerprint.clone()),
        source: Set(record.served.source.to_owned()),
        policy_id: Set(record.served.policy_id),
        policy_version: Set(record.served.policy_version),
        locked: Set(record.served.locked),
        served_since: Set(record.served_since),
        reported_state: Set(reported.map(|r| r.state.clone())),
        local_value: Set(reported
            .and_then(|r| r.local_value.as_ref())
            .map(Value::to_string)),
        error: Set(reported.and_then(|r| r.error.clone())),
        reported_since: Set(reported.map(|r| r.since)),
        violation: Set(record.violation),
    };
    fields::Entity::insert(model)
        .exec_without_returning(conn)
        .await
        .map(|_| ())
}

/// What changed, for the history: `served` or `reported`.
pub async fn append_history(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    event: &str,
    record: &FieldRecord,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let reported = record.reported.as_ref();
    let model = history::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant.0),
        device_id: Set(record.device_id.0),
        path: Set(record.path.clone()),
        event: Set(event.to_owned()),
        served_fingerprint: Set(record.served.fingerprint.clone()),
        source: Set(record.served.source.to_owned()),
        policy_id: Set(record.served.policy_id),
        policy_version: Set(record.served.policy_version),
        reported_state: Set(reported.map(|r| r.state.clone())),
        local_value: Set(reported
            .and_then(|r| r.local_value.as_ref())
            .map(Value::to_string)),
        error: Set(reported.and_then(|r| r.error.clone())),
        recorded_at: Set(at),
    };
    history::Entity::insert(model)
        .exec_without_returning(conn)
        .await
        .map(|_| ())
}

/// One entry of a field's history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub id: Uuid,
    pub event: String,
    pub record: FieldRecord,
    pub recorded_at: DateTime<Utc>,
}

/// A device's history, newest first, optionally for one field.
pub async fn history(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    device: DeviceId,
    path: Option<&str>,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<Vec<HistoryEntry>, DbErr> {
    let mut query = history::Entity::find()
        .filter(history::Column::TenantId.eq(tenant.0))
        .filter(history::Column::DeviceId.eq(device.0))
        .order_by_desc(history::Column::Id)
        .limit(limit);
    if let Some(path) = path {
        query = query.filter(history::Column::Path.eq(path));
    }
    if let Some(before) = cursor {
        query = query.filter(history::Column::Id.lt(before));
    }
    Ok(query
        .all(conn)
        .await?
        .into_iter()
        .map(|m| HistoryEntry {
            id: m.id,
            event: m.event,
            recorded_at: m.recorded_at,
            record: FieldRecord {
                device_id: DeviceId(m.device_id),
                path: m.path,
                served: ServedField {
                    fingerprint: m.served_fingerprint,
                    source: source_name(&m.source),
                    policy_id: m.policy_id,
                    policy_version: m.policy_version,
                    locked: false,
                },
                served_since: m.recorded_at,
                reported: m.reported_state.map(|state| ReportedRecord {
                    state,
                    local_value: parse_json(m.local_value),
                    error: m.error,
                    since: m.recorded_at,
                }),
                violation: false,
            },
        })
        .collect())
}

/// Which devices get field `path` from a policy (optionally a given policy and version), in
/// device order after `cursor`.
pub async fn inherited(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    path: &str,
    policy: Option<PolicyId>,
    version: Option<i32>,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<Vec<FieldRecord>, DbErr> {
    let mut query = fields::Entity::find()
        .filter(fields::Column::TenantId.eq(tenant.0))
        .filter(fields::Column::Path.eq(path))
        .filter(fields::Column::Source.eq("policy"))
        .order_by_asc(fields::Column::DeviceId)
        .limit(limit);
    if let Some(policy) = policy {
        query = query.filter(fields::Column::PolicyId.eq(policy.0));
    }
    if let Some(version) = version {
        query = query.filter(fields::Column::PolicyVersion.eq(version));
    }
    if let Some(after) = cursor {
        query = query.filter(fields::Column::DeviceId.gt(after));
    }
    Ok(query.all(conn).await?.into_iter().map(to_domain).collect())
}

/// Fields reported in `state` (optionally only field `path`), in (device, path) order.
pub async fn in_state(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    state: &str,
    path: Option<&str>,
) -> Result<Vec<FieldRecord>, DbErr> {
    let mut query = fields::Entity::find()
        .filter(fields::Column::TenantId.eq(tenant.0))
        .filter(fields::Column::ReportedState.eq(state))
        .order_by_asc(fields::Column::DeviceId)
        .order_by_asc(fields::Column::Path);
    if let Some(path) = path {
        query = query.filter(fields::Column::Path.eq(path));
    }
    Ok(query.all(conn).await?.into_iter().map(to_domain).collect())
}
