//! The field audit: the current state of every field on every device, and its append-only
//! history, written only when something changes.

use crate::db::entities::{device_field_history as history, device_fields as fields, devices};
use crate::domain::device::{FieldRecord, ReportedKind, ReportedRecord, ServedField, ServedSource};
use crate::domain::field_audit::{HistoryEntry, HistoryEvent, InheritedState, OverrideKind};
use crate::domain::sync::FieldFlags;
use crate::domain::{DeviceId, PolicyId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Condition, Expr, ExprTrait, Query, SimpleExpr};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

// The column strings of the enums: the one mapping between the domain and the database.

fn source_column(source: ServedSource) -> &'static str {
    match source {
        ServedSource::Policy => "policy",
        ServedSource::Device => "device",
        ServedSource::Unset => "unset",
    }
}

fn source_of(column: &str) -> ServedSource {
    match column {
        "policy" => ServedSource::Policy,
        "device" => ServedSource::Device,
        _ => ServedSource::Unset,
    }
}

pub(super) const fn state_column(state: ReportedKind) -> &'static str {
    state.as_str()
}

fn state_of(column: &str) -> Result<ReportedKind, DbErr> {
    match column {
        "inherited" => Ok(ReportedKind::Inherited),
        "overridden" => Ok(ReportedKind::Overridden),
        "failed" => Ok(ReportedKind::Failed),
        "unsupported" => Ok(ReportedKind::Unsupported),
        other => Err(DbErr::Type(format!("unknown reported state `{other}`"))),
    }
}

fn event_column(event: HistoryEvent) -> &'static str {
    match event {
        HistoryEvent::Served => "served",
        HistoryEvent::Reported => "reported",
    }
}

fn event_of(column: &str) -> Result<HistoryEvent, DbErr> {
    match column {
        "served" => Ok(HistoryEvent::Served),
        "reported" => Ok(HistoryEvent::Reported),
        other => Err(DbErr::Type(format!("unknown field history event `{other}`"))),
    }
}

fn parse_json(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn to_domain(m: fields::Model) -> Result<FieldRecord, DbErr> {
    Ok(FieldRecord {
        device_id: DeviceId(m.device_id),
        served: ServedField {
            fingerprint: m.served_fingerprint,
            source: source_of(&m.source),
            policy_id: m.policy_id,
            policy_version: m.policy_version,
            locked: m.locked,
        },
        served_since: m.served_since,
        reported: match m.reported_state {
            Some(state) => Some(ReportedRecord {
                state: state_of(&state)?,
                local_value: parse_json(m.local_value),
                error: m.error,
                since: m.reported_since.unwrap_or(m.served_since),
            }),
            None => None,
        },
        violation: m.violation,
        path: m.path,
    })
}

fn to_domain_all(models: Vec<fields::Model>) -> Result<Vec<FieldRecord>, DbErr> {
    models.into_iter().map(to_domain).collect()
}

pub async fn load(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    device: DeviceId,
) -> Result<BTreeMap<String, FieldRecord>, DbErr> {
    Ok(load_many(conn, tenant, &[device])
        .await?
        .remove(&device)
        .unwrap_or_default())
}

/// The current records of several devices of a tenant, in one query.
pub async fn load_many(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    devices: &[DeviceId],
) -> Result<HashMap<DeviceId, BTreeMap<String, FieldRecord>>, DbErr> {
    let mut records: HashMap<DeviceId, BTreeMap<String, FieldRecord>> = HashMap::new();
    // One bound parameter per device, far below both engines' limits.
    for chunk in devices.chunks(1000) {
        // By device alone, through the primary key. With the tenant in the `WHERE`, SQLite
        // (which has no statistics: the server never runs `ANALYZE`) read every field row of
        // the tenant through `idx_device_fields_tenant_path` instead, a cost growing with the
        // fleet. The tenant still scopes the answer: another tenant's rows are dropped here.
        let rows = fields::Entity::find()
            .filter(fields::Column::DeviceId.is_in(chunk.iter().map(|d| d.0)))
            .all(conn)
            .await?
            .into_iter()
            .filter(|row| row.tenant_id == tenant.0)
            .collect();
        for record in to_domain_all(rows)? {
            records
                .entry(record.device_id)
                .or_default()
                .insert(record.path.clone(), record);
        }
    }
    Ok(records)
}

/// The columns of `device_fields`, in the order [`put`] binds them.
const FIELD_COLUMNS: [&str; 14] = [
    "device_id",
    "path",
    "tenant_id",
    "served_fingerprint",
    "source",
    "policy_id",
    "policy_version",
    "locked",
    "served_since",
    "reported_state",
    "local_value",
    "error",
    "reported_since",
    "violation",
];

/// Replaces the state of a field: every column but the key.
const FIELD_UPSERT: &str = " ON CONFLICT (device_id, path) DO UPDATE SET \
    tenant_id = excluded.tenant_id, served_fingerprint = excluded.served_fingerprint, \
    source = excluded.source, policy_id = excluded.policy_id, \
    policy_version = excluded.policy_version, locked = excluded.locked, \
    served_since = excluded.served_since, reported_state = excluded.reported_state, \
    local_value = excluded.local_value, error = excluded.error, \
    reported_since = excluded.reported_since, violation = excluded.violation";

/// The served side's values of a record, from `served_fingerprint` to `policy_version`.
fn served_values(record: &FieldRecord) -> [sea_orm::Value; 4] {
    let served = &record.served;
    [
        served.fingerprint.clone().into(),
        source_column(served.source).into(),
        served.policy_id.into(),
        served.policy_version.into(),
    ]
}

/// The reported side's values of a record: state, local value, error.
fn reported_values(reported: Option<&ReportedRecord>) -> [sea_orm::Value; 3] {
    [
        reported.map(|r| state_column(r.state)).into(),
        reported
            .and_then(|r| r.local_value.as_ref())
            .map(Value::to_string)
            .into(),
        reported.and_then(|r| r.error.clone()).into(),
    ]
}

/// Writes the records, each replacing the previous state of its field, in multi-row
/// statements.
pub async fn put(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    records: &[FieldRecord],
) -> Result<(), DbErr> {
    let mut values = Vec::with_capacity(records.len() * FIELD_COLUMNS.len());
    for record in records {
        let reported = record.reported.as_ref();
        values.extend([
            record.device_id.0.into(),
            record.path.as_str().into(),
            tenant.0.into(),
        ]);
        values.extend(served_values(record));
        values.extend([record.served.locked.into(), record.served_since.into()]);
        values.extend(reported_values(reported));
        values.extend([reported.map(|r| r.since).into(), record.violation.into()]);
    }
    super::insert_rows(conn, "device_fields", &FIELD_COLUMNS, values, FIELD_UPSERT).await
}

/// The columns of `device_field_history`, in the order [`append_history`] binds them.
const HISTORY_COLUMNS: [&str; 14] = [
    "id",
    "tenant_id",
    "device_id",
    "path",
    "event",
    "served_fingerprint",
    "source",
    "policy_id",
    "policy_version",
    "reported_state",
    "local_value",
    "error",
    "recorded_at",
    "locked",
];

/// Appends what changed to the history, one entry per record, each at the time the record
/// says that side changed (`served_since`, or the report's `since`), in multi-row statements.
pub async fn append_history(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    event: HistoryEvent,
    records: &[FieldRecord],
) -> Result<(), DbErr> {
    let mut values = Vec::with_capacity(records.len() * HISTORY_COLUMNS.len());
    for record in records {
        let reported = record.reported.as_ref();
        let at = match (event, reported) {
            (HistoryEvent::Reported, Some(reported)) => reported.since,
            _ => record.served_since,
        };
        values.extend([
            Uuid::now_v7().into(),
            tenant.0.into(),
            record.device_id.0.into(),
            record.path.as_str().into(),
            event_column(event).into(),
        ]);
        values.extend(served_values(record));
        values.extend(reported_values(reported));
        values.extend([at.into(), Some(record.served.locked).into()]);
    }
    super::insert_rows(conn, "device_field_history", &HISTORY_COLUMNS, values, "").await
}

fn history_entry(m: history::Model) -> Result<HistoryEntry, DbErr> {
    Ok(HistoryEntry {
        id: m.id,
        event: event_of(&m.event)?,
        recorded_at: m.recorded_at,
        locked: m.locked,
        record: FieldRecord {
            device_id: DeviceId(m.device_id),
            path: m.path,
            served: ServedField {
                fingerprint: m.served_fingerprint,
                source: source_of(&m.source),
                policy_id: m.policy_id,
                policy_version: m.policy_version,
                locked: m.locked.unwrap_or(false),
            },
            served_since: m.recorded_at,
            reported: match m.reported_state {
                Some(state) => Some(ReportedRecord {
                    state: state_of(&state)?,
                    local_value: parse_json(m.local_value),
                    error: m.error,
                    since: m.recorded_at,
                }),
                None => None,
            },
            violation: false,
        },
    })
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
    query.all(conn).await?.into_iter().map(history_entry).collect()
}

/// A device's whole history up to and including `at`, oldest first (by the time each change
/// happened: served entries are written in batches, after the pull they record).
pub async fn history_until(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    device: DeviceId,
    at: DateTime<Utc>,
) -> Result<Vec<HistoryEntry>, DbErr> {
    history::Entity::find()
        .filter(history::Column::TenantId.eq(tenant.0))
        .filter(history::Column::DeviceId.eq(device.0))
        .filter(history::Column::RecordedAt.lte(at))
        .order_by_asc(history::Column::RecordedAt)
        .order_by_asc(history::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(history_entry)
        .collect()
}

/// Rows of active devices only: a decommissioned device no longer runs anything the server
/// serves, so it neither inherits nor overrides.
/// `reported_state = 'overridden'` with the state as a literal, not a bound parameter, so the
/// partial indexes that hold just the overridden rows (migration
/// `m20261129_000001_override_indexes`) serve every plan: PostgreSQL's generic plans cannot use
/// a partial index for a parameter, and SQLite would re-prepare the statement per value. The
/// literal is a constant of ours, never client input.
fn is_overridden() -> SimpleExpr {
    let literal = format!("'{}'", state_column(ReportedKind::Overridden));
    Expr::col((fields::Entity, fields::Column::ReportedState)).eq(Expr::cust(literal))
}

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
    let inherited = state_column(ReportedKind::Inherited);
    let mut query = fields::Entity::find()
        .filter(fields::Column::TenantId.eq(tenant.0))
        .filter(fields::Column::Path.eq(q.path))
        .filter(fields::Column::Source.eq(source_column(ServedSource::Policy)))
        .filter(of_active_device())
        .filter(match q.state {
            Some(InheritedState::Inherited) => Condition::all().add(reported.eq(inherited)),
            Some(InheritedState::NotReported) => Condition::all().add(reported.is_null()),
            None => Condition::any()
                .add(reported.eq(inherited))
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
    to_domain_all(query.all(conn).await?)
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
        .filter(is_overridden())
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
    to_domain_all(query.all(conn).await?)
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
        .column(fields::Column::TenantId)
        .filter(
            Condition::any()
                .add(fields::Column::ReportedState.is_in([
                    state_column(ReportedKind::Overridden),
                    state_column(ReportedKind::Failed),
                ]))
                .add(fields::Column::Violation.eq(true)),
        );
    // For a page of devices, by device alone and the tenant checked on the rows, as in
    // `load_many`: with the tenant in the `WHERE`, SQLite read all of its field rows.
    query = match devices {
        Some(devices) => query.filter(fields::Column::DeviceId.is_in(devices.iter().map(|d| d.0))),
        None => query.filter(fields::Column::TenantId.eq(tenant.0)),
    };
    let rows: Vec<(Uuid, Option<String>, bool, Uuid)> = query.into_tuple().all(conn).await?;
    let mut flags: HashMap<DeviceId, FieldFlags> = HashMap::new();
    for (device, state, violation, _) in rows.into_iter().filter(|row| row.3 == tenant.0) {
        flags
            .entry(DeviceId(device))
            .or_default()
            .count(state.as_deref().map(state_of).transpose()?, violation);
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
        .filter(fields::Column::Source.eq(source_column(ServedSource::Policy)))
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
