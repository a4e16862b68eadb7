//! Enrollment tokens: created by operators, shown once, used by devices to register.

use super::{Page, PageRequest, audit};
use crate::auth::token;
use crate::db;
use crate::db::repo::{enrollment_tokens, policies};
use crate::domain::audit::{Actor, NewEntry};
use crate::domain::device::EnrollmentToken;
use crate::domain::diff::{Change, ChangeKind};
use crate::domain::tenant::parse_display_text;
use crate::domain::validation::Validator;
use crate::domain::{EnrollmentTokenId, FieldError, PolicyId, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use chrono::Duration;
use serde_json::Value;

pub const TOKEN_PREFIX: &str = "gmp_et_";
const DEFAULT_LIFETIME: Duration = Duration::days(7);
const MIN_LIFETIME: Duration = Duration::minutes(1);
const MAX_LIFETIME: Duration = Duration::days(90);
const MAX_USES: u32 = 100_000;

/// A token as requested.
#[derive(Debug, Default)]
pub struct NewToken {
    pub label: Option<String>,
    pub expires_in_seconds: Option<i64>,
    pub max_uses: Option<u32>,
    pub policy_id: Option<PolicyId>,
}

fn entry(action: &'static str, id: EnrollmentTokenId, changes: Vec<Change>) -> NewEntry {
    NewEntry {
        action,
        target_type: "enrollment_token",
        target_id: id.0,
        changes,
    }
}

/// Creates a token; the returned string is the only time it is ever shown.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    input: NewToken,
) -> Result<(EnrollmentToken, String), ApiError> {
    let tenant = actor.tenant_id;
    let mut v = Validator::new();
    let label = match input.label.as_deref() {
        Some(raw) => v.check(parse_display_text("label", raw, 100)),
        None => Some("enrollment token".to_owned()),
    };
    // Checked as a number before it becomes a duration: chrono panics on out-of-range seconds.
    let lifetime = match input.expires_in_seconds {
        None => DEFAULT_LIFETIME,
        Some(seconds) if (MIN_LIFETIME.num_seconds()..=MAX_LIFETIME.num_seconds()).contains(&seconds) => {
            Duration::seconds(seconds)
        }
        Some(_) => {
            v.push(FieldError::new(
                "expires_in_seconds",
                "out_of_range",
                "must be between 60 seconds and 90 days",
            ));
            DEFAULT_LIFETIME
        }
    };
    let max_uses = input.max_uses.unwrap_or(1);
    if !(1..=MAX_USES).contains(&max_uses) {
        v.push(FieldError::new(
            "max_uses",
            "out_of_range",
            format!("must be between 1 and {MAX_USES}"),
        ));
    }
    if let Some(policy) = input.policy_id
        && policies::get_summary(&state.db, tenant, policy).await?.is_none()
    {
        v.push(FieldError::new("policy_id", "unknown_policy", "no such policy"));
    }
    v.finish().map_err(ApiError::validation)?;

    let secret = token::generate(TOKEN_PREFIX);
    let now = state.clock.now();
    let created = EnrollmentToken {
        id: EnrollmentTokenId::new(),
        tenant_id: tenant,
        label: label.unwrap_or_default(),
        policy_id: input.policy_id,
        expires_at: now + lifetime,
        max_uses: max_uses as i32,
        uses: 0,
        revoked_at: None,
        created_by: actor.operator_id,
        created_at: now,
    };
    let txn = db::begin_write(&state.db).await?;
    enrollment_tokens::insert(&txn, &created, &token::digest(&secret)).await?;
    let changes = vec![
        Change::of(
            "expires_at",
            None,
            Some(Value::from(created.expires_at.to_rfc3339())),
        ),
        Change::of("label", None, Some(Value::from(created.label.as_str()))),
        Change::of("max_uses", None, Some(Value::from(created.max_uses))),
        Change::of(
            "policy_id",
            None,
            created.policy_id.map(|p| Value::from(p.to_string())),
        ),
        Change::secret("token", ChangeKind::Added),
    ];
    audit::record_at(
        &txn,
        actor,
        tenant,
        entry("enrollment_token.created", created.id, changes),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    Ok((created, secret))
}

pub async fn list(
    state: &AppState,
    tenant: TenantId,
    page: PageRequest,
) -> Result<Page<EnrollmentToken>, ApiError> {
    let rows = enrollment_tokens::list(&state.db, tenant, page.cursor, page.fetch_limit()).await?;
    Ok(page.page(rows, |t| t.id.0))
}

pub async fn get(
    state: &AppState,
    tenant: TenantId,
    id: EnrollmentTokenId,
) -> Result<EnrollmentToken, ApiError> {
    enrollment_tokens::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("enrollment token"))
}

/// Revokes a token; revoking it again changes nothing.
pub async fn revoke(state: &AppState, actor: &Actor, id: EnrollmentTokenId) -> Result<(), ApiError> {
    let tenant = actor.tenant_id;
    get(state, tenant, id).await?;
    let txn = db::begin_write(&state.db).await?;
    if enrollment_tokens::revoke(&txn, tenant, id, state.clock.now()).await? {
        let changes = vec![Change::of(
            "revoked",
            Some(Value::Bool(false)),
            Some(Value::Bool(true)),
        )];
        audit::record_at(
            &txn,
            actor,
            tenant,
            entry("enrollment_token.revoked", id, changes),
            state.clock.now(),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(())
}
