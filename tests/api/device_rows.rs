//! How the device side's writes land in the engines' storage.

use crate::helpers::{TestApp, stored_device};
use gmp::bench::seed::{self, SeedOptions};
use gmp::db::repo::device_checkins;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};

/// A check-in rewrites the device's narrow check-in row, not its wide device row
/// (`m20261129_000003_device_checkins`), and on PostgreSQL in place (a HOT update: the rows
/// are stored with room on their page, and no index holds the times). SQLite rewrites rows in
/// place anyway; there the test checks the check-ins landed.
#[tokio::test]
async fn check_ins_update_narrow_rows_in_place() {
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
    device_checkins::record_checkins(&txn, &checkins).await.unwrap();
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
        &format!("SELECT COUNT(*) FROM device_checkins WHERE last_pull_at = {placeholder}"),
        vec![later.into()],
    )
    .await;
    assert_eq!(written, 100, "every check-in landed");
    if backend == DbBackend::Postgres {
        let updated = count(
            "SELECT pg_stat_get_xact_tuples_updated('device_checkins'::regclass)",
            vec![],
        )
        .await;
        let in_place = count(
            "SELECT pg_stat_get_xact_tuples_hot_updated('device_checkins'::regclass)",
            vec![],
        )
        .await;
        let devices_updated = count(
            "SELECT pg_stat_get_xact_tuples_updated('devices'::regclass)",
            vec![],
        )
        .await;
        assert_eq!(
            (updated, in_place, devices_updated),
            (100, 100, 0),
            "(check-in rows updated, of them in place; device rows updated)"
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

/// The served audit reads a batch's field records, and a page of devices its field flags, by
/// device id alone (through the primary key), and drops any row of another tenant: the
/// tenant still scopes the answer.
#[tokio::test]
async fn field_records_read_by_device_stay_within_the_tenant() {
    use gmp::db::repo::device_fields;
    use gmp::domain::device::{ReportedKind, ReportedRecord};
    let app = TestApp::spawn().await;
    let fleet = SeedOptions {
        steady: 0,
        new: 1,
        policies: 2,
        pull_interval_seconds: 3600,
        own_values_every: 0,
    };
    let seeded = seed::seed(&app.state, &fleet).await.unwrap();
    let other = seed::seed(&app.state, &fleet).await.unwrap();
    let credential = &seeded.devices[0].credential;
    let pulled = app
        .client
        .get(app.url("/device/v1/config"))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    gmp::services::served_audit::flush(&app.state).await.unwrap();
    let id = stored_device(&app.state.db, credential).await.unwrap().id;

    let mut own = device_fields::load_many(&app.state.db, seeded.tenant, &[id])
        .await
        .unwrap();
    assert!(
        own.get(&id).is_some_and(|f| !f.is_empty()),
        "the served fields are read"
    );
    let foreign = device_fields::load_many(&app.state.db, other.tenant, &[id])
        .await
        .unwrap();
    assert!(foreign.is_empty(), "another tenant reads nothing: {foreign:?}");

    // The device overrides a field: it has flags, for its own tenant only.
    let mut record = own.remove(&id).unwrap().remove(seed::OVERRIDDEN).unwrap();
    record.reported = Some(ReportedRecord {
        state: ReportedKind::Overridden,
        local_value: Some(serde_json::json!(false)),
        error: None,
        since: chrono::Utc::now(),
    });
    device_fields::put(&app.state.db, seeded.tenant, &[record])
        .await
        .unwrap();
    let flags = device_fields::flags(&app.state.db, seeded.tenant, Some(&[id]))
        .await
        .unwrap();
    assert!(flags.contains_key(&id), "the override is flagged");
    let foreign = device_fields::flags(&app.state.db, other.tenant, Some(&[id]))
        .await
        .unwrap();
    assert!(foreign.is_empty(), "another tenant sees no flags: {foreign:?}");
}

/// The served-audit queue's record of what each device was served: a batch lands in one
/// statement, device by device, within the tenant (another tenant's device in the batch keeps
/// its row), and every device of it is announced to the other processes: one notification each
/// on PostgreSQL, one feed row each on SQLite.
#[tokio::test]
async fn served_records_of_a_batch_land_per_device_and_are_announced() {
    use gmp::db::changes::CHANNEL;
    use gmp::db::repo::devices;
    use std::collections::BTreeSet;
    let app = TestApp::spawn().await;
    let fleet = SeedOptions {
        steady: 0,
        new: 5,
        policies: 2,
        pull_interval_seconds: 3600,
        own_values_every: 0,
    };
    let seeded = seed::seed(&app.state, &fleet).await.unwrap();
    let other = seed::seed(&app.state, &fleet).await.unwrap();
    let mut ids = Vec::new();
    for device in &seeded.devices {
        ids.push(stored_device(&app.state.db, &device.credential).await.unwrap().id);
    }
    let stranger = &other.devices[0].credential;
    let stranger_id = stored_device(&app.state.db, stranger).await.unwrap().id;
    let backend = app.state.db.get_database_backend();
    let mut notifications = match backend {
        DbBackend::Postgres => {
            let pool = app.state.db.get_postgres_connection_pool();
            let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool)
                .await
                .unwrap();
            listener.listen(CHANNEL).await.unwrap();
            Some(listener)
        }
        _ => None,
    };
    let feed_before = feed_devices(&app, 0).await.0;

    let hashes: Vec<String> = (0..ids.len()).map(|i| format!("hash-{i}")).collect();
    let mut batch: Vec<_> = ids
        .iter()
        .zip(&hashes)
        .map(|(id, hash)| (*id, hash.as_str(), "key-1"))
        .collect();
    batch.push((stranger_id, "hash-x", "key-x"));
    let txn = gmp::db::begin_write(&app.state.db).await.unwrap();
    devices::record_served(&txn, seeded.tenant, &batch).await.unwrap();
    txn.commit().await.unwrap();

    for (device, hash) in seeded.devices.iter().zip(&hashes) {
        let stored = stored_device(&app.state.db, &device.credential).await.unwrap();
        assert_eq!(stored.served_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(stored.audited_key.as_deref(), Some("key-1"));
    }
    let untouched = stored_device(&app.state.db, stranger).await.unwrap();
    assert_eq!(
        untouched.served_hash, None,
        "another tenant's device keeps its row"
    );
    assert_eq!(untouched.audited_key, None);

    let wanted: BTreeSet<String> = ids.iter().map(|id| id.0.to_string()).collect();
    let announced: BTreeSet<String> = match notifications.as_mut() {
        Some(listener) => {
            let mut seen = BTreeSet::new();
            while !wanted.is_subset(&seen) {
                let notification = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
                    .await
                    .expect("every device's notification arrives")
                    .unwrap();
                if let Some((_, device)) = notification.payload().split_once("/d:") {
                    seen.insert(device.to_owned());
                }
            }
            seen
        }
        None => feed_devices(&app, feed_before).await.1,
    };
    assert!(
        wanted.is_subset(&announced),
        "announced {announced:?}, wanted {wanted:?}"
    );
}

/// SQLite's feed of changes after row `after`: the last row's number and the devices named.
async fn feed_devices(app: &TestApp, after: i64) -> (i64, std::collections::BTreeSet<String>) {
    let backend = app.state.db.get_database_backend();
    if backend != DbBackend::Sqlite {
        return (0, Default::default());
    }
    let rows = app
        .state
        .db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            "SELECT seq, device_id FROM pull_state_changes WHERE seq > ? ORDER BY seq",
            [after.into()],
        ))
        .await
        .unwrap();
    let mut last = after;
    let mut devices = std::collections::BTreeSet::new();
    for row in rows {
        last = row.try_get_by_index::<i64>(0).unwrap();
        if let Some(device) = row.try_get_by_index::<Option<uuid::Uuid>>(1).unwrap() {
            devices.insert(device.to_string());
        }
    }
    (last, devices)
}
