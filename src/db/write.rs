//! Write transactions, one writer at a time on SQLite.
//!
//! SQLite has one write lock per database. Left to itself, each waiting writer sleeps and
//! retries inside SQLite until its busy timeout, in no particular order, so under a burst
//! (a fleet enrolling) some wait past the timeout and fail. Here writers queue in the process,
//! first come first served, for the database file, and take SQLite's lock (`BEGIN IMMEDIATE`)
//! only when it is their turn. A writer that waits longer than [`QUEUE_TIMEOUT`] gets a busy
//! error (a `503` with `Retry-After`). On PostgreSQL there is no queue: rows are locked as they
//! are read (`FOR UPDATE` in the repositories).

use super::changes::{self, Change};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many devices a batch (check-ins, served audit) writes per transaction.
pub const WRITE_CHUNK: usize = 200;

/// How long a writer waits for its turn before the request is refused as busy.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// One queue per SQLite database file in this process.
static QUEUES: LazyLock<Mutex<HashMap<PathBuf, Arc<Semaphore>>>> = LazyLock::new(Default::default);

fn queue_for(db: &DatabaseConnection) -> Option<Arc<Semaphore>> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    let file = db
        .get_sqlite_connection_pool()
        .connect_options()
        .get_filename()
        .to_path_buf();
    let mut queues = QUEUES.lock().unwrap_or_else(|e| e.into_inner());
    Some(
        queues
            .entry(file)
            .or_insert_with(|| Arc::new(Semaphore::new(1)))
            .clone(),
    )
}

/// A transaction that will write; holds the database's writer turn until it ends.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    _turn: Option<OwnedSemaphorePermit>,
    /// The database, as `changes` names it, and what this transaction announced.
    database: String,
    changes: Mutex<Vec<Change>>,
}

/// Starts a transaction that will write. On SQLite it waits for this database's writer turn,
/// then takes the write lock up front (`BEGIN IMMEDIATE`), so no writer fails half-way when
/// another commits first.
pub async fn begin_write(db: &DatabaseConnection) -> Result<WriteTxn, DbErr> {
    let turn = match queue_for(db) {
        Some(queue) => Some(
            tokio::time::timeout(QUEUE_TIMEOUT, queue.acquire_owned())
                .await
                .map_err(|_| DbErr::Custom("database is locked: the write queue is full".into()))?
                .map_err(|_| DbErr::Custom("database is locked: the write queue is closed".into()))?,
        ),
        None => None,
    };
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?;
    Ok(WriteTxn {
        txn,
        _turn: turn,
        database: changes::identity(db),
        changes: Mutex::new(Vec::new()),
    })
}

/// [`begin_write`] for the batches of check-ins and served-field audit, whose commit does not
/// wait for the disk. On PostgreSQL `synchronous_commit` is off for the transaction: its commit
/// returns once the records are in the write-ahead log's buffers, and the WAL writer puts them
/// on disk within three `wal_writer_delay`s (600 ms by default). A crash of PostgreSQL itself
/// can lose that much of these batches, never half of one, and nothing else: the queues already
/// lose a flush interval when the server crashes, and a device's next pull records both again.
/// Waiting for the disk instead, a batch's commit took up to 208 ms on the benchmark machine,
/// and at those moments every device read in flight stalled with it for about 90 ms (most
/// likely waiting behind the WAL flush to log a page change; PostgreSQL's log showed only the
/// coincidence). On SQLite, a
/// commit in WAL mode with `synchronous = NORMAL` never waits for the disk anyway.
pub async fn begin_batch_write(db: &DatabaseConnection) -> Result<WriteTxn, DbErr> {
    let txn = begin_write(db).await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL synchronous_commit = off")
            .await?;
    }
    Ok(txn)
}

impl WriteTxn {
    /// Commits, then tells this process's caches what the transaction changed.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await?;
        let changes = self.changes.into_inner().unwrap_or_else(|e| e.into_inner());
        changes::committed(&self.database, &changes);
        Ok(())
    }

    /// Remembers a change announced in this transaction (see `changes::announce`).
    pub(super) fn note_change(&self, change: Change) {
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(change);
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTxn {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.txn.support_returning()
    }
}
