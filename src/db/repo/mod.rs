//! Tenant-scoped repositories: the only place queries are built.
//!
//! Convention: `fn x(conn: &impl ConnectionTrait, tenant: TenantId, …) -> Result<Domain, DbErr>`.
//! The tenant always comes from the authenticated caller, so a query can only ever see its own
//! tenant's rows; a row of another tenant is indistinguishable from a missing one.

pub mod operators;
pub mod refresh_tokens;
pub mod tenants;

pub use crate::domain::Expected;
use sea_orm::{DbErr, SqlErr};

/// The result of a conditional write.
#[derive(Debug)]
pub enum Written<T> {
    Done(T),
    /// No such row in the caller's tenant.
    Missing,
    /// The row exists but its version moved on.
    Stale,
}

/// True when the error is a unique-constraint violation (a duplicate email or name).
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}
