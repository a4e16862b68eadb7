//! Provisioning tenants (platform admins) and reading one's own tenant.

use super::operators::{NewOperatorInput, insert_valid};
use super::{Page, PageRequest, conflict_if_duplicate, written};
use crate::db::TransactionTrait;
use crate::db::repo::tenants;
use crate::domain::validation::Validator;
use crate::domain::{Expected, Operator, Role, Tenant, TenantId, TenantName};
use crate::error::ApiError;
use crate::state::AppState;
use sea_orm::ConnectionTrait;

/// A new tenant and its first admin, created together or not at all.
pub async fn create(
    state: &AppState,
    name: &str,
    admin: NewOperatorInput,
) -> Result<(Tenant, Operator), ApiError> {
    let mut v = Validator::new();
    let name = v.check(TenantName::parse("name", name));
    let admin = match admin.validate(Some("admin")) {
        Ok(valid) => Some(valid),
        Err(errors) => {
            errors.into_iter().for_each(|e| v.push(e));
            None
        }
    };
    v.finish().map_err(ApiError::validation)?;
    let (Some(name), Some(mut admin)) = (name, admin) else {
        unreachable!("the validator reported no error, so every field parsed")
    };
    admin.role = Role::Admin;

    let txn = state.db.begin().await?;
    let tenant = insert_tenant(&txn, &name).await?;
    let operator = insert_valid(&txn, tenant.id, admin, false).await?;
    txn.commit().await?;
    tracing::info!(new_tenant_id = %tenant.id, "tenant created");
    Ok((tenant, operator))
}

/// Inserts the tenant row; a taken name is a 409.
pub async fn insert_tenant(conn: &impl ConnectionTrait, name: &TenantName) -> Result<Tenant, ApiError> {
    tenants::insert(conn, TenantId::new(), name.as_str())
        .await
        .map_err(conflict_if_duplicate(name_taken(name)))
}

pub async fn list(state: &AppState, page: PageRequest) -> Result<Page<Tenant>, ApiError> {
    let rows = tenants::list_all(&state.db, page.cursor, page.fetch_limit()).await?;
    Ok(page.page(rows, |t| t.id.0))
}

pub async fn get(state: &AppState, id: TenantId) -> Result<Tenant, ApiError> {
    tenants::get(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))
}

pub async fn rename(
    state: &AppState,
    id: TenantId,
    expected: Expected,
    name: &str,
) -> Result<Tenant, ApiError> {
    let name = TenantName::parse("name", name).map_err(ApiError::field)?;
    let outcome = tenants::rename(&state.db, id, expected, name.as_str())
        .await
        .map_err(conflict_if_duplicate(name_taken(&name)))?;
    written(outcome, "tenant")
}

fn name_taken(name: &TenantName) -> String {
    format!("a tenant named {} already exists", name.as_str())
}
