//! Leases that make each scheduled job run on exactly one replica per tick.

use crate::db::entities::job_leases::{ActiveModel, Column, Entity};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

/// Takes the lease of `job` for `tick` until `expires_at`: only if no live holder has it and
/// no replica ran this tick yet. One statement, so two replicas racing cannot both win. The
/// live holder may be this very holder: a run that outlasts the job's interval keeps renewing
/// its lease, and the ticks meanwhile are skipped rather than started beside it.
pub async fn acquire(
    conn: &impl ConnectionTrait,
    job: &str,
    holder: &str,
    tick: i64,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let row = ActiveModel {
        job: Set(job.to_owned()),
        holder: Set(String::new()),
        expires_at: Set(DateTime::<Utc>::UNIX_EPOCH),
        last_tick: Set(i64::MIN),
    };
    Entity::insert(row)
        .on_conflict(OnConflict::column(Column::Job).do_nothing().to_owned())
        .exec_without_returning(conn)
        .await?;
    let taken = Entity::update_many()
        .col_expr(Column::Holder, Expr::value(holder))
        .col_expr(Column::ExpiresAt, Expr::value(expires_at))
        .col_expr(Column::LastTick, Expr::value(tick))
        .filter(Column::Job.eq(job))
        .filter(Column::LastTick.lt(tick))
        .filter(Column::ExpiresAt.lt(now))
        .exec(conn)
        .await?;
    Ok(taken.rows_affected == 1)
}

/// Extends a lease its holder still has.
pub async fn renew(
    conn: &impl ConnectionTrait,
    job: &str,
    holder: &str,
    expires_at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let renewed = Entity::update_many()
        .col_expr(Column::ExpiresAt, Expr::value(expires_at))
        .filter(Column::Job.eq(job))
        .filter(Column::Holder.eq(holder))
        .exec(conn)
        .await?;
    Ok(renewed.rows_affected == 1)
}

/// Gives the lease up (the tick stays recorded, so nobody reruns it).
pub async fn release(conn: &impl ConnectionTrait, job: &str, holder: &str) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::ExpiresAt, Expr::value(DateTime::<Utc>::UNIX_EPOCH))
        .filter(Column::Job.eq(job))
        .filter(Column::Holder.eq(holder))
        .exec(conn)
        .await
        .map(|_| ())
}

/// Gives up every lease `holder` has (on shutdown, mid-run or not).
pub async fn release_all(conn: &impl ConnectionTrait, holder: &str) -> Result<u64, DbErr> {
    Ok(Entity::update_many()
        .col_expr(Column::ExpiresAt, Expr::value(DateTime::<Utc>::UNIX_EPOCH))
        .filter(Column::Holder.eq(holder))
        .exec(conn)
        .await?
        .rows_affected)
}
