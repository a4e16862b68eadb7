//! The field audit: the current state of every field on every device, and its append-only
//! history, written only when something changes.

use crate::db::entities::{device_field_history as history, device_fields as fields, devices};
use crate::domain::device::{FieldRecord, ReportedRecord, ServedField};
use crate::domain::field_audit::{HistoryEntry, InheritedState, OverrideKind};
use crate::domain::sync::FieldFlags;
use crate::domain::{DeviceId, PolicyId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Condition, Expr, ExprTrait, Query, SimpleExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
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
        locked: Set(Some(record.served.locked)),
    };
    history::Entity::insert(model)
        .exec_without_returning(conn)
        .await
        .map(|_| ())
}

fn history_entry(m: history::Model) -> HistoryEntry {
    HistoryEntry {
        id: m.id,
        event: m.event,
        recorded_at: m.recorded_at,
        locked: m.locked,
        record: FieldRecord {
            device_id: DeviceId(m.device_id),
            path: m.path,
            served: ServedField {
                fingerprint: m.served_fingerprint,
                source: source_name(&m.source),
                policy_id: m.policy_id,
                policy_version: m.policy_version,
                locked: m.locked.unwrap_or(false),
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
    }
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
    Ok(query.all(conn).await?.into_iter().map(history_entry).collect())
}

/// A device's whole history up to and including `at`, oldest first (by the time each change
/// happened: served entries are written in batches, after the pull they record).
pub async fn history_until(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    device: DeviceId,
    at: DateTime<Utc>,
) -> Result<Vec<HistoryEntry>, DbErr> {
    Ok(history::Entity::find()
        .filter(history::Column::TenantId.eq(tenant.0))
        .filter(history::Column::DeviceId.eq(device.0))
        .filter(history::Column::RecordedAt.lte(at))
        .order_by_asc(history::Column::RecordedAt)
        .order_by_asc(history::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(history_entry)
        .collect())
}

/// Rows of active devices only: a decommissioned device no longer runs anything the server
/// serves, so it neither inherits nor overrides.
fn of_active_device() -> SimpleExpr {
    Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from(devices::Entity)
            .and_where(
                Expr::col((devices::Entity, devices::Column::Id))
                    .equals((fields::Entity, fields::Column::DeviceId)),
            )
            .and_where(Expr::col((devices::Entity, devices::Column::Status)).eq("active"))
            .to_owned(),
    )
}

/// What "who inherits field F?" asks.
#[derive(Debug, Clone, Copy)]
pub struct InheritedQuery<'a> {
    pub path: &'a str,
    pub policy: Option<PolicyId>,
    pub version: Option<i32>,
    /// Both states when `None`.
    pub state: Option<InheritedState>,
}

/// Active devices that inherit field `path`: served it from a policy (optionally a given policy and
/// version) and reported `inherited`, or not reported the field yet. In device order after
/// `cursor`.
pub async fn inherited(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    q: InheritedQuery<'_>,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<Vec<FieldRecord>, DbErr> {
    let reported = fields::Column::ReportedState;
    let mut query = fields::Entity::find()
        .filter(fields::Column::TenantId.eq(tenant.0))
        .filter(fields::Column::Path.eq(q.path))
        .filter(fields::Column::Source.eq("policy"))
        .filter(of_active_device())
        .filter(match q.state {
            Some(InheritedState::Inherited) => Condition::all().add(reported.eq("inherited")),
            Some(InheritedState::NotReported) => Condition::all().add(reported.is_null()),
            None => Condition::any()
                .add(reported.eq("inherited"))
                .add(reported.is_null()),
        })
        .order_by_asc(fields::Column::DeviceId)
        .limit(limit);
    if let Some(policy) = q.policy {
        query = query.filter(fields::Column::PolicyId.eq(policy.0));
    }
    if let Some(version) = q.version {
        query = query.filter(fields::Column::PolicyVersion.eq(version));
    }
    if let Some(after) = cursor {
        query = query.filter(fields::Column::DeviceId.gt(after));
    }
    Ok(query.all(conn).await?.into_iter().map(to_domain).collect())
}

/// Fields active devices override locally (optionally only field `path`, only allowed overrides or
/// only violations), in (device, path) order after `after`.
pub async fn overrides(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    path: Option<&str>,
    kind: Option<OverrideKind>,
    after: Option<(DeviceId, &str)>,
    limit: u64,
) -> Result<Vec<FieldRecord>, DbErr> {
    let mut query = fields::Entity::find()
        .filter(fields::Column::TenantId.eq(tenant.0))
        .filter(fields::Column::ReportedState.eq("overridden"))
        .filter(of_active_device())
        .order_by_asc(fields::Column::DeviceId)
        .order_by_asc(fields::Column::Path)
        .limit(limit);
    if let Some(path) = path {
        query = query.filter(fields::Column::Path.eq(path));
    }
    if let Some(kind) = kind {
        query = query.filter(fields::Column::Violation.eq(kind == OverrideKind::Violation));
    }
    if let Some((device, path)) = after {
        query = query.filter(
            Condition::any().add(fields::Column::DeviceId.gt(device.0)).add(
                Condition::all()
                    .add(fields::Column::DeviceId.eq(device.0))
                    .add(fields::Column::Path.gt(path)),
            ),
        );
    }
    Ok(query.all(conn).await?.into_iter().map(to_domain).collect())
}

/// The field flags of the tenant's devices (or only of `devices`) that have an overridden or
/// failed field; devices without one are absent (their flags are all zero).
pub async fn flags(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    devices: Option<&[DeviceId]>,
) -> Result<HashMap<DeviceId, FieldFlags>, DbErr> {
    let mut query = fields::Entity::find()
        .select_only()
        .column(fields::Column::DeviceId)
        .column(fields::Column::ReportedState)
        .column(fields::Column::Violation)
        .filter(fields::Column::TenantId.eq(tenant.0))
        .filter(
            Condition::any()
                .add(fields::Column::ReportedState.is_in(["overridden", "failed"]))
                .add(fields::Column::Violation.eq(true)),
        );
    if let Some(devices) = devices {
        query = query.filter(fields::Column::DeviceId.is_in(devices.iter().map(|d| d.0)));
    }
    let rows: Vec<(Uuid, Option<String>, bool)> = query.into_tuple().all(conn).await?;
    let mut flags: HashMap<DeviceId, FieldFlags> = HashMap::new();
    for (device, state, violation) in rows {
        flags
            .entry(DeviceId(device))
            .or_default()
            .count(state.as_deref(), violation);
    }
    Ok(flags)
}

/// Per device and policy, the version of the policy the device was last served (the highest
/// version among the fields it gets from that policy).
pub async fn served_versions(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
) -> Result<Vec<(DeviceId, PolicyId, i32)>, DbErr> {
    let rows: Vec<(Uuid, Option<Uuid>, Option<i32>)> = fields::Entity::find()
        .select_only()
        .column(fields::Column::DeviceId)
        .column(fields::Column::PolicyId)
        .column_as(fields::Column::PolicyVersion.max(), "policy_version")
        .filter(fields::Column::TenantId.eq(tenant.0))
        .filter(fields::Column::Source.eq("policy"))
        .group_by(fields::Column::DeviceId)
        .group_by(fields::Column::PolicyId)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(device, policy, version)| Some((DeviceId(device), PolicyId(policy?), version?)))
        .collect())
}
