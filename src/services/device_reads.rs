//! Devices read by credential when the directory misses, many in one query.
//!
//! A miss is the costly pull: a fleet larger than the directory, or any fleet after a restart,
//! misses on most pulls. Read alone, each miss costs a round trip for the query and another
//! for the pool's ping when the connection goes back (sqlx pings every connection it takes
//! back), plus the thread wake-ups around both. Misses go through a [`Batcher`] with one turn:
//! a miss is read at once when no read is in flight, and the misses that arrive during a read
//! go together in the next (at most [`BATCH`]), so under load the queries grow instead of
//! their number. A herd of first pulls costs a third to a quarter of the CPU it did when each
//! miss was read alone (README, "Benchmark"); at a steady rate where misses seldom overlap,
//! most batches hold one credential and cost what a lone read did.

use super::batch::{Batcher, Waiting};
use crate::db::repo::devices;
use crate::domain::device::Device;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::AppState;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

/// At most this many credentials per query.
pub const BATCH: usize = 64;

/// Misses waiting for their read.
pub type DeviceReads = Batcher<String, Option<Device>>;

/// The device (active or not) whose credential has this SHA-256, read with the other misses
/// of the moment.
pub async fn by_credential(state: &AppState, digest: String) -> Result<Option<Device>, ApiError> {
    state
        .device_reads
        .submit(digest, |batch| {
            read(state.db.clone(), state.metrics.clone(), batch)
        })
        .await
}

async fn read(db: DatabaseConnection, metrics: Arc<Metrics>, batch: Vec<Waiting<String, Option<Device>>>) {
    metrics.device_read_query();
    let digests: Vec<&str> = batch.iter().map(|waiting| waiting.item.as_str()).collect();
    match devices::find_by_credentials(&db, &digests).await {
        Ok(found) => {
            for waiting in batch {
                // `get`, not `remove`: the same device may pull twice in one batch.
                let device = found.get(&waiting.item).cloned();
                waiting.answer(Ok(device));
            }
        }
        Err(error) => {
            let error = ApiError::from(error);
            for waiting in batch {
                waiting.answer(Err(error.again()));
            }
        }
    }
}
