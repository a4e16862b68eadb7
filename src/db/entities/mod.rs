//! sea-orm models, one per table, mirroring `migrations/`. Kept private to `db`.

pub mod audit_changes;
pub mod device_billing_usage;
pub mod device_billing_usage_history;
pub mod device_buckets;
pub mod device_checkins;
pub mod device_field_history;
pub mod device_fields;
pub mod device_reregistrations;
pub mod devices;
pub mod enrollment_tokens;
pub mod job_leases;
pub mod operators;
pub mod policies;
pub mod policy_drafts;
pub mod policy_versions;
pub mod refresh_tokens;
pub mod rollouts;
pub mod tenants;
pub mod ui_sessions;
