//! Devices read by credential when the directory misses, many in one query, on a connection
//! of their own.
//!
//! A miss is the costly pull: a fleet larger than the directory, or any fleet after a restart,
//! misses on most pulls. Misses go through a [`Batcher`] with one turn: a miss is read at once
//! when no read is in flight, and the misses that arrive during a read go together in the next
//! (at most [`BATCH`]), so under load the queries grow instead of their number. A herd of
//! first pulls costs a third to a quarter of the CPU it did when each miss was read alone
//! (README, "Benchmark"); at a steady rate where misses seldom overlap, most batches hold one
//! credential.
//!
//! The reads run on a [`Dedicated`] connection: a pooled one would cost a second round trip
//! per read, the ping `sqlx` sends every connection it takes back. One connection is enough,
//! since one batch is read at a time.

use super::batch::{Batcher, Waiting};
use crate::db::Dedicated;
use crate::db::repo::devices;
use crate::domain::device::Device;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::AppState;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

/// At most this many credentials per query.
pub const BATCH: usize = 64;

/// The reads' connection as PostgreSQL names it (`application_name`).
pub const READER_NAME: &str = "gmp-device-reads";

/// Misses waiting for their read, and the connection they are read on.
#[derive(Debug)]
pub struct DeviceReads {
    queue: Batcher<String, Option<Device>>,
    conn: Arc<Dedicated>,
}

impl DeviceReads {
    /// Reads on a connection opened as `pool` opens its own, at the first miss.
    pub fn new(pool: DatabaseConnection) -> Self {
        Self {
            queue: Batcher::new(BATCH),
            conn: Arc::new(Dedicated::new(pool, READER_NAME)),
        }
    }
}

/// The device (active or not) whose credential has this SHA-256, read with the other misses
/// of the moment.
pub async fn by_credential(state: &AppState, digest: String) -> Result<Option<Device>, ApiError> {
    let reads = &state.device_reads;
    reads
        .queue
        .submit(digest, |batch| {
            read(reads.conn.clone(), state.metrics.clone(), batch)
        })
        .await
}

async fn read(conn: Arc<Dedicated>, metrics: Arc<Metrics>, batch: Vec<Waiting<String, Option<Device>>>) {
    metrics.device_read_query();
    let digests: Vec<&str> = batch.iter().map(|waiting| waiting.item.as_str()).collect();
    match devices::find_by_credentials(&*conn, &digests).await {
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
