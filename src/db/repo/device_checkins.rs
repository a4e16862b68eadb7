//! Devices' check-in times (`device_checkins`): when each was last seen, last pulled, and
//! should pull next. A narrow table apart from `devices`, since every pull rewrites them and
//! nothing else of the device (migration `m20261129_000003_device_checkins`).

use crate::db::entities::device_checkins as checkins;
use crate::domain::device::Device;
use crate::domain::{DeviceId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, Statement};

/// The check-in row of `device`, if it has checked in.
pub(super) fn row(device: &Device) -> Option<checkins::ActiveModel> {
    let times = [device.last_seen_at, device.last_pull_at, device.next_pull_after];
    times
        .iter()
        .any(Option::is_some)
        .then_some(checkins::ActiveModel {
            device_id: Set(device.id.0),
            tenant_id: Set(device.tenant_id.0),
            last_seen_at: Set(device.last_seen_at),
            last_pull_at: Set(device.last_pull_at),
            next_pull_after: Set(device.next_pull_after),
        })
}

/// Stores check-in rows as given, with their devices (registration, seeding).
pub(super) async fn insert(
    conn: &impl ConnectionTrait,
    rows: Vec<checkins::ActiveModel>,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    checkins::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await
        .map(|_| ())
}

/// Devices' check-ins, when each pulled and when it should come back, in one statement (an
/// `INSERT … SELECT … FROM (VALUES …)` upsert, on both engines). Each item is (tenant,
/// device, seen at, next pull after), one per device. Never moves time backwards, so batches
/// from several replicas can land in any order: a pull older than the stored one changes
/// nothing, and a report seen later than the pull keeps its `last_seen_at`. A device unknown
/// to that tenant is skipped (the join), so one stray item cannot fail a batch.
pub async fn record_checkins(
    conn: &impl ConnectionTrait,
    checkins: &[(TenantId, DeviceId, DateTime<Utc>, DateTime<Utc>)],
) -> Result<(), DbErr> {
    if checkins.is_empty() {
        return Ok(());
    }
    let backend = conn.get_database_backend();
    // One string written in place: the statement has four placeholders per check-in, and a
    // flush writes thousands of check-ins a second at full load.
    let mut sql = String::with_capacity(600 + 24 * checkins.len());
    sql.push_str(
        "INSERT INTO device_checkins \
           (device_id, tenant_id, last_seen_at, last_pull_at, next_pull_after) \
         SELECT v.column1, v.column2, v.column3, v.column3, v.column4 FROM (VALUES ",
    );
    super::push_value_rows(&mut sql, backend, checkins.len(), 4);
    // VALUES columns are `column1`… on both engines. SQLite needs a WHERE before ON CONFLICT
    // in an INSERT … SELECT (to tell it from a join's ON).
    sql.push_str(
        ") AS v JOIN devices ON devices.id = v.column1 AND devices.tenant_id = v.column2 \
         WHERE true \
         ON CONFLICT (device_id) DO UPDATE SET \
           last_pull_at = excluded.last_pull_at, \
           next_pull_after = excluded.next_pull_after, \
           last_seen_at = CASE WHEN device_checkins.last_seen_at IS NULL \
             OR device_checkins.last_seen_at < excluded.last_seen_at \
             THEN excluded.last_seen_at ELSE device_checkins.last_seen_at END \
         WHERE device_checkins.last_pull_at IS NULL \
           OR device_checkins.last_pull_at < excluded.last_pull_at",
    );
    let values = checkins
        .iter()
        .flat_map(|(tenant, device, seen, next)| {
            [device.0.into(), tenant.0.into(), (*seen).into(), (*next).into()]
        })
        .collect::<Vec<sea_orm::Value>>();
    conn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .map(|_| ())
}

/// A device was heard from at `at` without pulling (a report): its `last_seen_at` moves
/// forward, its pull times stay.
pub(super) async fn record_seen(
    conn: &impl ConnectionTrait,
    device: &Device,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let stored = Expr::col((checkins::Entity, checkins::Column::LastSeenAt));
    let row = checkins::ActiveModel {
        device_id: Set(device.id.0),
        tenant_id: Set(device.tenant_id.0),
        last_seen_at: Set(Some(at)),
        ..Default::default()
    };
    checkins::Entity::insert(row)
        .on_conflict(
            OnConflict::column(checkins::Column::DeviceId)
                .update_column(checkins::Column::LastSeenAt)
                .action_and_where(stored.clone().is_null().or(stored.lt(at)))
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await
        .map(|_| ())
}
