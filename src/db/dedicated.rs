//! A connection of its own for one hot path, used through sea-orm like the pool.
//!
//! `sqlx` tests every connection it takes back into the pool with a ping: a second round trip
//! to the database for each pooled query, with the thread wake-ups around it on both sides.
//! For the read every directory miss makes, that ping was half the round trips. This
//! connection is opened as the pool opens each of its own, outside the pool (one connection
//! more than `database_max_connections`), and held: nothing pings it.
//!
//! What the pings guard against is handled here instead: a read that finds the held connection
//! lost (closed while idle by a database restart, a proxy or a firewall) is tried once more on
//! a newly opened one, so it fails only if the database is unreachable.
//! A write that fails is not tried again (it may have been done). A call abandoned midway
//! drops the connection it was using; the next call opens another.

use sea_orm::sqlx::{self, Connection, SqliteConnection, postgres::PgConnection};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement,
    Values,
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::{Mutex, MutexGuard};

enum Raw {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// One connection, held; see the module documentation. Calls take turns on it.
pub struct Dedicated {
    pool: DatabaseConnection,
    /// What PostgreSQL shows for it (`application_name` in `pg_stat_activity`), so an operator
    /// can tell it from the pool's.
    name: &'static str,
    held: Mutex<Option<Raw>>,
}

impl std::fmt::Debug for Dedicated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedicated").finish_non_exhaustive()
    }
}

/// The held connection, out of its slot while in use: if the call is abandoned midway, the
/// connection goes with it.
struct Lease<'a> {
    slot: MutexGuard<'a, Option<Raw>>,
    conn: Raw,
    /// Opened for this call (so not one that may have been closed while idle).
    fresh: bool,
}

impl Lease<'_> {
    /// Puts the connection back for the next call.
    fn keep(mut self) {
        *self.slot = Some(self.conn);
    }
}

impl Dedicated {
    /// Opens its connection as `pool` opens its own, at first use; on PostgreSQL it is
    /// named `name`.
    pub fn new(pool: DatabaseConnection, name: &'static str) -> Self {
        Self {
            pool,
            name,
            held: Mutex::new(None),
        }
    }

    /// A new connection, set up as the pool sets up each of its own: its connect options, and
    /// on SQLite the query planner setting the pool applies after connecting.
    async fn open(&self) -> Result<Raw, DbErr> {
        match self.pool.get_database_backend() {
            DbBackend::Postgres => {
                let options = self.pool.get_postgres_connection_pool().connect_options();
                let options = (*options).clone().application_name(self.name);
                let conn = PgConnection::connect_with(&options).await;
                Ok(Raw::Postgres(conn.map_err(sqlx_error_to_conn_err)?))
            }
            DbBackend::Sqlite => {
                let options = self.pool.get_sqlite_connection_pool().connect_options();
                let mut conn = SqliteConnection::connect_with(&options)
                    .await
                    .map_err(sqlx_error_to_conn_err)?;
                super::stable_plans(&mut conn)
                    .await
                    .map_err(sqlx_error_to_conn_err)?;
                Ok(Raw::Sqlite(conn))
            }
            other => Err(DbErr::Custom(format!("no dedicated connection for {other:?}"))),
        }
    }

    /// Waits for the turn, and opens a connection if none is held.
    async fn lease(&self) -> Result<Lease<'_>, DbErr> {
        let mut slot = self.held.lock().await;
        let (conn, fresh) = match slot.take() {
            Some(conn) => (conn, false),
            None => (self.open().await?, true),
        };
        Ok(Lease { slot, conn, fresh })
    }
}

fn values(stmt: &Statement) -> SqlxValues {
    SqlxValues(stmt.values.clone().unwrap_or(Values(Vec::new())))
}

// sea-orm's own conversions of sqlx errors (what its pool reports) are private to it.
fn sqlx_error_to_conn_err(error: sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(error.into()))
}

fn sqlx_error_to_query_err(error: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(error.into()))
}

fn sqlx_error_to_exec_err(error: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(error.into()))
}

async fn fetch_all(conn: &mut Raw, stmt: &Statement) -> Result<Vec<QueryResult>, DbErr> {
    let sql = sqlx::AssertSqlSafe(stmt.sql.as_str());
    let rows = match conn {
        Raw::Postgres(c) => sqlx::query_with(sql, values(stmt))
            .fetch_all(c)
            .await
            .map(|rows| rows.into_iter().map(QueryResult::from).collect()),
        Raw::Sqlite(c) => sqlx::query_with(sql, values(stmt))
            .fetch_all(c)
            .await
            .map(|rows| rows.into_iter().map(QueryResult::from).collect()),
    };
    rows.map_err(sqlx_error_to_query_err)
}

async fn execute_unprepared(conn: &mut Raw, sql: &str) -> Result<ExecResult, DbErr> {
    let sql = sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
    let done = match conn {
        Raw::Postgres(c) => sql.execute(c).await.map(ExecResult::from),
        Raw::Sqlite(c) => sql.execute(c).await.map(ExecResult::from),
    };
    done.map_err(sqlx_error_to_exec_err)
}

async fn execute(conn: &mut Raw, stmt: &Statement) -> Result<ExecResult, DbErr> {
    let sql = sqlx::AssertSqlSafe(stmt.sql.as_str());
    let done = match conn {
        Raw::Postgres(c) => sqlx::query_with(sql, values(stmt))
            .execute(c)
            .await
            .map(ExecResult::from),
        Raw::Sqlite(c) => sqlx::query_with(sql, values(stmt))
            .execute(c)
            .await
            .map(ExecResult::from),
    };
    done.map_err(sqlx_error_to_exec_err)
}

#[async_trait::async_trait]
impl ConnectionTrait for Dedicated {
    fn get_database_backend(&self) -> DbBackend {
        self.pool.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let mut lease = self.lease().await?;
        let done = execute(&mut lease.conn, &stmt).await?;
        lease.keep();
        Ok(done)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut lease = self.lease().await?;
        let done = execute_unprepared(&mut lease.conn, sql).await?;
        lease.keep();
        Ok(done)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        Ok(self.query_all_raw(stmt).await?.into_iter().next())
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut lease = self.lease().await?;
        let rows = match fetch_all(&mut lease.conn, &stmt).await {
            Err(error) if !lease.fresh && super::is_lost_connection(&error) => {
                lease.conn = self.open().await?;
                fetch_all(&mut lease.conn, &stmt).await?
            }
            rows => rows?,
        };
        lease.keep();
        Ok(rows)
    }
}
