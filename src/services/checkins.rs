//! Device check-ins (`last_seen_at`, `last_pull_at`, `next_pull_after`), buffered in memory and
//! written in batches, so a pull does not write to the database just to say a device was seen.
//!
//! A crash loses at most the check-ins of the last flush interval — never a report, a policy
//! or an audit entry, which are written in their own transactions on the request path. (A
//! crash of PostgreSQL can also lose its last 600 ms of batches: see `db::begin_batch_write`.)

use crate::db;
use crate::db::repo::device_checkins;
use crate::domain::{DeviceId, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy)]
struct Checkin {
    tenant: TenantId,
    seen_at: DateTime<Utc>,
    next_pull_after: DateTime<Utc>,
}

/// Check-ins not yet written, at most one per device (the latest).
#[derive(Debug)]
pub struct CheckinBuffer {
    pending: Mutex<HashMap<DeviceId, Checkin>>,
    /// Held through a flush, so that a flush returns only once what was queued before it is
    /// written, even when another flush (the timer's, a full queue's) drained it first.
    flushing: tokio::sync::Mutex<()>,
    capacity: usize,
}

impl CheckinBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
            capacity: capacity.max(1),
        }
    }

    /// A device's check-in this replica has not written yet: when it pulled, and when it
    /// should pull next.
    pub fn pending(&self, device: DeviceId) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.pending
            .lock()
            .expect("check-in buffer")
            .get(&device)
            .map(|c| (c.seen_at, c.next_pull_after))
    }

    /// Buffers a check-in; true when the buffer is full and should be flushed now.
    fn push(&self, device: DeviceId, checkin: Checkin) -> bool {
        let mut pending = self.pending.lock().expect("check-in buffer");
        pending.insert(device, checkin);
        pending.len() >= self.capacity
    }

    /// Everything pending, in device order: device ids grow with registration time, as the
    /// rows do, so a batch of neighbours dirties fewer pages and index leaves than a random one.
    fn drain(&self) -> Vec<(DeviceId, Checkin)> {
        let mut drained: Vec<_> = self.pending.lock().expect("check-in buffer").drain().collect();
        drained.sort_unstable_by_key(|(device, _)| *device);
        drained
    }

    fn restore(&self, unwritten: Vec<(DeviceId, Checkin)>) {
        let mut pending = self.pending.lock().expect("check-in buffer");
        for (device, checkin) in unwritten {
            pending.entry(device).or_insert(checkin);
        }
    }
}

/// Records that `device` pulled at `seen_at`: buffered, or written at once when batching is
/// off (`checkin_flush_interval_ms = 0`).
pub async fn record(
    state: &AppState,
    tenant: TenantId,
    device: DeviceId,
    seen_at: DateTime<Utc>,
    next_pull_after: DateTime<Utc>,
) -> Result<(), ApiError> {
    // The writes are boxed: this runs in every pull, whose future is allocated and moved on
    // every request, and their state inline would make every pull pay for them.
    if state.config.checkin_flush_interval_ms == 0 {
        Box::pin(device_checkins::record_checkins(
            &state.db,
            &[(tenant, device, seen_at, next_pull_after)],
        ))
        .await?;
        return Ok(());
    }
    let checkin = Checkin {
        tenant,
        seen_at,
        next_pull_after,
    };
    if state.checkins.push(device, checkin) {
        Box::pin(flush(state)).await?;
    }
    Ok(())
}

/// Writes every buffered check-in in one transaction; returns how many. On failure they go
/// back into the buffer for the next flush.
pub async fn flush(state: &AppState) -> Result<usize, ApiError> {
    flush_through(state, &state.db).await
}

/// [`flush`] through a given connection (at shutdown, the pool's connections may belong to
/// worker runtimes that are already gone).
pub async fn flush_through(state: &AppState, conn: &DatabaseConnection) -> Result<usize, ApiError> {
    let _turn = state.checkins.flushing.lock().await;
    let mut batch = state.checkins.drain();
    let mut written = 0;
    // Short transactions: the database's one writer turn is never held for long.
    while !batch.is_empty() {
        let chunk: Vec<_> = batch.drain(..batch.len().min(db::WRITE_CHUNK)).collect();
        let stored = async {
            let txn = db::begin_batch_write(conn).await?;
            let rows: Vec<_> = chunk
                .iter()
                .map(|(device, c)| (c.tenant, *device, c.seen_at, c.next_pull_after))
                .collect();
            device_checkins::record_checkins(&txn, &rows).await?;
            txn.commit().await
        }
        .await;
        if let Err(error) = stored {
            state.checkins.restore(chunk.into_iter().chain(batch).collect());
            return Err(ApiError::from(error));
        }
        state.metrics.checkins_flushed(chunk.len() as u64);
        written += chunk.len();
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_writes_the_pending_check_ins_in_device_order() {
        let buffer = CheckinBuffer::new(100);
        let ids: Vec<DeviceId> = (0..20).map(|_| DeviceId::new()).collect();
        let now = Utc::now();
        let checkin = Checkin {
            tenant: TenantId::new(),
            seen_at: now,
            next_pull_after: now,
        };
        for id in ids.iter().rev() {
            buffer.push(*id, checkin);
        }
        let drained: Vec<DeviceId> = buffer.drain().into_iter().map(|(id, _)| id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(drained, sorted);
        assert!(buffer.drain().is_empty());
    }
}
