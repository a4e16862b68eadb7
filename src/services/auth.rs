//! Sign-in, refresh-token rotation with reuse detection, sign-out.

use crate::auth::{throttle, token};
use crate::db;
use crate::db::repo::{operators, refresh_tokens};
use crate::domain::redact::REDACTED;
use crate::domain::{Email, Operator};
use crate::error::{ApiError, Code};
use crate::services::sessions;
use crate::state::AppState;
use std::net::IpAddr;
use uuid::Uuid;

const REFRESH_TOKEN_PREFIX: &str = "gmp_rt_";

/// An access token and the refresh token that renews it.
pub struct TokenPair {
    pub access_token: String,
    pub access_expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub operator: Operator,
}

// Both tokens are bearer secrets: `Debug` shows neither.
impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &REDACTED)
            .field("access_expires_in", &self.access_expires_in)
            .field("refresh_token", &REDACTED)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("operator", &self.operator.id)
            .finish()
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::new(Code::InvalidCredentials, "the email or password is wrong")
}

fn invalid_refresh(detail: &str) -> ApiError {
    ApiError::new(Code::InvalidRefreshToken, detail.to_owned())
}

/// Signs in with an email and password (see [`authenticate`]) and issues a token pair.
pub async fn login(
    state: &AppState,
    email: &str,
    password: &str,
    address: Option<IpAddr>,
) -> Result<TokenPair, ApiError> {
    let operator = authenticate(state, email, password, address).await?;
    let pair = issue_pair(state, &state.db, operator, Uuid::now_v7()).await?;
    tracing::info!(operator_id = %pair.operator.id, tenant_id = %pair.operator.tenant_id, "signed in");
    Ok(pair)
}

/// Checks an email and password, throttled per account and per client `address`: after a
/// few failures further tries wait (`429` with `Retry-After`), whether the password is right
/// or not, so the answer never confirms a guess made while waiting.
pub async fn authenticate(
    state: &AppState,
    email: &str,
    password: &str,
    address: Option<IpAddr>,
) -> Result<Operator, ApiError> {
    // The same normalisation as `Email::parse`, also for emails that do not parse, so unknown
    // and malformed emails are throttled exactly like real ones.
    let account = email.trim().to_lowercase();
    let attempt = state.password_throttle.begin(&account, address).map_err(|wait| {
        tracing::info!("sign-in throttled");
        throttle::rate_limited("too many failed sign-ins", wait)
    })?;
    // An unparseable email cannot belong to anyone; answer exactly like a wrong password.
    let found = match Email::parse("email", email) {
        Ok(email) => operators::find_for_login(&state.db, email.as_str()).await?,
        Err(_) => None,
    };
    let (operator, hash) = match found {
        Some((operator, hash)) => (Some(operator), Some(hash)),
        None => (None, None),
    };
    let matches = state.hashing.verify(password.to_owned(), hash).await?;
    let operator = match operator {
        Some(operator) if matches => operator,
        _ => {
            tracing::info!("failed sign-in");
            return Err(invalid_credentials());
        }
    };
    attempt.succeeded();
    Ok(operator)
}

/// Exchanges a refresh token for a new pair. Each refresh token works once: presenting a used
/// one means it was stolen (or replayed), so the whole family — every token descended from the
/// same sign-in — is revoked and the legitimate holder must sign in again.
pub async fn refresh(state: &AppState, presented: &str) -> Result<TokenPair, ApiError> {
    let stored = refresh_tokens::find_by_hash(&state.db, &token::digest(presented))
        .await?
        .ok_or_else(|| invalid_refresh("the refresh token is not valid; sign in again"))?;
    if stored.revoked {
        return Err(invalid_refresh("the refresh token was revoked; sign in again"));
    }
    if stored.used {
        return Err(reuse_detected(state, &stored).await);
    }
    if stored.expires_at <= state.clock.now() {
        return Err(invalid_refresh("the refresh token expired; sign in again"));
    }

    let txn = db::begin_write(&state.db).await?;
    if !refresh_tokens::mark_used(&txn, stored.id, state.clock.now()).await? {
        txn.rollback().await?;
        return Err(reuse_detected(state, &stored).await);
    }
    let operator = operators::get(&txn, stored.tenant_id, stored.operator_id)
        .await?
        .ok_or_else(|| invalid_refresh("the operator no longer exists"))?;
    let pair = issue_pair(state, &txn, operator, stored.family_id).await?;
    txn.commit().await?;
    Ok(pair)
}

async fn reuse_detected(state: &AppState, stored: &refresh_tokens::StoredRefreshToken) -> ApiError {
    let revoked = end_session(state, stored).await;
    match revoked {
        Ok(revoked) => {
            tracing::warn!(
                operator_id = %stored.operator_id,
                tenant_id = %stored.tenant_id,
                revoked,
                "refresh token reused; revoked its whole family"
            );
            invalid_refresh(
                "the refresh token was already used; every session of that sign-in was ended, sign in again",
            )
        }
        Err(error) => error,
    }
}

/// Ends the sign-in session the refresh token belongs to. Unknown tokens are ignored, so the
/// answer never tells whether a token existed.
pub async fn logout(state: &AppState, presented: &str) -> Result<(), ApiError> {
    if let Some(stored) = refresh_tokens::find_by_hash(&state.db, &token::digest(presented)).await? {
        end_session(state, &stored).await?;
        tracing::info!(operator_id = %stored.operator_id, "signed out");
    }
    Ok(())
}

/// Revokes the sign-in's refresh-token family and ends the operator's access tokens at once.
/// Access tokens of the operator's other sign-ins end too; their clients refresh them (their
/// refresh tokens still work). Web UI sessions go on. Returns how many refresh tokens were
/// revoked.
async fn end_session(state: &AppState, stored: &refresh_tokens::StoredRefreshToken) -> Result<u64, ApiError> {
    let txn = db::begin_write(&state.db).await?;
    let revoked =
        refresh_tokens::revoke_family(&txn, stored.tenant_id, stored.family_id, state.clock.now()).await?;
    sessions::end_access_tokens(&txn, stored.tenant_id, stored.operator_id).await?;
    txn.commit().await?;
    state.sessions.forget(stored.operator_id);
    Ok(revoked)
}

async fn issue_pair(
    state: &AppState,
    conn: &impl sea_orm::ConnectionTrait,
    operator: Operator,
    family_id: Uuid,
) -> Result<TokenPair, ApiError> {
    let access_token = state
        .jwt
        .issue(
            operator.id,
            operator.tenant_id,
            operator.role,
            operator.platform_admin,
            operator.session_epoch,
        )
        .map_err(ApiError::internal)?;
    let refresh_token = token::generate(REFRESH_TOKEN_PREFIX);
    let refresh_ttl = state.config.refresh_token_ttl();
    let now = state.clock.now();
    refresh_tokens::insert(
        conn,
        operator.tenant_id,
        operator.id,
        family_id,
        &token::digest(&refresh_token),
        now + refresh_ttl,
        now,
    )
    .await?;
    Ok(TokenPair {
        access_token,
        access_expires_in: state.jwt.ttl().as_secs(),
        refresh_token,
        refresh_expires_in: refresh_ttl.as_secs(),
        operator,
    })
}
