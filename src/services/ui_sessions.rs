//! Sessions of the web UI, in the database so that any replica serves any browser.
//!
//! Signing in (the same password check and throttle as `POST /api/v1/auth/login`) stores a row
//! keyed by the SHA-256 of a random session id; the id itself exists only in the browser's
//! cookie. Each request reads that row by its primary key, joined to the operator and tenant, so
//! a deleted operator, a changed role or an ended session is seen at once on every replica. A
//! password or role change deletes the operator's rows (see `sessions::end_all`); signing out
//! deletes the session's row. A session ends after [`IDLE`] without a request, and at the latest
//! `refresh_token_ttl` after sign-in (like an API sign-in); the expiry job deletes what is left.

use crate::auth::token;
use crate::db::repo::ui_sessions::{self, NewUiSession, StoredUiSession};
use crate::domain::{Operator, OperatorId, Role, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use chrono::{DateTime, Duration, Utc};

/// A session unused this long ends.
pub const IDLE: Duration = Duration::hours(12);

/// `last_seen_at` is written at most this often per session, so most requests only read.
/// The idle timeout is counted from the last write, so it is this much less precise.
const TOUCH_EVERY: Duration = Duration::minutes(1);

/// The signed-in operator as the UI sees them, checked on this request.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub operator_id: OperatorId,
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub role: Role,
    pub platform_admin: bool,
    pub email: String,
    /// The synchronizer token every form of this session must send back.
    pub csrf: String,
}

/// Starts a session for an operator whose password was just checked; returns the session id
/// for the cookie (the only place it is kept).
pub async fn start(state: &AppState, operator: &Operator) -> Result<String, ApiError> {
    let id = token::generate("");
    let now = state.clock.now();
    let lifetime = Duration::from_std(state.config.refresh_token_ttl()).unwrap_or(IDLE);
    ui_sessions::insert(
        &state.db,
        NewUiSession {
            id_hash: &token::digest(&id),
            tenant: operator.tenant_id,
            operator: operator.id,
            role: operator.role,
            csrf_token: &token::generate(""),
            now,
            expires_at: now + lifetime,
        },
    )
    .await?;
    tracing::info!(operator_id = %operator.id, tenant_id = %operator.tenant_id, "signed in to the web UI");
    Ok(id)
}

/// The operator of session `id`; `None` when there is no such session or it has ended (then
/// its row is deleted).
pub async fn check(state: &AppState, id: &str) -> Result<Option<SignedIn>, ApiError> {
    let id_hash = token::digest(id);
    let Some(session) = ui_sessions::find(&state.db, &id_hash).await? else {
        return Ok(None);
    };
    let now = state.clock.now();
    if !is_live(&session, now) {
        ui_sessions::delete(&state.db, &id_hash).await?;
        return Ok(None);
    }
    if now - session.last_seen_at >= TOUCH_EVERY {
        ui_sessions::touch(&state.db, &id_hash, now).await?;
    }
    Ok(Some(SignedIn {
        operator_id: session.operator_id,
        tenant_id: session.tenant_id,
        tenant_name: session.tenant_name,
        role: session.role,
        platform_admin: session.platform_admin,
        email: session.email,
        csrf: session.csrf_token,
    }))
}

/// Unexpired, used recently, and the operator still has the role they signed in with.
fn is_live(session: &StoredUiSession, now: DateTime<Utc>) -> bool {
    now < session.expires_at && now - session.last_seen_at < IDLE && session.role == session.current_role
}

/// Signs out: the session's row is deleted, so no replica knows it any more.
pub async fn end(state: &AppState, id: &str) -> Result<(), ApiError> {
    ui_sessions::delete(&state.db, &token::digest(id)).await?;
    Ok(())
}

/// Deletes the sessions that have ended by `now` (for the expiry job).
pub async fn prune(state: &AppState, now: DateTime<Utc>) -> Result<u64, ApiError> {
    Ok(ui_sessions::delete_expired(&state.db, now, now - IDLE).await?)
}
