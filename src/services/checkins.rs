//! Device check-ins (`last_seen_at`, `last_pull_at`, `next_pull_after`), buffered in memory and
//! written in batches, so a pull does not write to the database just to say a device was seen.
//!
//! A crash loses at most the check-ins of the last flush interval — never a report, a policy
//! or an audit entry, which are written in their own transactions on the request path. (A
//! crash of PostgreSQL can also lose its last 600 ms of batches: see `db::begin_batch_write`.)

use super::device_queue::DeviceQueue;
use crate::db;
use crate::db::repo::device_checkins;
use crate::domain::{DeviceId, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

/// A device's check-in, waiting for its batch.
#[derive(Debug, Clone, Copy)]
pub struct Checkin {
    tenant: TenantId,
    seen_at: DateTime<Utc>,
    next_pull_after: DateTime<Utc>,
}

/// Check-ins not yet written, at most one per device (the latest).
pub type CheckinBuffer = DeviceQueue<Checkin>;

impl CheckinBuffer {
    /// A device's check-in this replica has not written yet: when it pulled, and when it
    /// should pull next.
    pub fn pending(&self, device: DeviceId) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.get(device, |c| (c.seen_at, c.next_pull_after))
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
    let _turn = state.checkins.turn().await;
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
