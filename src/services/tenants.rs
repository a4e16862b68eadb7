//! Provisioning tenants (platform admins) and reading one's own tenant.

use super::operators::{NewOperatorInput, insert_valid};
use super::{Page, PageRequest, audit, conflict_if_duplicate, policies, written};
use crate::db;
use crate::db::changes::Announce;
use crate::db::repo::{expect_version, tenants};
use crate::domain::audit::{Actor, NewEntry};
use crate::domain::diff::Change;
use crate::domain::validation::Validator;
use crate::domain::{Expected, FieldError, Operator, Role, Tenant, TenantId, TenantName};
use crate::error::{ApiError, Code};
use crate::state::AppState;
use chrono::{DateTime, Utc};

/// A new tenant, its root policy and its first admin, created together or not at all.
pub async fn create(
    state: &AppState,
    actor: &Actor,
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

    let txn = db::begin_write(&state.db).await?;
    let now = state.clock.now();
    let tenant = insert_tenant(&txn, actor, &name, now).await?;
    let operator = insert_valid(&txn, &state.hashing, actor, tenant.id, admin, false, now)
        .await
        .map_err(|mut error| {
            // The admin is part of this request: name its fields as the request does.
            for field in &mut error.errors {
                field.field = format!("admin.{}", field.field);
            }
            error
        })?;
    txn.commit().await?;
    tracing::info!(new_tenant_id = %tenant.id, "tenant created");
    Ok((tenant, operator))
}

fn tenant_entry(action: &'static str, tenant: &Tenant, changes: Vec<Change>) -> NewEntry {
    NewEntry {
        action,
        target_type: "tenant",
        target_id: tenant.id.0,
        changes,
    }
}

/// Inserts the tenant row with its root policy and records both; a taken name is a 409.
pub async fn insert_tenant(
    conn: &impl Announce,
    actor: &Actor,
    name: &TenantName,
    now: DateTime<Utc>,
) -> Result<Tenant, ApiError> {
    let tenant = tenants::insert(conn, TenantId::new(), name.as_str(), now)
        .await
        .map_err(conflict_if_duplicate(name_taken(name)))?;
    let changes = vec![Change::of("name", None, Some(name.as_str().into()))];
    audit::record_at(
        conn,
        actor,
        tenant.id,
        tenant_entry("tenant.created", &tenant, changes),
        now,
    )
    .await?;
    policies::create_root(conn, actor, tenant.id, now).await?;
    Ok(tenant)
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

/// A tenant named by its id or by its name (the command line takes either).
pub async fn find(state: &AppState, id_or_name: &str) -> Result<Tenant, ApiError> {
    let found = match id_or_name.trim().parse::<uuid::Uuid>() {
        Ok(id) => tenants::get(&state.db, TenantId(id)).await?,
        Err(_) => tenants::find_by_name(&state.db, id_or_name.trim()).await?,
    };
    found.ok_or_else(|| {
        ApiError::new(
            Code::NotFound,
            format!("no tenant with the id or name “{}”", id_or_name.trim()),
        )
    })
}

pub async fn rename(
    state: &AppState,
    actor: &Actor,
    id: TenantId,
    expected: Expected,
    name: &str,
) -> Result<Tenant, ApiError> {
    let name = TenantName::parse("name", name).map_err(ApiError::field)?;
    let txn = db::begin_write(&state.db).await?;
    let found = tenants::get_for_update(&txn, id).await?;
    let before = written(expect_version(found, |t| t.version, expected), "tenant")?;
    let outcome = tenants::rename(&txn, id, expected, name.as_str(), state.clock.now())
        .await
        .map_err(conflict_if_duplicate(name_taken(&name)))?;
    let tenant = written(outcome, "tenant")?;
    let changes = vec![Change::of(
        "name",
        Some(before.name.as_str().into()),
        Some(tenant.name.as_str().into()),
    )];
    audit::record_at(
        &txn,
        actor,
        id,
        tenant_entry("tenant.renamed", &tenant, changes),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    Ok(tenant)
}

/// How often the actor's tenant's devices pull: 60 seconds to 7 days.
pub async fn set_pull_interval(
    state: &AppState,
    actor: &Actor,
    expected: Expected,
    seconds: u32,
) -> Result<Tenant, ApiError> {
    if !(60..=7 * 24 * 3600).contains(&seconds) {
        return Err(ApiError::field(FieldError::new(
            "pull_interval_seconds",
            "out_of_range",
            "must be between 60 seconds and 7 days",
        )));
    }
    let id = actor.tenant_id;
    let txn = db::begin_write(&state.db).await?;
    let found = tenants::get_for_update(&txn, id).await?;
    let before = written(expect_version(found, |t| t.version, expected), "tenant")?;
    let tenant = tenants::set_pull_interval(&txn, id, seconds, state.clock.now()).await?;
    let changes = vec![Change::of(
        "pull_interval_seconds",
        Some(before.pull_interval_seconds.into()),
        Some(tenant.pull_interval_seconds.into()),
    )];
    audit::record_at(
        &txn,
        actor,
        id,
        tenant_entry("tenant.pull_interval_changed", &tenant, changes),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    Ok(tenant)
}

fn name_taken(name: &TenantName) -> String {
    format!("a tenant named {} already exists", name.as_str())
}
