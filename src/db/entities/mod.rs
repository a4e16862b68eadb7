//! sea-orm models, one per table, mirroring `migrations/`. Kept private to `db`.

pub mod operators;
pub mod refresh_tokens;
pub mod tenants;
