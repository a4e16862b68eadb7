//! Managing a tenant's operators. Every function is scoped to the caller's tenant.

use super::{Page, PageRequest, conflict_if_duplicate, written};
use crate::auth::password;
use crate::db::TransactionTrait;
use crate::db::repo::{operators, refresh_tokens};
use crate::domain::tenant::parse_display_text;
use crate::domain::validation::Validator;
use crate::domain::{Email, Expected, NewPassword, Operator, OperatorId, Role, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use sea_orm::ConnectionTrait;

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
    pub fn validate(&self, prefix: Option<&str>) -> Result<ValidOperator, Vec<crate::domain::FieldError>> {
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

/// Stores a validated operator, hashing its password; a taken email is a 409.
pub async fn insert_valid(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    valid: ValidOperator,
    platform_admin: bool,
) -> Result<Operator, ApiError> {
    let hash = password::hash_blocking(valid.password.expose().to_owned()).await?;
    operators::insert(
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
    )
    .await
    .map_err(conflict_if_duplicate(format!(
        "an operator with email {} already exists",
        valid.email
    )))
}

/// Creates an operator. Only the command line creates platform admins; the API never does.
pub async fn create(
    state: &AppState,
    tenant: TenantId,
    input: NewOperatorInput,
    platform_admin: bool,
) -> Result<Operator, ApiError> {
    let valid = input.validate(None).map_err(ApiError::validation)?;
    let operator = insert_valid(&state.db, tenant, valid, platform_admin).await?;
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
    tenant: TenantId,
    id: OperatorId,
    expected: Expected,
    update: OperatorUpdate,
) -> Result<Operator, ApiError> {
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
        Some(password) => Some(password::hash_blocking(password.expose().to_owned()).await?),
        None => None,
    };

    let txn = state.db.begin().await?;
    let changes = operators::OperatorChanges {
        display_name: display_name.as_deref(),
        role: update.role,
        password_hash: password_hash.as_deref(),
    };
    let operator = written(
        operators::update(&txn, tenant, id, expected, changes).await?,
        "operator",
    )?;
    ensure_an_admin_remains(&txn, tenant).await?;
    // A new password or role must not ride on sessions issued before the change.
    if password_hash.is_some() || update.role.is_some() {
        refresh_tokens::revoke_operator(&txn, tenant, id).await?;
    }
    txn.commit().await?;
    tracing::info!(changed_operator_id = %id, "operator updated");
    Ok(operator)
}

pub async fn delete(
    state: &AppState,
    tenant: TenantId,
    id: OperatorId,
    expected: Expected,
) -> Result<(), ApiError> {
    let txn = state.db.begin().await?;
    written(operators::delete(&txn, tenant, id, expected).await?, "operator")?;
    ensure_an_admin_remains(&txn, tenant).await?;
    txn.commit().await?;
    tracing::info!(deleted_operator_id = %id, "operator deleted");
    Ok(())
}

/// Changes the caller's own password after checking the current one, and ends its other
/// sessions.
pub async fn change_own_password(
    state: &AppState,
    tenant: TenantId,
    id: OperatorId,
    current: &str,
    new: &str,
) -> Result<(), ApiError> {
    let new = NewPassword::parse("new_password", new).map_err(ApiError::field)?;
    let stored = operators::password_hash(&state.db, tenant, id).await?;
    let found = stored.is_some();
    if !password::verify_blocking(current.to_owned(), stored).await? || !found {
        return Err(ApiError::field(crate::domain::FieldError::new(
            "current_password",
            "wrong_password",
            "is not your current password",
        )));
    }
    let hash = password::hash_blocking(new.expose().to_owned()).await?;
    let txn = state.db.begin().await?;
    let changes = operators::OperatorChanges {
        password_hash: Some(&hash),
        ..Default::default()
    };
    written(
        operators::update(&txn, tenant, id, Expected::Any, changes).await?,
        "operator",
    )?;
    refresh_tokens::revoke_operator(&txn, tenant, id).await?;
    txn.commit().await?;
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
