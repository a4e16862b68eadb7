//! Tenant-scoped repositories: the only place queries are built.
//!
//! Convention: `fn x(conn: &impl ConnectionTrait, tenant: TenantId, …) -> Result<Domain, DbErr>`.
//! The tenant always comes from the authenticated caller, so a query can only ever see its own
//! tenant's rows; a row of another tenant is indistinguishable from a missing one.

pub mod audit;
pub mod billing_usage;
pub mod device_checkins;
pub mod device_fields;
pub mod device_groups;
pub mod device_reregistrations;
pub mod devices;
pub mod enrollment_tokens;
pub mod job_leases;
pub mod maintenance;
pub mod operators;
pub mod policies;
pub mod policy_drafts;
pub mod refresh_tokens;
pub mod rollouts;
pub mod tenants;
pub mod ui_sessions;

pub use crate::domain::Expected;
use sea_orm::{DbBackend, DbErr, SqlErr};
use std::fmt::Write;

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

/// Classifies a row read (and locked) for an update against the version the client expects.
pub fn expect_version<T>(found: Option<T>, version_of: impl Fn(&T) -> i32, expected: Expected) -> Written<T> {
    match found {
        None => Written::Missing,
        Some(row) => match expected {
            Expected::Version(v) if v != version_of(&row) => Written::Stale,
            _ => Written::Done(row),
        },
    }
}

/// Bound parameter `n` (from 1) in `backend`'s spelling.
pub(super) fn push_placeholder(sql: &mut String, backend: DbBackend, n: usize) {
    match backend {
        DbBackend::Postgres => {
            let _ = write!(sql, "${n}");
        }
        _ => sql.push('?'),
    }
}
