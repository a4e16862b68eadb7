//! sea-orm models, one per table, mirroring `migrations/`. Kept private to `db`.

pub mod audit_changes;
pub mod operators;
pub mod policies;
pub mod policy_versions;
pub mod refresh_tokens;
pub mod tenants;
