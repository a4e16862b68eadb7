//! Devices: identity, credential, assignment, device values, and what they pulled and applied.

use super::connectivity::ConnectivityFilter;
use super::policies::{decode_values, encode_values};
use super::{Written, device_checkins, expect_version};
use crate::db::changes::{self, Announce, Change};
use crate::db::entities::devices::{ActiveModel, Column, Entity, Model};
use crate::db::entities::{device_checkins as checkins, device_fields, device_reregistrations};
use crate::domain::device::{Connectivity, Device, DeviceKind, Lifecycle, ReportedKind};
use crate::domain::{DeviceId, Expected, PolicyId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, LockType, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, SelectTwo, Statement,
};
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

/// Devices with their check-in times (`LEFT JOIN device_checkins`): the one way rows become
/// a [`Device`].
fn select() -> SelectTwo<Entity, checkins::Entity> {
    Entity::find().find_also_related(checkins::Entity)
}

/// [`select`], locking the device rows for a change: only them, as PostgreSQL refuses to lock
/// the nullable side of an outer join, and the check-in times are not the change's to make.
fn select_for_update() -> SelectTwo<Entity, checkins::Entity> {
    let mut query = select();
    QueryTrait::query(&mut query).lock_with_tables(LockType::Update, [Entity]);
    query
}

fn to_domain((m, checkin): (Model, Option<checkins::Model>)) -> Result<Device, DbErr> {
    let (last_seen_at, last_pull_at, next_pull_after) = checkin.map_or((None, None, None), |c| {
        (c.last_seen_at, c.last_pull_at, c.next_pull_after)
    });
    Ok(Device {
        id: DeviceId(m.id),
        tenant_id: TenantId(m.tenant_id),
        kind: m.kind.parse::<DeviceKind>().map_err(DbErr::Type)?,
        hardware_id: m.hardware_id,
        hostname: m.hostname,
        software_version: m.software_version,
        policy_id: PolicyId(m.policy_id),
        fingerprint_key: m.fingerprint_key,
        device_values: decode_values(&m.device_values)?,
        reassert: serde_json::from_str::<BTreeSet<String>>(&m.reassert)
            .map_err(|e| DbErr::Json(e.to_string()))?,
        version: m.version,
        lifecycle: m.status.parse::<Lifecycle>().map_err(DbErr::Type)?,
        registered_at: m.registered_at,
        credential_rotated_at: m.credential_rotated_at,
        last_seen_at,
        last_pull_at,
        next_pull_after,
        served_hash: m.served_hash,
        applied_hash: m.applied_hash,
        applied_at: m.applied_at,
        failed_hash: m.failed_hash,
        last_report_digest: m.last_report_digest,
        audited_key: m.audited_key,
        recorded_connectivity: Connectivity::parse(&m.connectivity),
    })
}

fn all(models: Vec<(Model, Option<checkins::Model>)>) -> Result<Vec<Device>, DbErr> {
    models.into_iter().map(to_domain).collect()
}

/// The row of `device` as given, with its credential hash.
fn row(device: &Device, credential_hash: &str, now: DateTime<Utc>) -> Result<ActiveModel, DbErr> {
    Ok(ActiveModel {
        id: Set(device.id.0),
        tenant_id: Set(device.tenant_id.0),
        kind: Set(device.kind.as_str().to_owned()),
        hardware_id: Set(device.hardware_id.clone()),
        hostname: Set(device.hostname.clone()),
        software_version: Set(device.software_version.clone()),
        policy_id: Set(device.policy_id.0),
        credential_hash: Set(credential_hash.to_owned()),
        fingerprint_key: Set(device.fingerprint_key.clone()),
        device_values: Set(encode_values(&device.device_values)?),
        reassert: Set(reassert_json(&device.reassert)?),
        version: Set(device.version),
        status: Set(device.lifecycle.as_str().to_owned()),
        registered_at: Set(device.registered_at),
        credential_rotated_at: Set(device.credential_rotated_at),
        served_hash: Set(device.served_hash.clone()),
        applied_hash: Set(device.applied_hash.clone()),
        applied_at: Set(device.applied_at),
        failed_hash: Set(device.failed_hash.clone()),
        last_report_digest: Set(device.last_report_digest.clone()),
        audited_key: Set(device.audited_key.clone()),
        connectivity: Set(device.recorded_connectivity.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    })
}

/// Stores a new device as given (with its check-in times, if any).
pub async fn insert(
    conn: &impl ConnectionTrait,
    device: &Device,
    credential_hash: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::insert(row(device, credential_hash, now)?)
        .exec_without_returning(conn)
        .await?;
    device_checkins::insert(conn, device_checkins::row(device).into_iter().collect()).await
}

pub async fn get(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: DeviceId,
) -> Result<Option<Device>, DbErr> {
    select()
        .filter(Column::Id.eq(id.0))
        .filter(Column::TenantId.eq(tenant.0))
        .one(conn)
        .await?
        .map(to_domain)
        .transpose()
}

/// The hostnames of the tenant's devices among `ids` (for lists that name devices).
pub async fn hostnames(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    ids: &[DeviceId],
) -> Result<HashMap<DeviceId, String>, DbErr> {
    let rows: Vec<(Uuid, String)> = Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::Hostname)
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::Id.is_in(ids.iter().map(|d| d.0)))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(|(id, name)| (DeviceId(id), name)).collect())
}

/// Reads and locks a device for a change, checking the version the client expects.
pub async fn get_for_update(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: DeviceId,
    expected: Expected,
) -> Result<Written<Device>, DbErr> {
    let found = select_for_update()
        .filter(Column::Id.eq(id.0))
        .filter(Column::TenantId.eq(tenant.0))
        .one(conn)
        .await?
        .map(to_domain)
        .transpose()?;
    Ok(expect_version(found, |d| d.version, expected))
}

/// The device of a tenant with this hardware id, locked: re-registration finds it here.
pub async fn find_by_hardware_for_update(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    hardware_id: &str,
) -> Result<Option<Device>, DbErr> {
    select_for_update()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::HardwareId.eq(hardware_id))
        .one(conn)
        .await?
        .map(to_domain)
        .transpose()
}

/// The devices presenting these credentials (by SHA-256), keyed by it; an unknown one is
/// absent. Device requests carry no tenant: the credential decides it, and every later query
/// is scoped to that tenant. One query for many: misses arriving together are read together.
///
/// The statement is written here rather than by the query builder: it is the read of every
/// directory miss, and the builder spelled out and aliased each of the join's 28 columns for
/// every batch (1.2% of the server's time in a profile of misses over 200,000 devices, and more
/// in allocating).
pub async fn find_by_credentials(
    conn: &impl ConnectionTrait,
    credential_hashes: &[&str],
) -> Result<HashMap<String, Device>, DbErr> {
    if credential_hashes.is_empty() {
        return Ok(HashMap::new());
    }
    let backend = conn.get_database_backend();
    let mut sql = String::with_capacity(300 + 5 * credential_hashes.len());
    sql.push_str(
        "SELECT devices.*, device_checkins.last_seen_at, device_checkins.last_pull_at, \
         device_checkins.next_pull_after FROM devices \
         LEFT JOIN device_checkins ON device_checkins.device_id = devices.id \
         WHERE devices.credential_hash IN (",
    );
    for n in 1..=credential_hashes.len() {
        if n > 1 {
            sql.push_str(", ");
        }
        super::push_placeholder(&mut sql, backend, n);
    }
    sql.push(')');
    let values = credential_hashes.iter().map(|&hash| hash.into());
    let statement = Statement::from_sql_and_values(backend, sql, values);
    conn.query_all_raw(statement)
        .await?
        .iter()
        .map(|row| {
            let model = Model::from_query_result(row, "")?;
            let checkin = checkins::Model {
                device_id: model.id,
                tenant_id: model.tenant_id,
                last_seen_at: row.try_get("", "last_seen_at")?,
                last_pull_at: row.try_get("", "last_pull_at")?,
                next_pull_after: row.try_get("", "next_pull_after")?,
            };
            let hash = model.credential_hash.clone();
            to_domain((model, Some(checkin))).map(|device| (hash, device))
        })
        .collect()
}

/// Filters of the device list; `None` matches everything.
#[derive(Debug, Default, Clone)]
pub struct DeviceFilter {
    pub kind: Option<DeviceKind>,
    pub lifecycle: Option<Lifecycle>,
    pub policy_ids: Option<Vec<PolicyId>>,
    pub has_overrides: Option<bool>,
    pub has_failures: Option<bool>,
    pub drifted: Option<bool>,
    /// Only devices whose `next_pull_after` is before this (now minus the grace).
    pub due_before: Option<DateTime<Utc>>,
    /// Devices with (or without) a re-registration waiting for an operator.
    pub reregistration_pending: Option<bool>,
    /// Devices whose hostname contains this text, ignoring case.
    pub hostname: Option<String>,
    /// Devices overriding (or not) at least one locked field.
    pub has_violations: Option<bool>,
    /// Devices whose stored check-in times put them in one of these connectivity states.
    pub connectivity: Option<ConnectivityFilter>,
}

/// A device with a field matching `condition` in its field table.
fn with_field(condition: sea_orm::sea_query::SimpleExpr) -> sea_orm::sea_query::SimpleExpr {
    Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from(device_fields::Entity)
            .and_where(
                Expr::col((device_fields::Entity, device_fields::Column::DeviceId))
                    .equals((Entity, Column::Id)),
            )
            .and_where(condition)
            .to_owned(),
    )
}

fn with_reported(states: &[ReportedKind]) -> sea_orm::sea_query::SimpleExpr {
    with_field(
        device_fields::Column::ReportedState
            .is_in(states.iter().map(|s| super::device_fields::state_column(*s))),
    )
}

pub async fn list(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    filter: &DeviceFilter,
    cursor: Option<Uuid>,
    limit: Option<u64>,
) -> Result<Vec<Device>, DbErr> {
    let mut query = select()
        .filter(Column::TenantId.eq(tenant.0))
        .order_by_asc(Column::Id);
    if let Some(limit) = limit {
        query = query.limit(limit);
    }
    if let Some(after) = cursor {
        query = query.filter(Column::Id.gt(after));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(Column::Kind.eq(kind.as_str()));
    }
    if let Some(lifecycle) = filter.lifecycle {
        query = query.filter(Column::Status.eq(lifecycle.as_str()));
    }
    if let Some(policies) = &filter.policy_ids {
        query = query.filter(Column::PolicyId.is_in(policies.iter().map(|p| p.0)));
    }
    if let Some(wanted) = filter.reregistration_pending {
        let exists = Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(device_reregistrations::Entity)
                .and_where(
                    Expr::col((
                        device_reregistrations::Entity,
                        device_reregistrations::Column::DeviceId,
                    ))
                    .equals((Entity, Column::Id)),
                )
                .to_owned(),
        );
        query = query.filter(if wanted { exists } else { exists.not() });
    }
    for (wanted, states) in [
        (filter.has_overrides, &[ReportedKind::Overridden][..]),
        (filter.has_failures, &[ReportedKind::Failed][..]),
        (
            filter.drifted,
            &[ReportedKind::Overridden, ReportedKind::Failed][..],
        ),
    ] {
        if let Some(wanted) = wanted {
            let exists = with_reported(states);
            query = query.filter(if wanted { exists } else { exists.not() });
        }
    }
    if let Some(wanted) = filter.has_violations {
        let exists = with_field(device_fields::Column::Violation.eq(true));
        query = query.filter(if wanted { exists } else { exists.not() });
    }
    if let Some(connectivity) = &filter.connectivity {
        query = query.filter(connectivity.condition());
    }
    if let Some(due_before) = filter.due_before {
        query = query.filter(checkins::Column::NextPullAfter.lt(due_before));
    }
    if let Some(text) = filter.hostname.as_deref().filter(|t| !t.is_empty()) {
        // `%` and `_` typed by an operator are literal characters, not wildcards.
        let escaped: String = text
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        query = query.filter(
            Expr::expr(Func::lower(Expr::col(Column::Hostname)))
                .like(LikeExpr::new(format!("%{escaped}%")).escape('\\')),
        );
    }
    all(query.all(conn).await?)
}

/// What the dashboards count of an active device, without its identity or values.
#[derive(Debug, Clone)]
pub struct StatusRow {
    pub id: DeviceId,
    pub policy_id: PolicyId,
    /// Values of its own or fields to reassert: its config is its own, not its policy's.
    pub own_config: bool,
    pub served_hash: Option<String>,
    pub applied_hash: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub next_pull_after: Option<DateTime<Utc>>,
}

type StatusTuple = (
    Uuid,
    Uuid,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// Every active device of the tenant as the dashboards count it: a few columns a device, so a
/// fleet-wide count reads no more than it needs.
pub async fn status_rows(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<Vec<StatusRow>, DbErr> {
    let rows: Vec<StatusTuple> = Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::PolicyId)
        .column(Column::DeviceValues)
        .column(Column::Reassert)
        .column(Column::ServedHash)
        .column(Column::AppliedHash)
        .column(checkins::Column::LastSeenAt)
        .column(checkins::Column::NextPullAfter)
        .left_join(checkins::Entity)
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::Status.eq(Lifecycle::Active.as_str()))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, policy, values, reassert, served, applied, seen, next)| StatusRow {
                id: DeviceId(id),
                policy_id: PolicyId(policy),
                // How the empty map and set are stored; anything else counts as a config of its own.
                own_config: values != "{}" || reassert != "[]",
                served_hash: served,
                applied_hash: applied,
                last_seen_at: seen,
                next_pull_after: next,
            },
        )
        .collect())
}

/// The tenant's devices among `ids`, read in chunks of bounded size.
pub async fn get_many(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    ids: &[DeviceId],
) -> Result<Vec<Device>, DbErr> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let models = select()
            .filter(Column::TenantId.eq(tenant.0))
            .filter(Column::Id.is_in(chunk.iter().map(|d| d.0)))
            .all(conn)
            .await?;
        found.extend(all(models)?);
    }
    Ok(found)
}

pub async fn count_for_policy(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    policy: PolicyId,
) -> Result<u64, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::PolicyId.eq(policy.0))
        .count(conn)
        .await
}

/// Stores what operators change on a device (assignment, device values, reassert) and bumps
/// its version.
pub async fn save_operator_state(
    conn: &impl Announce,
    device: &Device,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::PolicyId, Expr::value(device.policy_id.0))
        .col_expr(
            Column::DeviceValues,
            Expr::value(encode_values(&device.device_values)?),
        )
        .col_expr(Column::Reassert, Expr::value(reassert_json(&device.reassert)?))
        .col_expr(Column::Version, Expr::col(Column::Version).add(1))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(device.id.0))
        .filter(Column::TenantId.eq(device.tenant_id.0))
        .exec(conn)
        .await?;
    changes::announce(conn, Change::Device(device.id)).await
}

fn reassert_json(reassert: &BTreeSet<String>) -> Result<String, DbErr> {
    serde_json::to_string(reassert).map_err(|e| DbErr::Json(e.to_string()))
}

/// A new credential (and identity details) for a device, e.g. on re-registration.
pub async fn replace_credential(
    conn: &impl Announce,
    device: &Device,
    credential_hash: &str,
    lifecycle: Lifecycle,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::CredentialHash, Expr::value(credential_hash))
        .col_expr(Column::CredentialRotatedAt, Expr::value(now))
        .col_expr(Column::Hostname, Expr::value(device.hostname.clone()))
        .col_expr(
            Column::SoftwareVersion,
            Expr::value(device.software_version.clone()),
        )
        .col_expr(Column::Status, Expr::value(lifecycle.as_str()))
        .col_expr(Column::Version, Expr::col(Column::Version).add(1))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(device.id.0))
        .filter(Column::TenantId.eq(device.tenant_id.0))
        .exec(conn)
        .await?;
    changes::announce(conn, Change::Device(device.id)).await
}

/// Devices served a batch: (device, hash served, audit key reached) each.
pub type ServedRecords<'a> = [(DeviceId, &'a str, &'a str)];

/// The config hash now served to each device and the key its field audit was brought up to
/// (written only when one changes, by the served-audit queue): one `UPDATE … FROM (VALUES …)`
/// per thousand devices, and one announcement statement. A device not of `tenant` is skipped.
pub async fn record_served(
    conn: &impl Announce,
    tenant: TenantId,
    served: &ServedRecords<'_>,
) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    for chunk in served.chunks(1000) {
        let mut sql = String::with_capacity(200 + 24 * chunk.len());
        sql.push_str("UPDATE devices SET served_hash = v.column3, audited_key = v.column4 FROM (VALUES ");
        super::push_value_rows(&mut sql, backend, chunk.len(), 4);
        // The tenant is a column of the `VALUES`, not a constant: given `tenant_id = ?`,
        // SQLite (3.50) walks every device of the tenant and scans the `VALUES` for each; this
        // way it looks each row of the `VALUES` up by its key.
        sql.push_str(") AS v WHERE devices.id = v.column1 AND devices.tenant_id = v.column2");
        let values: Vec<sea_orm::Value> = chunk
            .iter()
            .flat_map(|(device, hash, key)| [device.0.into(), tenant.0.into(), (*hash).into(), (*key).into()])
            .collect();
        conn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    let announced: Vec<Change> = served
        .iter()
        .map(|(device, ..)| Change::Device(*device))
        .collect();
    changes::announce_all(conn, &announced).await
}

/// Records a connectivity transition.
pub async fn set_connectivity(
    conn: &impl Announce,
    device: &Device,
    connectivity: Connectivity,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::Connectivity, Expr::value(connectivity.as_str()))
        .filter(Column::Id.eq(device.id.0))
        .filter(Column::TenantId.eq(device.tenant_id.0))
        .exec(conn)
        .await?;
    changes::announce(conn, Change::Device(device.id)).await
}

/// What a report leaves behind.
pub struct ReportOutcome<'a> {
    pub applied_hash: Option<&'a str>,
    pub failed_hash: Option<&'a str>,
    pub digest: &'a str,
    pub reassert: &'a BTreeSet<String>,
}

pub async fn record_report(
    conn: &impl Announce,
    device: &Device,
    now: DateTime<Utc>,
    outcome: ReportOutcome<'_>,
) -> Result<(), DbErr> {
    device_checkins::record_seen(conn, device, now).await?;
    let mut update = Entity::update_many()
        .col_expr(Column::LastReportDigest, Expr::value(outcome.digest))
        .col_expr(Column::Hostname, Expr::value(device.hostname.clone()))
        .col_expr(
            Column::SoftwareVersion,
            Expr::value(device.software_version.clone()),
        )
        .col_expr(Column::Reassert, Expr::value(reassert_json(outcome.reassert)?))
        .col_expr(
            Column::FailedHash,
            Expr::value(outcome.failed_hash.map(str::to_owned)),
        );
    if let Some(applied) = outcome.applied_hash {
        update = update
            .col_expr(Column::AppliedHash, Expr::value(applied))
            .col_expr(Column::AppliedAt, Expr::value(now));
    }
    update
        .filter(Column::Id.eq(device.id.0))
        .filter(Column::TenantId.eq(device.tenant_id.0))
        .exec(conn)
        .await?;
    changes::announce(conn, Change::Device(device.id)).await
}

/// Every device's stored values in id order, across tenants, for key rotation.
pub async fn device_values_page(
    conn: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<(Uuid, TenantId, String)>, DbErr> {
    let mut query = Entity::find().order_by_asc(Column::Id).limit(limit);
    if let Some(after) = after {
        query = query.filter(Column::Id.gt(after));
    }
    Ok(query
        .all(conn)
        .await?
        .into_iter()
        .map(|m| (m.id, TenantId(m.tenant_id), m.device_values))
        .collect())
}

/// Stores re-encrypted device values. The content is the same, so the version stays.
pub async fn replace_device_values(conn: &impl Announce, id: Uuid, values: &str) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::DeviceValues, Expr::value(values))
        .filter(Column::Id.eq(id))
        .exec(conn)
        .await?;
    changes::announce(conn, Change::Device(DeviceId(id))).await
}

/// Inserts devices exactly as given (schedule, served hash and all), many rows per statement:
/// the benchmark seeds a fleet with it. Each item is a device and its credential hash. Rows go
/// in chunks that stay under SQLite's and PostgreSQL's bound-parameter limits.
pub async fn insert_many(
    conn: &impl ConnectionTrait,
    batch: &[(Device, String)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    // 23 columns: 500 rows bind 11 500 parameters (SQLite allows 32 766, PostgreSQL 65 535).
    const ROWS_PER_STATEMENT: usize = 500;
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let rows = chunk
            .iter()
            .map(|(device, credential_hash)| row(device, credential_hash, now))
            .collect::<Result<Vec<_>, DbErr>>()?;
        Entity::insert_many(rows).exec_without_returning(conn).await?;
        device_checkins::insert(
            conn,
            chunk
                .iter()
                .filter_map(|(d, _)| device_checkins::row(d))
                .collect(),
        )
        .await?;
    }
    Ok(())
}
