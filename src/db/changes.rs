//! Changes that make a replica's cached pull state stale, and how every replica hears of them.
//!
//! A pull is answered from memory (see `services::device_directory`): the device row behind
//! a credential and its tenant's policy revision and pull interval. A write that changes one of
//! them announces it, in its transaction, with [`announce`]:
//!
//! - to this process at once: the [`WriteTxn`] notes the change and, when it commits, tells
//!   every directory of this process on the same database;
//! - to the other processes on the database: on PostgreSQL a `NOTIFY` on [`CHANNEL`]
//!   (delivered at commit, in commit order, never for a rolled-back transaction); on SQLite a
//!   row in `pull_state_changes`, which each process polls every [`POLL_INTERVAL`] (SQLite has one
//!   writer at a time, so row ids grow in commit order and have no gaps).
//!
//! A listener that loses track (a dropped `LISTEN` connection, pruned feed rows it had not
//! read, a failed poll) clears its directories and keeps them off until it is back, so a
//! replica never serves from a cache it cannot keep current. Other replicas see a change within
//! the poll interval on SQLite and within the notification's delivery on PostgreSQL; the README
//! documents one second as the bound.

use super::WriteTxn;
use crate::domain::{DeviceId, TenantId};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;
use uuid::Uuid;

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "gmp_pull_state";
/// How often a process reads SQLite's feed of changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Feed rows older than this are deleted; a process that has not read them by then starts over.
const FEED_KEEP_SECONDS: i64 = 300;
/// Rows read per poll at most (the rest on the next one).
const FEED_PAGE: u64 = 1000;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The device's row: lifecycle, credential, policy, values, reassert, reports, connectivity,
    /// what was served.
    Device(DeviceId),
    /// The tenant's policy revision or pull interval.
    Tenant(TenantId),
}

impl Change {
    /// As the feed stores it: (tenant, device), exactly one set.
    fn columns(self) -> (Option<Uuid>, Option<Uuid>) {
        match self {
            Change::Device(device) => (None, Some(device.0)),
            Change::Tenant(tenant) => (Some(tenant.0), None),
        }
    }

    fn from_columns(tenant: Option<Uuid>, device: Option<Uuid>) -> Option<Self> {
        match (tenant, device) {
            (None, Some(device)) => Some(Change::Device(DeviceId(device))),
            (Some(tenant), None) => Some(Change::Tenant(TenantId(tenant))),
            _ => None,
        }
    }

    /// `<origin>/d:<device>` or `<origin>/t:<tenant>`: the notification payload.
    fn encode(self, origin: i64) -> String {
        match self {
            Change::Device(device) => format!("{origin}/d:{}", device.0),
            Change::Tenant(tenant) => format!("{origin}/t:{}", tenant.0),
        }
    }

    /// The origin and the change of a payload.
    fn decode(payload: &str) -> Option<(i64, Self)> {
        let (origin, change) = payload.split_once('/')?;
        Some((origin.parse().ok()?, Self::decode_change(change)?))
    }

    fn decode_change(text: &str) -> Option<Self> {
        let (kind, id) = text.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "d" => Some(Change::Device(DeviceId(id))),
            "t" => Some(Change::Tenant(TenantId(id))),
            _ => None,
        }
    }
}

/// What keeps pull state in memory and must hear of changes.
pub trait Listener: Send + Sync {
    /// Drops what `change` made stale.
    fn changed(&self, change: Change);
    /// `false`: changes may have been missed; drop everything and serve nothing from memory
    /// until `true` again.
    fn set_tracking(&self, tracking: bool);
}

/// A connection that can announce changes: only a write transaction, so every change reaches
/// this process's directories when (and only if) it commits.
pub trait Announce: ConnectionTrait {
    fn note(&self, change: Change);
}

impl Announce for WriteTxn {
    fn note(&self, change: Change) {
        self.note_change(change);
    }
}

/// Announces `change` in the transaction of `conn` (see the module documentation).
pub async fn announce(conn: &impl Announce, change: Change) -> Result<(), DbErr> {
    announce_all(conn, &[change]).await
}

/// Announces several changes (a batch's) together: one statement per thousand.
pub async fn announce_all(conn: &impl Announce, changes: &[Change]) -> Result<(), DbErr> {
    match conn.get_database_backend() {
        DbBackend::Postgres => {
            for chunk in changes.chunks(1000) {
                // One notification per row of the `VALUES`.
                let mut sql = String::with_capacity(60 + 8 * chunk.len());
                sql.push_str("SELECT pg_notify($1, v.column1) FROM (VALUES ");
                let mut values: Vec<sea_orm::Value> = vec![CHANNEL.into()];
                for (row, change) in chunk.iter().enumerate() {
                    let _ = write!(sql, "{}(${})", if row == 0 { "" } else { ", " }, row + 2);
                    values.push(change.encode(*ORIGIN).into());
                }
                sql.push_str(") AS v");
                conn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
                    .await?;
            }
        }
        _ => {
            let now = chrono::Utc::now().timestamp();
            let values = changes.iter().flat_map(|change| {
                let (tenant, device) = change.columns();
                [(*ORIGIN).into(), tenant.into(), device.into(), now.into()]
            });
            let columns = ["origin", "tenant_id", "device_id", "created_at"];
            super::repo::insert_rows(conn, "pull_state_changes", &columns, values.collect(), "").await?;
        }
    }
    for change in changes {
        conn.note(*change);
    }
    Ok(())
}

/// This process, as the origin of the changes it announces. Its own changes reach its listeners
/// when the transaction commits; when the database brings them back, they are skipped, so a
/// device read again just after a change is not dropped a second time.
static ORIGIN: LazyLock<i64> = LazyLock::new(rand::random);

type Listeners = Vec<Weak<dyn Listener>>;

/// This process's listeners, per database.
static LISTENERS: LazyLock<Mutex<HashMap<String, Listeners>>> = LazyLock::new(Default::default);

/// Which database a pool points at, as far as this process can tell: the SQLite file, or
/// PostgreSQL's host, port and database.
pub(super) fn identity(db: &DatabaseConnection) -> String {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let options = db.get_postgres_connection_pool().connect_options();
            format!(
                "postgres://{}:{}/{}",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or_default()
            )
        }
        _ => db
            .get_sqlite_connection_pool()
            .connect_options()
            .get_filename()
            .display()
            .to_string(),
    }
}

fn listeners_of(database: &str) -> Vec<Arc<dyn Listener>> {
    let mut all = LISTENERS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(listeners) = all.get_mut(database) else {
        return Vec::new();
    };
    listeners.retain(|l| l.strong_count() > 0);
    listeners.iter().filter_map(Weak::upgrade).collect()
}

/// Tells this process's listeners on `database` of changes a transaction committed.
pub(super) fn committed(database: &str, changes: &[Change]) {
    if changes.is_empty() {
        return;
    }
    for listener in listeners_of(database) {
        for change in changes {
            listener.changed(*change);
        }
    }
}

/// Starts delivering every change on `db`, from this process and from others, to `listener`,
/// until it is dropped. Needs a Tokio runtime.
pub fn subscribe(db: &DatabaseConnection, listener: Arc<dyn Listener>) {
    let database = identity(db);
    LISTENERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(database)
        .or_default()
        .push(Arc::downgrade(&listener));
    let weak = Arc::downgrade(&listener);
    drop(listener);
    let db = db.clone();
    tokio::spawn(async move {
        match db.get_database_backend() {
            DbBackend::Postgres => listen(&db, weak).await,
            _ => poll(&db, weak).await,
        }
    });
}

/// PostgreSQL: `LISTEN` on a connection of its own; when it drops, start over.
async fn listen(db: &DatabaseConnection, listener: Weak<dyn Listener>) {
    let pool = db.get_postgres_connection_pool().clone();
    loop {
        let Some(current) = listener.upgrade() else {
            return;
        };
        current.set_tracking(false);
        drop(current);
        let mut pg = match PgListener::connect_with(&pool).await {
            Ok(pg) => pg,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for pull-state changes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = pg.listen(CHANNEL).await {
            tracing::warn!(%error, "cannot listen for pull-state changes; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        match listener.upgrade() {
            Some(current) => current.set_tracking(true),
            None => return,
        }
        // Until the connection drops (`Ok(None)` or an error): `try_recv` would reconnect by
        // itself on the next call, hiding what was missed meanwhile, so this starts over.
        while let Ok(Some(notification)) = pg.try_recv().await {
            let Some(current) = listener.upgrade() else {
                return;
            };
            match Change::decode(notification.payload()) {
                Some((origin, _)) if origin == *ORIGIN => {}
                Some((_, change)) => current.changed(change),
                // Not ours to read: start over rather than guess what changed.
                None => {
                    current.set_tracking(false);
                    current.set_tracking(true);
                }
            }
        }
    }
}

/// SQLite: read the feed every [`POLL_INTERVAL`]; the first reader of a minute also prunes it.
async fn poll(db: &DatabaseConnection, listener: Weak<dyn Listener>) {
    let mut last: Option<i64> = None;
    let mut pruned_at = 0;
    loop {
        let Some(current) = listener.upgrade() else {
            return;
        };
        match read_feed(db, last).await {
            Ok(Feed::Start(seq)) => {
                last = Some(seq);
                current.set_tracking(true);
            }
            Ok(Feed::Rows { through, changes }) => {
                for change in changes {
                    current.changed(change);
                }
                last = Some(through);
                current.set_tracking(true);
            }
            Ok(Feed::Gap) | Err(_) => {
                current.set_tracking(false);
                last = None;
            }
        }
        drop(current);
        let now = chrono::Utc::now().timestamp();
        if now - pruned_at >= 60 {
            pruned_at = now;
            if let Err(error) = prune(db, now - FEED_KEEP_SECONDS).await {
                tracing::warn!(%error, "could not prune the pull-state feed");
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

enum Feed {
    /// Nothing read yet: start after this row.
    Start(i64),
    /// Other processes' changes, read through row `through`.
    Rows { through: i64, changes: Vec<Change> },
    /// Rows were pruned before this process read them.
    Gap,
}

async fn read_feed(db: &DatabaseConnection, last: Option<i64>) -> Result<Feed, DbErr> {
    let backend = db.get_database_backend();
    let Some(last) = last else {
        let row = db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT COALESCE(MAX(seq), 0) AS seq FROM pull_state_changes",
            ))
            .await?;
        let seq = row.map(|r| r.try_get::<i64>("", "seq")).transpose()?;
        return Ok(Feed::Start(seq.unwrap_or(0)));
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            "SELECT seq, origin, tenant_id, device_id FROM pull_state_changes WHERE seq > ? ORDER BY seq LIMIT ?",
            [last.into(), FEED_PAGE.into()],
        ))
        .await?;
    let mut changes = Vec::with_capacity(rows.len());
    let mut through = last;
    for (expected, row) in (last + 1..).zip(rows) {
        let seq: i64 = row.try_get("", "seq")?;
        if seq != expected {
            return Ok(Feed::Gap);
        }
        through = seq;
        let origin: i64 = row.try_get("", "origin")?;
        if origin == *ORIGIN {
            continue;
        }
        let tenant: Option<Uuid> = row.try_get("", "tenant_id")?;
        let device: Option<Uuid> = row.try_get("", "device_id")?;
        // A row this version cannot read: start over rather than guess what changed.
        let Some(change) = Change::from_columns(tenant, device) else {
            return Ok(Feed::Gap);
        };
        changes.push(change);
    }
    Ok(Feed::Rows { through, changes })
}

async fn prune(db: &DatabaseConnection, before: i64) -> Result<(), DbErr> {
    let txn = super::begin_write(db).await?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "DELETE FROM pull_state_changes WHERE created_at < ?",
        [before.into()],
    ))
    .await?;
    txn.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let tenant = TenantId(Uuid::new_v4());
        let device = DeviceId(Uuid::new_v4());
        for change in [Change::Tenant(tenant), Change::Device(device)] {
            assert_eq!(Change::decode(&change.encode(-7)), Some((-7, change)));
            let (t, d) = change.columns();
            assert_eq!(Change::from_columns(t, d), Some(change));
        }
        assert_eq!(Change::decode("not-a-uuid"), None);
        assert_eq!(Change::decode("1/d:x"), None);
        assert_eq!(Change::decode(&format!("1/x:{}", tenant.0)), None);
        assert_eq!(Change::decode(&format!("d:{}", device.0)), None, "no origin");
        assert_eq!(Change::from_columns(Some(tenant.0), Some(device.0)), None);
    }
}
