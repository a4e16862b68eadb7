//! Managing a tenant's operators. Every function is scoped to the actor's tenant, and every
//! change is written to the change log in the same transaction.

use super::{Page, PageRequest, audit, sessions, written};
use crate::auth::password::HashPool;
use crate::auth::throttle;
use crate::db;
use crate::db::repo::{expect_version, operators, refresh_tokens};
use crate::domain::audit::{Actor, NewEntry};
use crate::domain::diff::{Change, ChangeKind};
use crate::domain::tenant::parse_display_text;
use crate::domain::validation::Validator;
use crate::domain::{Email, Expected, FieldError, NewPassword, Operator, OperatorId, Role, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde_json::Value;

/// A new operator as requested, before validation.
pub struct NewOperatorInput {
    pub email: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub password: String,
}

/// Validated fields of a new operator, ready to store.
pub struct ValidOperator {
    pub email: Email,
    pub display_name: String,
    pub password: NewPassword,
    pub role: Role,
}

impl NewOperatorInput {
    /// Checks every field, reporting all problems at once; `prefix` nests field names
    /// (`admin.email`) when the operator is part of a larger request.
    pub fn validate(&self, prefix: Option<&str>) -> Result<ValidOperator, Vec<FieldError>> {
        let name = |field: &str| prefix.map_or(field.to_owned(), |p| format!("{p}.{field}"));
        let mut v = Validator::new();
        let email = v.check(Email::parse(&name("email"), &self.email));
        let password = v.check(NewPassword::parse(&name("password"), &self.password));
        let display_name = match &self.display_name {
            Some(raw) => v.check(parse_display_text(&name("display_name"), raw, 100)),
            None => email
                .as_ref()
                .map(|e| e.as_str().split('@').next().unwrap_or_default().to_owned()),
        };
        v.finish()?;
        match (email, password, display_name) {
            (Some(email), Some(password), Some(display_name)) => Ok(ValidOperator {
                email,
                display_name,
                password,
                role: self.role,
            }),
            _ => unreachable!("the validator reported no error, so every field parsed"),
        }
    }
}

fn operator_entry(action: &'static str, id: OperatorId, changes: Vec<Change>) -> NewEntry {
    NewEntry {
        action,
        target_type: "operator",
        target_id: id.0,
        changes,
    }
}

/// Where an email is already used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmailTaken {
    InThisTenant,
    Elsewhere,
}

/// The field code of the one answer for an email another tenant uses (or one that cannot be
/// used for any other reason): it never says whether or where the email exists.
pub const EMAIL_UNAVAILABLE: &str = "email_unavailable";

fn email_error(taken: EmailTaken, email: &Email) -> ApiError {
    match taken {
        // The caller sees its own tenant's operators anyway: saying so reveals nothing.
        EmailTaken::InThisTenant => ApiError::conflict(format!(
            "an operator with email {email} already exists in this tenant"
        )),
        EmailTaken::Elsewhere => {
            let mut error =
                ApiError::conflict("this email address cannot be used for a new operator; choose another");
            error.errors = vec![FieldError::new(
                "email",
                EMAIL_UNAVAILABLE,
                "cannot be used for a new operator; choose another",
            )];
            error
        }
    }
}

/// Stores a validated operator (hashing its password) and records it in the change log. An
/// email of this tenant is a 409 saying so; an email of another tenant is a 409 that does not
/// say it exists (see [`EMAIL_UNAVAILABLE`]).
pub async fn insert_valid(
    conn: &impl ConnectionTrait,
    hashing: &HashPool,
    actor: &Actor,
    tenant: TenantId,
    valid: ValidOperator,
    platform_admin: bool,
    now: DateTime<Utc>,
) -> Result<Operator, ApiError> {
    // Checked before hashing, so a taken email costs no argon2 computation.
    if let Some((existing, _)) = operators::find_for_login(conn, valid.email.as_str()).await? {
        let taken = if existing.tenant_id == tenant {
            EmailTaken::InThisTenant
        } else {
            EmailTaken::Elsewhere
        };
        return Err(email_error(taken, &valid.email));
    }
    let hash = hashing.hash(valid.password.expose().to_owned()).await?;
    let operator = operators::insert(
        conn,
        tenant,
        operators::NewOperator {
            id: OperatorId::new(),
            email: valid.email.as_str(),
            display_name: &valid.display_name,
            password_hash: &hash,
            role: valid.role,
            platform_admin,
        },
        now,
    )
    .await
    .map_err(|error| {
        // Taken since the check above, by whoever: the answer that names no tenant.
        if crate::db::repo::is_unique_violation(&error) {
            email_error(EmailTaken::Elsewhere, &valid.email)
        } else {
            ApiError::from(error)
        }
    })?;
    let changes = vec![
        Change::of(
            "display_name",
            None,
            Some(Value::from(operator.display_name.as_str())),
        ),
        Change::of("email", None, Some(Value::from(operator.email.as_str()))),
        Change::secret("password", ChangeKind::Added),
        Change::of("platform_admin", None, Some(Value::Bool(platform_admin))),
        Change::of("role", None, Some(Value::from(operator.role.as_str()))),
    ];
    audit::record_at(
        conn,
        actor,
        tenant,
        operator_entry("operator.created", operator.id, changes),
        now,
    )
    .await?;
    Ok(operator)
}

/// Creates an operator in the actor's tenant. Only the command line creates platform admins;
/// the API never does.
///
/// Emails are unique platform-wide (sign-in is by email alone), so an email another tenant
/// uses must be refused, and the refusal itself tells that the email is taken somewhere. To
/// keep that from becoming a directory of other MSPs' operators, the refusal names no tenant,
/// and each one counts against the tenant: after a few, every operator creation of the tenant
/// (whatever the email) waits, with `429`, so probing is slow and shows in the log.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    input: NewOperatorInput,
    platform_admin: bool,
) -> Result<Operator, ApiError> {
    let valid = input.validate(None).map_err(ApiError::validation)?;
    // Each creation counts as a probe until it turns out not to be one, so a burst of parallel
    // creations cannot all get their answer before the first refusal is counted.
    let probe_key = format!("email probes of tenant {}", actor.tenant_id);
    state
        .email_probes
        .begin(&probe_key)
        .map_err(|wait| throttle::rate_limited("too many operator emails were refused", wait))?;
    let created = async {
        let txn = db::begin_write(&state.db).await?;
        let operator = insert_valid(
            &txn,
            &state.hashing,
            actor,
            actor.tenant_id,
            valid,
            platform_admin,
            state.clock.now(),
        )
        .await?;
        txn.commit().await?;
        Ok::<_, ApiError>(operator)
    }
    .await;
    if let Err(error) = &created
        && error.errors.iter().any(|e| e.code == EMAIL_UNAVAILABLE)
    {
        tracing::warn!(tenant_id = %actor.tenant_id, "operator creation refused: the email is unavailable");
    } else {
        state.email_probes.forgive(&probe_key);
    }
    let operator = created?;
    tracing::info!(new_operator_id = %operator.id, role = %operator.role, "operator created");
    Ok(operator)
}

pub async fn list(state: &AppState, tenant: TenantId, page: PageRequest) -> Result<Page<Operator>, ApiError> {
    let rows = operators::list(&state.db, tenant, page.cursor.map(OperatorId), page.fetch_limit()).await?;
    Ok(page.page(rows, |o| o.id.0))
}

pub async fn get(state: &AppState, tenant: TenantId, id: OperatorId) -> Result<Operator, ApiError> {
    operators::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("operator"))
}

/// Requested changes to an operator; `None` keeps the current value.
#[derive(Default)]
pub struct OperatorUpdate {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub password: Option<String>,
}

pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: OperatorId,
    expected: Expected,
    update: OperatorUpdate,
) -> Result<Operator, ApiError> {
    let tenant = actor.tenant_id;
    let mut v = Validator::new();
    let display_name = update
        .display_name
        .as_deref()
        .and_then(|raw| v.check(parse_display_text("display_name", raw, 100)));
    let new_password = update
        .password
        .as_deref()
        .and_then(|raw| v.check(NewPassword::parse("password", raw)));
    v.finish().map_err(ApiError::validation)?;
    let password_hash = match new_password {
        Some(password) => Some(state.hashing.hash(password.expose().to_owned()).await?),
        None => None,
    };

    let txn = db::begin_write(&state.db).await?;
    let found = operators::get_for_update(&txn, tenant, id).await?;
    let before = written(expect_version(found, |o| o.version, expected), "operator")?;
    ensure_may_change(actor, &before)?;
    let changes = operators::OperatorChanges {
        display_name: display_name.as_deref(),
        role: update.role,
        password_hash: password_hash.as_deref(),
    };
    let after = written(
        operators::update(&txn, tenant, id, expected, changes, state.clock.now()).await?,
        "operator",
    )?;
    ensure_an_admin_remains(&txn, tenant).await?;
    // A new password or role must not ride on sessions issued before the change.
    let end_sessions = password_hash.is_some() || update.role.is_some();
    if end_sessions {
        refresh_tokens::revoke_operator(&txn, tenant, id, state.clock.now()).await?;
        sessions::end_all(&txn, tenant, id).await?;
    }
    let mut log = Vec::new();
    if before.display_name != after.display_name {
        log.push(Change::of(
            "display_name",
            Some(before.display_name.as_str().into()),
            Some(after.display_name.as_str().into()),
        ));
    }
    if password_hash.is_some() {
        log.push(Change::secret("password", ChangeKind::Changed));
    }
    if before.role != after.role {
        log.push(Change::of(
            "role",
            Some(before.role.as_str().into()),
            Some(after.role.as_str().into()),
        ));
    }
    audit::record_at(
        &txn,
        actor,
        tenant,
        operator_entry("operator.updated", id, log),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    if end_sessions {
        state.sessions.forget(id);
    }
    tracing::info!(changed_operator_id = %id, "operator updated");
    Ok(after)
}

pub async fn delete(
    state: &AppState,
    actor: &Actor,
    id: OperatorId,
    expected: Expected,
) -> Result<(), ApiError> {
    let tenant = actor.tenant_id;
    let txn = db::begin_write(&state.db).await?;
    let found = operators::get_for_update(&txn, tenant, id).await?;
    let before = written(expect_version(found, |o| o.version, expected), "operator")?;
    ensure_may_change(actor, &before)?;
    written(operators::delete(&txn, tenant, id, expected).await?, "operator")?;
    ensure_an_admin_remains(&txn, tenant).await?;
    let changes = vec![
        Change::of("email", Some(before.email.as_str().into()), None),
        Change::of("role", Some(before.role.as_str().into()), None),
    ];
    audit::record_at(
        &txn,
        actor,
        tenant,
        operator_entry("operator.deleted", id, changes),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    state.sessions.forget(id);
    tracing::info!(deleted_operator_id = %id, "operator deleted");
    Ok(())
}

/// Changes the actor's own password after checking the current one, and ends its sessions.
pub async fn change_own_password(
    state: &AppState,
    actor: &Actor,
    current: &str,
    new: &str,
) -> Result<(), ApiError> {
    let (tenant, id) = match actor.operator_id {
        Some(id) => (actor.tenant_id, id),
        None => return Err(ApiError::forbidden("only an operator has a password")),
    };
    let new = NewPassword::parse("new_password", new).map_err(ApiError::field)?;
    // A stolen access token must not become a way to guess the password: the same per-account
    // throttle as sign-in, under the operator's id.
    let attempt = state
        .password_throttle
        .begin(&format!("operator {id}"), None)
        .map_err(|wait| throttle::rate_limited("too many wrong current passwords", wait))?;
    let stored = operators::password_hash(&state.db, tenant, id).await?;
    let found = stored.is_some();
    if !state.hashing.verify(current.to_owned(), stored).await? || !found {
        return Err(ApiError::field(FieldError::new(
            "current_password",
            "wrong_password",
            "is not your current password",
        )));
    }
    attempt.succeeded();
    let hash = state.hashing.hash(new.expose().to_owned()).await?;
    let txn = db::begin_write(&state.db).await?;
    let changes = operators::OperatorChanges {
        password_hash: Some(&hash),
        ..Default::default()
    };
    written(
        operators::update(&txn, tenant, id, Expected::Any, changes, state.clock.now()).await?,
        "operator",
    )?;
    refresh_tokens::revoke_operator(&txn, tenant, id, state.clock.now()).await?;
    sessions::end_all(&txn, tenant, id).await?;
    let log = vec![Change::secret("password", ChangeKind::Changed)];
    audit::record_at(
        &txn,
        actor,
        tenant,
        operator_entry("operator.password_changed", id, log),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    state.sessions.forget(id);
    Ok(())
}

/// Platform admins run the whole server: a tenant admin of the platform's own tenant must not be
/// able to reset their password, demote or delete them. Only a platform admin may.
fn ensure_may_change(actor: &Actor, target: &Operator) -> Result<(), ApiError> {
    if target.platform_admin && !actor.platform_admin {
        return Err(ApiError::forbidden(
            "only a platform admin may change or delete a platform admin",
        ));
    }
    Ok(())
}

/// A tenant without an admin could never manage its operators again.
async fn ensure_an_admin_remains(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<(), ApiError> {
    if operators::count_admins(conn, tenant).await? == 0 {
        return Err(ApiError::conflict(
            "this would leave the tenant without an admin; make another operator admin first",
        ));
    }
    Ok(())
}
