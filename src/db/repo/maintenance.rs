//! Housekeeping across all tenants, for the scheduled jobs (never reachable from the API).

use crate::db::entities::{audit_changes, device_field_history, enrollment_tokens, refresh_tokens};
use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

/// Deletes up to `batch` device field history entries recorded before `cutoff`.
pub async fn prune_field_history(
    conn: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    let oldest = Query::select()
        .column(device_field_history::Column::Id)
        .from(device_field_history::Entity)
        .and_where(Expr::col(device_field_history::Column::RecordedAt).lt(cutoff))
        .limit(batch)
        .to_owned();
    Ok(device_field_history::Entity::delete_many()
        .filter(device_field_history::Column::Id.in_subquery(oldest))
        .exec(conn)
        .await?
        .rows_affected)
}

/// Deletes up to `batch` change-log entries written before `cutoff`.
pub async fn prune_change_log(
    conn: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    let oldest = Query::select()
        .column(audit_changes::Column::Id)
        .from(audit_changes::Entity)
        .and_where(Expr::col(audit_changes::Column::CreatedAt).lt(cutoff))
        .limit(batch)
        .to_owned();
    Ok(audit_changes::Entity::delete_many()
        .filter(audit_changes::Column::Id.in_subquery(oldest))
        .exec(conn)
        .await?
        .rows_affected)
}

/// Deletes refresh tokens a day after they expired or were revoked, and enrollment tokens 30
/// days after they expired.
pub async fn delete_expired_tokens(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let day_ago = now - Duration::days(1);
    let refresh = refresh_tokens::Entity::delete_many()
        .filter(
            refresh_tokens::Column::ExpiresAt
                .lt(day_ago)
                .or(refresh_tokens::Column::RevokedAt.lt(day_ago)),
        )
        .exec(conn)
        .await?
        .rows_affected;
    let enrollment = enrollment_tokens::Entity::delete_many()
        .filter(enrollment_tokens::Column::ExpiresAt.lt(now - Duration::days(30)))
        .exec(conn)
        .await?
        .rows_affected;
    Ok(refresh + enrollment)
}
