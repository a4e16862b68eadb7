//! Housekeeping across all tenants, for the scheduled jobs (never reachable from the API).

use crate::db::entities::{
    audit_changes, device_billing_usage_history, device_field_history, enrollment_tokens, refresh_tokens,
};
use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

/// The append-only records the retention job prunes by age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aged {
    /// The device field history.
    FieldHistory,
    /// The billing usage history (a device's latest usage stays, however old).
    BillingHistory,
    /// The change log.
    ChangeLog,
}

impl Aged {
    pub const ALL: [Aged; 3] = [Aged::FieldHistory, Aged::BillingHistory, Aged::ChangeLog];
}

/// Deletes up to `batch` entries of `what` recorded before `cutoff`, oldest ids first.
pub async fn prune(
    conn: &impl ConnectionTrait,
    what: Aged,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    match what {
        Aged::FieldHistory => {
            use device_field_history::{Column, Entity};
            prune_before::<Entity>(conn, Column::Id, Column::RecordedAt, cutoff, batch).await
        }
        Aged::BillingHistory => {
            use device_billing_usage_history::{Column, Entity};
            prune_before::<Entity>(conn, Column::Id, Column::RecordedAt, cutoff, batch).await
        }
        Aged::ChangeLog => {
            use audit_changes::{Column, Entity};
            prune_before::<Entity>(conn, Column::Id, Column::CreatedAt, cutoff, batch).await
        }
    }
}

async fn prune_before<E: EntityTrait>(
    conn: &impl ConnectionTrait,
    id: E::Column,
    at: E::Column,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    let oldest = Query::select()
        .column(id)
        .from(E::default())
        .and_where(Expr::col(at).lt(cutoff))
        .limit(batch)
        .to_owned();
    Ok(E::delete_many()
        .filter(id.in_subquery(oldest))
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
