//! Schema migrations of the GMP server, applied in order on `gmp serve` and `gmp migrate up`.
//!
//! Never edit a migration that has shipped: add a new one.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_tenants_operators;
mod m20261127_000002_policies_audit;
mod m20261127_000003_devices;
mod m20261127_000004_jobs;
mod m20261128_000005_reregistrations_sessions;
mod m20261128_000006_pull_cache;
mod m20261128_000007_field_history_locked;
mod m20261128_000008_billing_usage;
mod m20261128_000009_drafts_rollouts;
mod m20261128_000010_ui_indexes;
mod m20261128_200001_pull_state_feed;
mod m20261128_210000_device_buckets;
mod m20261128_220001_ui_sessions;
mod m20261129_000001_override_indexes;
mod m20261129_000002_devices_fillfactor;
mod m20261129_000003_device_checkins;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_tenants_operators::Migration),
            Box::new(m20261127_000002_policies_audit::Migration),
            Box::new(m20261127_000003_devices::Migration),
            Box::new(m20261127_000004_jobs::Migration),
            Box::new(m20261128_000005_reregistrations_sessions::Migration),
            Box::new(m20261128_000006_pull_cache::Migration),
            Box::new(m20261128_000007_field_history_locked::Migration),
            Box::new(m20261128_000008_billing_usage::Migration),
            Box::new(m20261128_000009_drafts_rollouts::Migration),
            Box::new(m20261128_000010_ui_indexes::Migration),
            Box::new(m20261128_200001_pull_state_feed::Migration),
            Box::new(m20261128_210000_device_buckets::Migration),
            Box::new(m20261128_220001_ui_sessions::Migration),
            Box::new(m20261129_000001_override_indexes::Migration),
            Box::new(m20261129_000002_devices_fillfactor::Migration),
            Box::new(m20261129_000003_device_checkins::Migration),
        ]
    }
}
