//! Database access: connecting, migrating, and the tenant-scoped repositories.
//!
//! `entities` are the sea-orm table models; nothing outside `db` uses them. Repositories return
//! domain types and take the `TenantId` of the authenticated caller as their first argument.

pub mod changes;
mod dedicated;
mod entities;
pub mod repo;
mod write;

pub use dedicated::Dedicated;
pub use write::{WRITE_CHUNK, WriteTxn, begin_batch_write, begin_write};

use crate::config::Secret;
use gmp_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use std::time::Duration;

/// SQLite's page cache per connection, in KiB (its default is 2 MiB): the device side's
/// indexes (credentials, field audit) are read at random, and a profile of onboarding showed
/// a tenth of the server's time in reading pages the small cache had dropped. The cache grows
/// only as pages are read.
const SQLITE_CACHE_KIB: u32 = 32 * 1024;
/// Pages the WAL may hold before a commit copies them back into the database file (SQLite's
/// default is 1,000, 4 MB). Check-ins rewrite the same device rows all day: with a longer WAL a
/// page written by many batches is copied back (and synced) once, not once per batch. Readers
/// find pages in the WAL through its index, so its length costs them little.
const SQLITE_WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// A pooled connection is checked with a ping before use only after this long idle. The pool's
/// default pings on every checkout: one more round trip for each query (`sqlx` pings again
/// when the connection goes back), which a profile of pulls reading their device on PostgreSQL
/// put at 11% of the server's time (on SQLite it is a hand-off to the connection's worker
/// thread and back). A connection the server, a proxy or a firewall
/// dropped has usually sat idle; one that breaks while in use fails its query, the request
/// answers `503` with `Retry-After`, and the pool replaces the connection.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// Opens a connection pool. SQLite runs in WAL mode with foreign keys on and waits for a busy
/// writer instead of failing at once.
pub async fn connect(url: &Secret, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.expose().to_owned());
    options
        .max_connections(max_connections)
        // Every connection is opened at start, not on the first requests that find the pool
        // short: a new PostgreSQL backend takes tens of milliseconds to connect, load its
        // catalogue and prepare its first statements, and with one connection kept the first
        // second of a 2,000/s load spent that on hundreds of requests.
        .min_connections(max_connections)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
                .pragma("wal_autocheckpoint", SQLITE_WAL_AUTOCHECKPOINT_PAGES.to_string())
        })
        .map_sqlx_sqlite_pool_opts(|pool| {
            pool.after_connect(|connection, _| Box::pin(stable_plans(connection)))
        });
    Database::connect(options).await
}

/// Turns on SQLite's query planner stability guarantee for a new connection. Without it, a
/// statement whose plan could depend on a bound value (every `LIMIT ?`, which every `.one()`
/// query has) is compiled again each time it runs with a new binding: a profile of onboarding
/// showed 7% of the server's time in `sqlite3Reprepare` for reads by primary key. With it, a
/// cached statement keeps its plan, which for these statements does not depend on the value.
pub(super) async fn stable_plans(
    connection: &mut sea_orm::sqlx::SqliteConnection,
) -> Result<(), sea_orm::sqlx::Error> {
    let mut handle = connection.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is the open connection this locked handle guards, used only while it is held;
    // SQLITE_DBCONFIG_ENABLE_QPSG takes an int (1: on) and an int pointer for the new setting,
    // which may be null.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1,
            std::ptr::null_mut::<std::ffi::c_int>(),
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(sea_orm::sqlx::Error::Configuration(
            format!("SQLite refused the query planner stability setting (code {rc})").into(),
        ));
    }
    Ok(())
}

/// True when the query failed because its connection to the database was lost (the server
/// restarted or dropped it): the pool replaces the connection, and a [`Dedicated`] one opens
/// another, so a retry can succeed.
/// Connections are pinged only after sitting idle ([`PING_IF_IDLE_FOR`]), so one that broke
/// since its last use is found by the next query on it.
pub fn is_lost_connection(error: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    let (sea_orm::DbErr::Conn(runtime) | sea_orm::DbErr::Exec(runtime) | sea_orm::DbErr::Query(runtime)) =
        error
    else {
        return false;
    };
    let sea_orm::RuntimeErr::SqlxError(sqlx) = runtime else {
        return false;
    };
    match sqlx.as_ref() {
        Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::Protocol(_) | Sqlx::PoolClosed | Sqlx::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception) and 57P (the server shutting down).
        Sqlx::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{DbBackend, Statement};

    /// Every pooled SQLite connection runs with the settings `connect` asks for, including the
    /// one that has no PRAGMA.
    #[tokio::test]
    async fn sqlite_connections_keep_their_plans_and_a_larger_cache() {
        let dir = tempfile::tempdir().unwrap();
        let url = Secret::new(format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()));
        let db = connect(&url, 2).await.unwrap();
        let pool = db.get_sqlite_connection_pool();
        for _ in 0..2 {
            let mut connection = pool.acquire().await.unwrap();
            let mut handle = connection.lock_handle().await.unwrap();
            let mut enabled: std::ffi::c_int = -1;
            // SAFETY: the locked handle's open connection; -1 leaves the setting as it is and
            // writes the current one into `enabled`.
            let rc = unsafe {
                libsqlite3_sys::sqlite3_db_config(
                    handle.as_raw_handle().as_ptr(),
                    libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                    -1,
                    &mut enabled as *mut std::ffi::c_int,
                )
            };
            assert_eq!(rc, libsqlite3_sys::SQLITE_OK);
            assert_eq!(enabled, 1, "query planner stability guarantee on");
        }
        let cache = db
            .query_one_raw(Statement::from_string(DbBackend::Sqlite, "PRAGMA cache_size"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            cache.try_get_by_index::<i64>(0).unwrap(),
            -i64::from(SQLITE_CACHE_KIB)
        );
    }
}
