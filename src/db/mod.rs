//! Database access: connecting, migrating, and the tenant-scoped repositories.
//!
//! `entities` are the sea-orm table models; nothing outside `db` uses them. Repositories return
//! domain types and take the `TenantId` of the authenticated caller as their first argument.

pub mod changes;
mod entities;
pub mod repo;
mod write;

pub use write::{WRITE_CHUNK, WriteTxn, begin_write};

use crate::config::Secret;
use gmp_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use std::time::Duration;

/// Opens a connection pool. SQLite runs in WAL mode with foreign keys on and waits for a busy
/// writer instead of failing at once.
pub async fn connect(url: &Secret, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.expose().to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
        });
    Database::connect(options).await
}

/// Applies every pending migration. On PostgreSQL it holds an advisory lock while it does, on
/// a connection of its own, so replicas starting together migrate one after the other.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Migrator::up(db, None).await;
    }
    let pool = db.get_postgres_connection_pool().clone();
    let lock_holder = pool
        .acquire()
        .await
        .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())))?;
    let mut lock_holder = lock_holder.detach();
    use sea_orm::sqlx::Executor;
    (&mut lock_holder)
        .execute("SELECT pg_advisory_lock(72716571)")
        .await
        .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())))?;
    let migrated = Migrator::up(db, None).await;
    let _ = (&mut lock_holder)
        .execute("SELECT pg_advisory_unlock(72716571)")
        .await;
    migrated
}

/// Names of (applied, pending) migrations.
pub async fn migration_status(db: &DatabaseConnection) -> Result<(Vec<String>, Vec<String>), DbErr> {
    let applied = Migrator::get_applied_migrations(db).await?;
    let pending = Migrator::get_pending_migrations(db).await?;
    Ok((
        applied.iter().map(|m| m.name().to_owned()).collect(),
        pending.iter().map(|m| m.name().to_owned()).collect(),
    ))
}

/// Rolls back the last `steps` migrations (all of them when `None`).
pub async fn migrate_down(db: &DatabaseConnection, steps: Option<u32>) -> Result<(), DbErr> {
    Migrator::down(db, steps).await
}

/// Cheap round trip used by `/readyz`.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}
