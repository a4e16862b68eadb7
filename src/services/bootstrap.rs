//! First start: when no operator exists, create the platform admin so someone can sign in.

use super::operators::{NewOperatorInput, insert_valid};
use super::tenants::insert_tenant;
use crate::auth::password::HashPool;
use crate::auth::token;
use crate::config::Config;
use crate::db;
use crate::db::repo::operators;
use crate::domain::audit::Actor;
use crate::domain::{Role, TenantId, TenantName};
use crate::error::ApiError;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

/// Name of the tenant that holds the platform's own operators.
pub const PLATFORM_TENANT: &str = "Platform";
const DEFAULT_ADMIN_EMAIL: &str = "admin@gmp.local";

/// The platform admin created on this start.
#[derive(Debug)]
pub struct BootstrapAdmin {
    pub email: String,
    /// Set when the password was generated and must be shown to the person starting the server.
    pub generated_password: Option<String>,
}

/// Creates the platform tenant and its admin when the database has no operator at all.
/// Returns `None` when operators already exist (including when another replica starting at
/// the same moment won the race).
pub async fn ensure_platform_admin(
    db: &DatabaseConnection,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Option<BootstrapAdmin>, ApiError> {
    if operators::any_exists(db).await? {
        return Ok(None);
    }
    let email = config
        .bootstrap_admin_email
        .clone()
        .unwrap_or_else(|| DEFAULT_ADMIN_EMAIL.to_owned());
    let (password, generated) = match &config.bootstrap_admin_password {
        Some(password) => (password.expose().to_owned(), false),
        None => (token::generate(""), true),
    };
    let input = NewOperatorInput {
        email,
        display_name: Some("Platform admin".into()),
        role: Role::Admin,
        password: password.clone(),
    };
    let valid = input
        .validate(Some("bootstrap_admin"))
        .map_err(ApiError::validation)?;
    let email = valid.email.to_string();

    let txn = db::begin_write(db).await?;
    let name = TenantName::parse("name", PLATFORM_TENANT).map_err(ApiError::field)?;
    // The platform tenant's own id is not known yet; the system acts, and only its id is used.
    let actor = Actor::system(TenantId::new());
    let tenant = match insert_tenant(&txn, &actor, &name, now).await {
        Ok(tenant) => tenant,
        Err(error) if error.code == crate::error::Code::Conflict => return Ok(None),
        Err(error) => return Err(error),
    };
    // Once per database, before the server's own pool exists: a pool of one for this hash.
    let hashing = HashPool::new(1, HashPool::DEFAULT_MAX_WAIT);
    insert_valid(&txn, &hashing, &actor, tenant.id, valid, true, now).await?;
    txn.commit().await?;
    Ok(Some(BootstrapAdmin {
        email,
        generated_password: generated.then_some(password),
    }))
}
