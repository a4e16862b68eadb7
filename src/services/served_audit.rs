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
use std::sync::{Arc, Mutex};

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
#[derive(Debug)]
pub struct ServedQueue {
    pending: Mutex<HashMap<DeviceId, Served>>,
    /// Held through a flush, so that a flush returns only once what was queued before it is
    /// written, even when another flush (the timer's, a full queue's) drained it first.
    flushing: tokio::sync::Mutex<()>,
    capacity: usize,
}

impl ServedQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
            capacity: capacity.max(1),
        }
    }

    /// The key queued for a device (so a second pull before the flush queues nothing).
    pub fn queued_key(&self, device: DeviceId) -> Option<String> {
        self.lock().get(&device).map(|s| s.key.clone())
    }

    /// How many entries wait.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues an entry; true when the queue is full and should be written now.
    fn push(&self, device: DeviceId, served: Served) -> bool {
        let mut pending = self.lock();
        pending.insert(device, served);
        pending.len() >= self.capacity
    }

    /// Everything queued, in device order (neighbouring rows, as for the check-ins).
    fn drain(&self) -> Vec<(DeviceId, Served)> {
        let mut drained: Vec<_> = self.lock().drain().collect();
        drained.sort_unstable_by_key(|(device, _)| *device);
        drained
    }

    fn restore(&self, unwritten: Vec<(DeviceId, Served)>) {
        let mut pending = self.lock();
        for (device, served) in unwritten {
            pending.entry(device).or_insert(served);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, Served>> {
        // A poisoned lock only means a thread panicked mid-insert; the map is still a map.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
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
    let _turn = state.served.flushing.lock().await;
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
        for (device, served) in entries {
            devices::record_served(conn, tenant, *device, &served.hash, &served.key).await?;
        }
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
