//! Session epochs: access tokens stop working the moment an operator's sessions end.
//!
//! Access tokens are JWTs, valid until they expire. To end them early without a per-request
//! database read, every token carries the operator's *session epoch* at issue, and each replica
//! keeps the current epoch per operator in memory for [`CACHE_TTL`]. A change on this replica
//! (password, role, sign-out, deletion) bumps the epoch in the database and drops the cached
//! entry at once; another replica notices within [`CACHE_TTL`]. The cost: one indexed read per
//! active operator per `CACHE_TTL` per replica.

use crate::db::repo::{operators, ui_sessions};
use crate::domain::{OperatorId, TenantId};
use crate::error::ApiError;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a replica trusts its cached epoch: the longest a change made on another replica
/// takes to end a token.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// Entries kept at most; past that, expired entries are dropped (and all of them if needed),
/// so memory stays bounded whatever the number of operators.
const CAPACITY: usize = 10_000;

/// The cached current epoch per operator (`None`: the operator no longer exists).
#[derive(Default)]
pub struct SessionEpochs {
    entries: Mutex<HashMap<OperatorId, (Option<i32>, Instant)>>,
}

impl SessionEpochs {
    /// The operator's current epoch, from the cache or the database.
    pub async fn current(
        &self,
        db: &DatabaseConnection,
        tenant: TenantId,
        id: OperatorId,
    ) -> Result<Option<i32>, ApiError> {
        let now = Instant::now();
        if let Some((epoch, at)) = self.lock().get(&id).copied()
            && now.duration_since(at) < CACHE_TTL
        {
            return Ok(epoch);
        }
        let epoch = operators::session_epoch(db, tenant, id).await?;
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.retain(|_, (_, at)| now.duration_since(*at) < CACHE_TTL);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(id, (epoch, now));
        Ok(epoch)
    }

    /// Drops the cached epoch after a change, so this replica sees it at once.
    pub fn forget(&self, id: OperatorId) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OperatorId, (Option<i32>, Instant)>> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still a map.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Ends every access token of the operator, inside the caller's transaction (a sign-out: the
/// operator's web UI sessions go on). Call [`SessionEpochs::forget`] after the commit.
pub async fn end_access_tokens(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: OperatorId,
) -> Result<(), ApiError> {
    operators::bump_session_epoch(conn, tenant, id).await?;
    Ok(())
}

/// Ends every session of the operator, access tokens and web UI sessions, inside the caller's
/// transaction (a password or role change). Call [`SessionEpochs::forget`] after the commit.
pub async fn end_all(conn: &impl ConnectionTrait, tenant: TenantId, id: OperatorId) -> Result<(), ApiError> {
    end_access_tokens(conn, tenant, id).await?;
    ui_sessions::delete_for_operator(conn, tenant, id).await?;
    Ok(())
}
