//! The served side of the field audit, written off the request path.
//!
//! When a pull serves a device under a new key (policy revision, device version), the fields
//! served are queued here, at most one entry per device (the latest), and written in batches
//! with the check-ins: the device's served hash and audit key, the current-state rows of the
//! fields that changed, and their history, in multi-row statements (a first pull writes one
//! row of each per field served: 16 with the benchmark's settings). A full queue is written at
//! once; shutdown writes what is left.
//!
//! A crash loses at most one flush interval of queued entries. Nothing is lost for good: the
//! device's audit key is still the old one, so its next pull queues the update again.

use super::device_queue::DeviceQueue;
use crate::db;
use crate::db::changes::Announce;
use crate::db::repo::{device_fields, devices};
use crate::domain::device::{FieldRecord, ReportedKind, ReportedRecord, ServedField};
use crate::domain::field_audit::HistoryEvent;
use crate::domain::{DeviceId, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// What one pull served, waiting to be written.
#[derive(Debug, Clone)]
pub struct Served {
    pub tenant: TenantId,
    pub hash: String,
    /// The audit key this brings the device up to.
    pub key: String,
    pub fields: Arc<BTreeMap<String, ServedField>>,
    pub at: DateTime<Utc>,
}

/// Entries not yet written, at most one per device.
pub type ServedQueue = DeviceQueue<Served>;

impl ServedQueue {
    /// The key queued for a device (so a second pull before the flush queues nothing).
    pub fn queued_key(&self, device: DeviceId) -> Option<String> {
        self.get(device, |s| s.key.clone())
    }
}

/// Queues what a pull served; written at once when batching is off
/// (`checkin_flush_interval_ms = 0`), or when the queue is full.
pub async fn record(state: &AppState, device: DeviceId, served: Served) -> Result<(), ApiError> {
    if state.config.checkin_flush_interval_ms == 0 {
        let txn = db::begin_write(&state.db).await?;
        write_batch(&txn, &[(device, served)]).await?;
        txn.commit().await?;
        return Ok(());
    }
    if state.served.push(device, served) {
        flush(state).await?;
    }
    Ok(())
}

/// Writes every queued entry, [`db::WRITE_CHUNK`] devices per transaction; returns how many.
/// On failure they go back into the queue for the next flush.
pub async fn flush(state: &AppState) -> Result<usize, ApiError> {
    flush_through(state, &state.db).await
}

/// [`flush`] through a given connection (at shutdown).
pub async fn flush_through(state: &AppState, conn: &DatabaseConnection) -> Result<usize, ApiError> {
    let _turn = state.served.turn().await;
    let mut batch = state.served.drain();
    let mut written = 0;
    // Short transactions: the database's one writer turn is never held for long.
    while !batch.is_empty() {
        let chunk: Vec<_> = batch.drain(..batch.len().min(db::WRITE_CHUNK)).collect();
        let stored = async {
            let txn = db::begin_batch_write(conn).await?;
            write_batch(&txn, &chunk).await?;
            txn.commit().await?;
            Ok::<_, ApiError>(())
        }
        .await;
        if let Err(error) = stored {
            state.served.restore(chunk.into_iter().chain(batch).collect());
            return Err(error);
        }
        written += chunk.len();
    }
    Ok(written)
}

/// Writes a batch in a handful of statements per tenant: the devices' current field records in
/// one read, the fields that changed and their history in multi-row statements, then each
/// device's served hash and audit key.
async fn write_batch(conn: &impl Announce, batch: &[(DeviceId, Served)]) -> Result<(), ApiError> {
    let mut by_tenant: HashMap<TenantId, Vec<&(DeviceId, Served)>> = HashMap::new();
    for entry in batch {
        by_tenant.entry(entry.1.tenant).or_default().push(entry);
    }
    for (tenant, entries) in by_tenant {
        let ids: Vec<DeviceId> = entries.iter().map(|(device, _)| *device).collect();
        let mut current = device_fields::load_many(conn, tenant, &ids).await?;
        let mut changed = Vec::new();
        for (device, served) in &entries {
            let before = current.remove(device).unwrap_or_default();
            changed.extend(changed_fields(*device, &served.fields, before, served.at));
        }
        device_fields::put(conn, tenant, &changed).await?;
        device_fields::append_history(conn, tenant, HistoryEvent::Served, &changed).await?;
        let records: Vec<_> = entries
            .iter()
            .map(|(device, served)| (*device, served.hash.as_str(), served.key.as_str()))
            .collect();
        devices::record_served(conn, tenant, &records).await?;
    }
    Ok(())
}

/// The new current state of every field whose value, provenance or lock changed (each is
/// also a history entry).
fn changed_fields(
    device: DeviceId,
    served: &BTreeMap<String, ServedField>,
    mut current: BTreeMap<String, FieldRecord>,
    now: DateTime<Utc>,
) -> Vec<FieldRecord> {
    let paths: BTreeSet<String> = served.keys().chain(current.keys()).cloned().collect();
    let mut changed = Vec::new();
    for path in paths {
        let now_served = served.get(&path).cloned().unwrap_or_else(ServedField::unset);
        let record = match current.remove(&path) {
            Some(record) if record.served == now_served => continue,
            Some(mut record) => {
                record.served = now_served;
                record.served_since = now;
                record.violation = is_violation(&record.served, record.reported.as_ref());
                record
            }
            None => FieldRecord {
                device_id: device,
                path,
                served: now_served,
                served_since: now,
                reported: None,
                violation: false,
            },
        };
        changed.push(record);
    }
    changed
}

/// A local override of a field the device is told is locked.
pub fn is_violation(served: &ServedField, reported: Option<&ReportedRecord>) -> bool {
    served.locked && reported.is_some_and(|r| r.state == ReportedKind::Overridden)
}
