//! How the device side's writes land in the engines' storage.

use crate::helpers::{TestApp, stored_device};
use gmp::bench::seed::{self, SeedOptions};
use gmp::db::repo::devices;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};

/// A check-in rewrites columns no index holds, so PostgreSQL updates the device's row in place
/// (a HOT update) without an entry in each of the table's indexes: device rows are stored with
/// room on their page (migration `m20261129_000002_devices_fillfactor`). SQLite rewrites rows in
/// place anyway; there the test checks the check-ins landed.
#[tokio::test]
async fn check_ins_update_device_rows_in_place() {
    let app = TestApp::spawn().await;
    let fleet = SeedOptions {
        steady: 300,
        new: 0,
        policies: 2,
        pull_interval_seconds: 3600,
        own_values_every: 0,
    };
    let seeded = seed::seed(&app.state, &fleet).await.unwrap();
    let mut checkins = Vec::new();
    let later = chrono::Utc::now() + chrono::Duration::days(3650);
    for device in seeded.devices.iter().step_by(3) {
        let found = stored_device(&app.state.db, &device.credential)
            .await
            .expect("a seeded device");
        checkins.push((seeded.tenant, found.id, later, later));
    }
    assert_eq!(checkins.len(), 100);

    let txn = app.state.db.begin().await.unwrap();
    let backend = txn.get_database_backend();
    devices::record_checkins(&txn, &checkins).await.unwrap();
    let count = |sql: &str, values: Vec<sea_orm::Value>| {
        let statement = Statement::from_sql_and_values(backend, sql, values);
        let txn = &txn;
        async move {
            let row = txn.query_one_raw(statement).await.unwrap().unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        }
    };
    let placeholder = if backend == DbBackend::Postgres { "$1" } else { "?" };
    let written = count(
        &format!("SELECT COUNT(*) FROM devices WHERE last_pull_at = {placeholder}"),
        vec![later.into()],
    )
    .await;
    assert_eq!(written, 100, "every check-in landed");
    if backend == DbBackend::Postgres {
        let updated = count(
            "SELECT pg_stat_get_xact_tuples_updated('devices'::regclass)",
            vec![],
        )
        .await;
        let in_place = count(
            "SELECT pg_stat_get_xact_tuples_hot_updated('devices'::regclass)",
            vec![],
        )
        .await;
        assert_eq!(
            (updated, in_place),
            (100, 100),
            "(rows updated, of them in place)"
        );
    }
    txn.rollback().await.unwrap();
}

/// The batches of check-ins and served-field audit commit without waiting for the disk
/// (`db::begin_batch_write`): on PostgreSQL `synchronous_commit` is off for those transactions
/// only, and every other write still waits; on SQLite (WAL mode, `synchronous = NORMAL`) no
/// commit waits for the disk.
#[tokio::test]
async fn batch_writes_do_not_wait_for_the_disk_and_other_writes_still_do() {
    let app = TestApp::spawn().await;
    let sql = if app.db.is_postgres() {
        "SELECT current_setting('synchronous_commit')"
    } else {
        "PRAGMA synchronous"
    };
    // A pool of one connection, so the write after the batch runs on the batch's connection:
    // the setting must end with the batch's transaction, not stay with the connection.
    let db = gmp::db::connect(&gmp::config::Secret::new(app.db.url.clone()), 1)
        .await
        .unwrap();
    let batch = gmp::db::begin_batch_write(&db).await.unwrap();
    let in_batch = setting(&batch, sql).await;
    batch.commit().await.unwrap();
    let write = gmp::db::begin_write(&db).await.unwrap();
    let in_write = setting(&write, sql).await;
    write.rollback().await.unwrap();
    db.close().await.unwrap();
    let expected = if app.db.is_postgres() {
        ("off", "on")
    } else {
        ("1", "1") // NORMAL
    };
    assert_eq!((in_batch.as_str(), in_write.as_str()), expected);
}

/// A setting as text, whichever type the engine answers with.
async fn setting(txn: &gmp::db::WriteTxn, sql: &str) -> String {
    let statement = Statement::from_string(txn.get_database_backend(), sql);
    let row = txn.query_one_raw(statement).await.unwrap().unwrap();
    row.try_get_by_index::<String>(0)
        .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
        .unwrap()
}
