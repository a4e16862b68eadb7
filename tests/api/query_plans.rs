//! Every query of the device side (register, authenticate, pull, check-in, served audit,
//! report) finds its rows through an index, on both engines: its cost must not grow with the
//! fleet. The repository functions those paths call run on a connection that records each
//! statement; each recorded statement is then explained by the engine itself, with the same
//! parameters. A plan that reads a whole table of the fleet fails the test. Likewise the web
//! UI's read of its session on every page goes by primary keys only.
//!
//! PostgreSQL may prefer a sequential scan on a small table even when an index exists, so its
//! plans are taken with `enable_seqscan = off`: a sequential scan then means no usable index.

use crate::helpers::{PASSWORD, TestApp, stored_device};
use crate::ui_client::Browser;
use gmp::auth::token;
use gmp::bench::seed::{self, SeedOptions};
use gmp::bench::{BenchDevice, Group, of_group};
use gmp::db::changes::{Announce, Change};
use gmp::db::repo::{
    billing_usage, device_checkins, device_fields, device_groups, device_reregistrations, devices,
    enrollment_tokens, policies, tenants, ui_sessions,
};
use gmp::domain::billing::Usage;
use gmp::domain::device::{Connectivity, ReportedKind, ReportedRecord};
use gmp::domain::field_audit::HistoryEvent;
use gmp::domain::rollout::bucket;
use gmp::services::effective::{self, Freshness};
use gmp::services::served_audit;
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, Statement,
    TransactionTrait,
};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// Tables read per tenant as a whole (a tenant's policy tree), which must not be read across
/// tenants.
const TENANT_TABLES: [&str; 2] = ["policies", "tenants"];

/// The tables that grow with the fleet (or with its history).
const FLEET_TABLES: [&str; 9] = [
    "devices",
    "device_checkins",
    "device_fields",
    "device_field_history",
    "device_billing_usage",
    "device_billing_usage_history",
    "enrollment_tokens",
    "device_reregistrations",
    "policy_versions",
];

/// Runs statements on a transaction and remembers them.
struct Recording<'a> {
    inner: &'a DatabaseTransaction,
    statements: Mutex<Vec<Statement>>,
}

impl<'a> Recording<'a> {
    fn on(inner: &'a DatabaseTransaction) -> Self {
        Self {
            inner,
            statements: Mutex::new(Vec::new()),
        }
    }

    fn record(&self, statement: &Statement) {
        self.statements.lock().unwrap().push(statement.clone());
    }
}

/// The server announces pull-state changes through its write transactions only; here the
/// announcing statement is recorded and explained like the others.
impl Announce for Recording<'_> {
    fn note(&self, _: Change) {}
}

#[async_trait::async_trait]
impl ConnectionTrait for Recording<'_> {
    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.record(&stmt);
        self.inner.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.record(&Statement::from_string(self.get_database_backend(), sql));
        self.inner.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.record(&stmt);
        self.inner.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.record(&stmt);
        self.inner.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.inner.support_returning()
    }
}

/// A transaction whose plans show whether a usable index exists: on PostgreSQL, which may
/// prefer a sequential scan of a small table, sequential scans are off.
async fn planning_transaction(app: &TestApp) -> DatabaseTransaction {
    let txn = app.state.db.begin().await.unwrap();
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL enable_seqscan = off")
            .await
            .unwrap();
    }
    txn
}

/// The engine's plan of one statement, as lines of text.
async fn plan(txn: &DatabaseTransaction, statement: &Statement) -> Vec<String> {
    let backend = txn.get_database_backend();
    let (prefix, column) = match backend {
        DbBackend::Sqlite => ("EXPLAIN QUERY PLAN ", "detail"),
        _ => ("EXPLAIN ", "QUERY PLAN"),
    };
    let explain = Statement {
        sql: format!("{prefix}{}", statement.sql),
        ..statement.clone()
    };
    txn.query_all_raw(explain)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {}: {e}", statement.sql))
        .iter()
        .map(|row| row.try_get::<String>("", column).unwrap())
        .collect()
}

/// The lines of a plan that read a whole fleet table, or all of one tenant's rows of it: one
/// tenant may hold the whole fleet, so an index condition on `tenant_id` alone is no better.
fn full_scans(backend: DbBackend, plan: &[String]) -> Vec<String> {
    let mut scans = Vec::new();
    let mut scanning_fleet = false;
    for line in plan {
        let text = line.trim();
        let fleet = |prefix: &str| {
            FLEET_TABLES
                .iter()
                .any(|t| text == format!("{prefix}{t}") || text.starts_with(&format!("{prefix}{t} ")))
        };
        let bad = match backend {
            // SQLite: `SCAN devices` (or `… USING INDEX`, a whole index), or a `SEARCH` whose
            // condition is the tenant alone; `SEARCH devices USING INDEX x (id=?)` is the aim.
            DbBackend::Sqlite => {
                fleet("SCAN ")
                    || (fleet("SEARCH ") && text.ends_with("(tenant_id=?)"))
                    || TENANT_TABLES
                        .iter()
                        .any(|t| text == format!("SCAN {t}") || text.starts_with(&format!("SCAN {t} ")))
            }
            // PostgreSQL: a sequential scan, or an index scan whose only condition is the tenant
            // (its `Index Cond` follows on the next line).
            _ => {
                let seq = FLEET_TABLES.iter().any(|t| {
                    text.contains(&format!("Seq Scan on {t} ")) || text.ends_with(&format!("Seq Scan on {t}"))
                });
                let tenant_only = scanning_fleet
                    && text.starts_with("Index Cond: (tenant_id = ")
                    && !text.contains(" AND ");
                scanning_fleet = FLEET_TABLES.iter().any(|t| text.contains(&format!(" on {t} ")));
                seq || tenant_only
            }
        };
        if bad {
            scans.push(line.clone());
        }
    }
    scans
}

/// Each device's first pull, and the served audit they queued written: the devices then have
/// a field audit to read and write.
async fn first_pulls(app: &TestApp, devices: &[BenchDevice]) {
    for device in devices {
        let pulled = app
            .client
            .get(app.url("/device/v1/config"))
            .bearer_auth(&device.credential)
            .send()
            .await
            .unwrap();
        assert_eq!(pulled.status(), 200);
    }
    served_audit::flush(&app.state).await.unwrap();
}

#[tokio::test]
async fn every_device_side_query_uses_an_index_on_both_engines() {
    let app = TestApp::spawn().await;
    let fleet = SeedOptions {
        steady: 300,
        new: 20,
        policies: 3,
        pull_interval_seconds: 3600,
        own_values_every: 0,
    };
    // Other tenants beside the one under test, as on a real server: a query that reads every
    // tenant's rows shows as a scan only when there are several.
    for _ in 0..8 {
        let other = SeedOptions {
            steady: 30,
            new: 0,
            ..fleet.clone()
        };
        seed::seed(&app.state, &other).await.unwrap();
    }
    let seeded = seed::seed(&app.state, &fleet).await.unwrap();
    // The herd's first pulls, so that devices have a field audit to read and write (and the
    // planner's statistics see many devices in it, as on a real server).
    let new = of_group(&seeded.devices, Group::New);
    first_pulls(&app, &new).await;
    let digest = token::digest(&new[0].credential);
    let tenant = seeded.tenant;
    let device = stored_device(&app.state.db, &new[0].credential)
        .await
        .expect("a seeded device");

    let txn = planning_transaction(&app).await;
    let backend = txn.get_database_backend();
    // Statistics as a running server would have them, so the planner picks as it would there:
    // PostgreSQL's autovacuum gathers them; the server never runs `ANALYZE` on SQLite.
    if backend == DbBackend::Postgres {
        txn.execute_unprepared("ANALYZE").await.unwrap();
    }
    let conn = Recording::on(&txn);
    let now = chrono::Utc::now();

    // Register.
    enrollment_tokens::find_by_hash(&conn, &token::digest("gmp_et_unknown"))
        .await
        .unwrap();
    devices::find_by_hardware_for_update(&conn, tenant, &device.hardware_id)
        .await
        .unwrap();
    policies::root_id(&conn, tenant).await.unwrap();
    // Authenticate and pull.
    // Misses are read together: several credentials in one query.
    let digests: Vec<String> = new.iter().take(8).map(|d| token::digest(&d.credential)).collect();
    let digests: Vec<&str> = digests.iter().map(String::as_str).collect();
    let found = devices::find_by_credentials(&conn, &digests).await.unwrap();
    assert_eq!(found.len(), 8);
    device_reregistrations::is_pending(&conn, &digest).await.unwrap();
    tenants::pull_facts(&conn, tenant).await.unwrap();
    // The tree a pull loads once per policy revision: the statement writers run in their
    // transaction.
    effective::tree_for_write(&conn, tenant).await.unwrap();
    device_checkins::record_checkins(&conn, &[(tenant, device.id, now, now)])
        .await
        .unwrap();
    devices::set_connectivity(&conn, &device, Connectivity::Online)
        .await
        .unwrap();
    // The served audit and the report.
    // A batch of devices at once, as the served-audit queue writes them.
    let served: Vec<_> = found.values().map(|d| (d.id, "hash", "key")).collect();
    devices::record_served(&conn, tenant, &served).await.unwrap();
    let fields = device_fields::load(&conn, tenant, device.id).await.unwrap();
    // The served audit reads the records of a batch of devices at once.
    let batch: Vec<_> = found.values().map(|d| d.id).collect();
    device_fields::load_many(&conn, tenant, &batch).await.unwrap();
    // An operator's page of devices reads their field flags the same way.
    device_fields::flags(&conn, tenant, Some(&batch)).await.unwrap();
    let record = fields
        .values()
        .next()
        .expect("the pulled device has served fields");
    let records = [record.clone()];
    device_fields::put(&conn, tenant, &records).await.unwrap();
    device_fields::append_history(&conn, tenant, HistoryEvent::Served, &records)
        .await
        .unwrap();
    let reassert = BTreeSet::new();
    let outcome = devices::ReportOutcome {
        applied_hash: Some("hash"),
        failed_hash: None,
        digest: "digest",
        reassert: &reassert,
    };
    devices::record_report(&conn, &device, now, outcome)
        .await
        .unwrap();
    let usage = Usage {
        storage_gb: 120.5,
        vaults: None,
    };
    billing_usage::latest(&conn, tenant, device.id).await.unwrap();
    billing_usage::record(&conn, tenant, device.id, &usage, now)
        .await
        .unwrap();

    let statements = conn.statements.into_inner().unwrap();
    assert!(statements.len() >= 15, "every call ran: {}", statements.len());
    let mut failures = Vec::new();
    for statement in &statements {
        let lines = plan(&txn, statement).await;
        // SQLite plans a plain `INSERT … VALUES` as nothing to search.
        assert!(
            !lines.is_empty() || statement.sql.starts_with("INSERT"),
            "a plan for {}",
            statement.sql
        );
        let scans = full_scans(backend, &lines);
        if !scans.is_empty() {
            failures.push(format!("{}\n  {}", statement.sql, lines.join("\n  ")));
        }
    }
    txn.rollback().await.unwrap();
    assert!(
        failures.is_empty(),
        "{backend:?}: full scans of fleet tables:\n{}",
        failures.join("\n\n")
    );
}

#[test]
fn a_full_scan_is_told_from_an_index_search() {
    let sqlite = |line: &str| full_scans(DbBackend::Sqlite, &[line.to_owned()]).len();
    assert_eq!(sqlite("SCAN devices"), 1);
    assert_eq!(sqlite("SCAN devices USING INDEX idx_devices_tenant"), 1);
    assert_eq!(
        sqlite("SEARCH devices USING INDEX idx_devices_credential (credential_hash=?)"),
        0
    );
    assert_eq!(sqlite("SCAN tenants"), 1, "every tenant's rows");
    assert_eq!(
        sqlite("SEARCH policies USING INDEX idx_policies_tenant_name (tenant_id=?)"),
        0,
        "one tenant's tree"
    );
    assert_eq!(
        sqlite("SEARCH devices USING INDEX idx_devices_tenant_policy (tenant_id=?)"),
        1
    );
    let postgres = |line: &str| full_scans(DbBackend::Postgres, &[line.to_owned()]).len();
    assert_eq!(postgres("  ->  Seq Scan on devices  (cost=10000000000.00..1)"), 1);
    assert_eq!(
        postgres("Index Scan using idx_devices_credential on devices  (cost=0.28..8.29)"),
        0
    );
    let plan = |lines: &[&str]| {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        full_scans(DbBackend::Postgres, &lines).len()
    };
    let tenant_index = "->  Index Scan using idx_devices_tenant_policy on devices  (cost=0.15..8.17)";
    assert_eq!(
        plan(&[tenant_index, "      Index Cond: (tenant_id = 'x'::uuid)"]),
        1
    );
    assert_eq!(
        plan(&[
            tenant_index,
            "      Index Cond: ((tenant_id = 'x'::uuid) AND (policy_id = 'y'::uuid))"
        ]),
        0
    );
}

#[tokio::test]
async fn rollout_counts_are_grouped_queries_through_indexes_on_both_engines() {
    let app = TestApp::spawn().await;
    let fleet = SeedOptions {
        steady: 300,
        new: 20,
        policies: 3,
        pull_interval_seconds: 3600,
        own_values_every: 10,
    };
    for _ in 0..4 {
        seed::seed(&app.state, &fleet).await.unwrap();
    }
    let seeded = seed::seed(&app.state, &fleet).await.unwrap();
    let tenant = seeded.tenant;
    let tree = effective::current(&app.state, tenant, Freshness::Database)
        .await
        .unwrap()
        .view;
    let root = policies::root_id(&app.state.db, tenant).await.unwrap().unwrap();
    let scope: Vec<_> = std::iter::once(root).chain(tree.descendants(root)).collect();

    let txn = planning_transaction(&app).await;
    // The tenant's devices placed on the rollout scale, as a rollout's first count does.
    let all = device_groups::devices_without_bucket(&txn, tenant, &scope, 10_000)
        .await
        .unwrap();
    assert_eq!(all.len(), 320);
    let placed: Vec<_> = all.iter().map(|&id| (id, bucket(id))).collect();
    device_groups::insert_buckets(&txn, tenant, &placed)
        .await
        .unwrap();
    // Statistics as a running server would have them, so the planner picks as it would there.
    txn.execute_unprepared("ANALYZE").await.unwrap();
    let backend = txn.get_database_backend();
    let conn = Recording::on(&txn);
    let now = chrono::Utc::now();
    let bands = [2_500, 5_000];
    let query = device_groups::WaveQuery {
        tenant,
        policies: &scope,
        bands: &bands,
        offline_before: now - chrono::Duration::hours(24),
        overdue_before: now - chrono::Duration::hours(1),
        since: now - chrono::Duration::hours(2),
    };
    let groups = device_groups::wave_groups(&conn, &query).await.unwrap();
    // About half the fleet, in far fewer rows than devices: one per group.
    let counted: i64 = groups.iter().map(|g| g.devices).sum();
    assert!(
        (100..=220).contains(&counted),
        "{counted} of 320 below half the scale"
    );
    assert!(groups.len() < 60, "{} groups", groups.len());
    assert_eq!(
        device_groups::count_under(&conn, tenant, &scope).await.unwrap(),
        320
    );
    assert!(
        device_groups::devices_without_bucket(&conn, tenant, &scope, 1_000)
            .await
            .unwrap()
            .is_empty()
    );

    let statements = conn.statements.into_inner().unwrap();
    assert_eq!(statements.len(), 3);
    let mut failures = Vec::new();
    for statement in &statements {
        let lines = plan(&txn, statement).await;
        let whole_buckets = lines.iter().any(|l| {
            let l = l.trim();
            l == "SCAN device_buckets"
                || l.starts_with("SCAN device_buckets ")
                || l.contains("Seq Scan on device_buckets")
        });
        let scans = full_scans(backend, &lines);
        if whole_buckets || !scans.is_empty() {
            failures.push(format!("{}\n  {}", statement.sql, lines.join("\n  ")));
        }
    }
    txn.rollback().await.unwrap();
    assert!(
        failures.is_empty(),
        "{backend:?}: full scans:\n{}",
        failures.join("\n\n")
    );
}

/// A page's one read of its session: by the primary key of `ui_sessions`, joined to the operator
/// and the tenant by theirs, so it costs the same at any number of sessions.
#[tokio::test]
async fn the_web_ui_reads_a_session_by_primary_keys_only() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("Acme").await;
    let mut cookies = Vec::new();
    for _ in 0..5 {
        let browser = Browser::sign_in(&app, &tenant.admin.email, PASSWORD).await;
        cookies.push(browser.cookie);
    }
    let id = cookies[2].strip_prefix("gmp_session=").unwrap();

    // No `ANALYZE`: with statistics of these few rows SQLite rightly scans them; without, it
    // plans as for tables of any size.
    let txn = planning_transaction(&app).await;
    let backend = txn.get_database_backend();
    let conn = Recording::on(&txn);
    let found = ui_sessions::find(&conn, &token::digest(id)).await.unwrap();
    assert_eq!(found.map(|s| s.email), Some(tenant.admin.email.clone()));
    let statements = conn.statements.into_inner().unwrap();
    assert_eq!(statements.len(), 1, "one statement");
    let lines = plan(&txn, &statements[0]).await;
    txn.rollback().await.unwrap();
    // Each table is searched with its key column among the conditions: a unique row.
    let by_key = |table: &str, key: &str| match backend {
        DbBackend::Sqlite => lines.iter().any(|line| {
            line.starts_with(&format!("SEARCH {table} USING "))
                && (line.contains(&format!("({key}=?")) || line.contains(&format!(" {key}=?")))
        }),
        _ => lines.windows(2).any(|pair| {
            pair[0].contains("Index")
                && pair[0].contains(&format!(" on {table} "))
                && pair[1].contains("Index Cond:")
                && (pair[1].contains(&format!("({key} = ")) || pair[1].contains(&format!("({key})::")))
        }),
    };
    for (table, key) in [("ui_sessions", "id_hash"), ("operators", "id"), ("tenants", "id")] {
        assert!(
            by_key(table, key),
            "{backend:?}: {table} by its key:\n{}",
            lines.join("\n")
        );
    }
}

/// "Who overrides field F?" reads the overridden rows only, in device order, through the partial
/// indexes: not every device's row of the field (one per device of the tenant), sorted.
#[tokio::test]
async fn who_overrides_a_field_reads_only_the_overridden_rows_on_both_engines() {
    let app = TestApp::spawn().await;
    let fleet = SeedOptions {
        steady: 0,
        new: 60,
        policies: 2,
        pull_interval_seconds: 3600,
        own_values_every: 0,
    };
    seed::seed(&app.state, &fleet).await.unwrap();
    let seeded = seed::seed(&app.state, &fleet).await.unwrap();
    let tenant = seeded.tenant;
    let new = of_group(&seeded.devices, Group::New);
    first_pulls(&app, &new).await;
    // Every sixth device reports a local override of the field.
    let mut overriders = Vec::new();
    for device in new.iter().step_by(6) {
        let found = stored_device(&app.state.db, &device.credential)
            .await
            .expect("a seeded device");
        let mut record = device_fields::load(&app.state.db, tenant, found.id)
            .await
            .unwrap()
            .remove(seed::OVERRIDDEN)
            .expect("the field was served");
        record.reported = Some(ReportedRecord {
            state: ReportedKind::Overridden,
            local_value: Some(serde_json::json!(false)),
            error: None,
            since: chrono::Utc::now(),
        });
        device_fields::put(&app.state.db, tenant, &[record])
            .await
            .unwrap();
        overriders.push(found.id);
    }
    overriders.sort();

    let txn = planning_transaction(&app).await;
    txn.execute_unprepared("ANALYZE").await.unwrap();
    let backend = txn.get_database_backend();
    let conn = Recording::on(&txn);
    let by_field = device_fields::overrides(&conn, tenant, Some(seed::OVERRIDDEN), None, None, 100)
        .await
        .unwrap();
    let ids: Vec<_> = by_field.iter().map(|r| r.device_id).collect();
    assert_eq!(ids, overriders, "every overrider, in device order");
    let any = device_fields::overrides(&conn, tenant, None, None, None, 100)
        .await
        .unwrap();
    assert_eq!(any.len(), overriders.len());
    let after = (overriders[1], seed::OVERRIDDEN);
    let page = device_fields::overrides(&conn, tenant, Some(seed::OVERRIDDEN), None, Some(after), 2)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.device_id).collect::<Vec<_>>(),
        overriders[2..4].to_vec()
    );

    let statements = conn.statements.into_inner().unwrap();
    assert_eq!(statements.len(), 3);
    let mut failures = Vec::new();
    for (statement, index) in statements.iter().zip([
        "idx_device_fields_overridden_by_field",
        "idx_device_fields_overridden_by_device",
        "idx_device_fields_overridden_by_field",
    ]) {
        let lines = plan(&txn, statement).await;
        // The field rows come through the partial index only (which holds nothing but
        // overridden rows, so searching it by tenant alone is the aim, not a full scan).
        let field_reads: Vec<_> = lines
            .iter()
            .filter(|l| {
                let l = l.trim_start();
                l.starts_with("SEARCH device_fields ")
                    || l.starts_with("SCAN device_fields")
                    || l.contains(" on device_fields ")
                    || l.ends_with(" on device_fields")
            })
            .collect();
        let through_index = !field_reads.is_empty() && field_reads.iter().all(|l| l.contains(index));
        // A sort of the rows read means they were not read in order through the index.
        let sorted = lines
            .iter()
            .any(|l| l.contains("TEMP B-TREE FOR ORDER BY") || l.trim_start().starts_with("Sort"));
        if !through_index || sorted {
            failures.push(format!("{}\n  {}", statement.sql, lines.join("\n  ")));
        }
    }
    txn.rollback().await.unwrap();
    assert!(
        failures.is_empty(),
        "{backend:?}: overrides not read through the partial indexes:\n{}",
        failures.join("\n\n")
    );
}
