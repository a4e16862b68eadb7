//! Enrollment tokens, stored as SHA-256 hashes.

use crate::db::entities::enrollment_tokens::{ActiveModel, Column, Entity, Model};
use crate::domain::device::EnrollmentToken;
use crate::domain::{EnrollmentTokenId, OperatorId, PolicyId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

impl From<Model> for EnrollmentToken {
    fn from(m: Model) -> Self {
        Self {
            id: EnrollmentTokenId(m.id),
            tenant_id: TenantId(m.tenant_id),
            label: m.label,
            policy_id: m.policy_id.map(PolicyId),
            expires_at: m.expires_at,
            max_uses: m.max_uses,
            uses: m.uses,
            revoked_at: m.revoked_at,
            created_by: m.created_by.map(OperatorId),
            created_at: m.created_at,
        }
    }
}

pub async fn insert(
    conn: &impl ConnectionTrait,
    token: &EnrollmentToken,
    token_hash: &str,
) -> Result<(), DbErr> {
    let model = ActiveModel {
        id: Set(token.id.0),
        tenant_id: Set(token.tenant_id.0),
        token_hash: Set(token_hash.to_owned()),
        label: Set(token.label.clone()),
        policy_id: Set(token.policy_id.map(|p| p.0)),
        expires_at: Set(token.expires_at),
        max_uses: Set(token.max_uses),
        uses: Set(0),
        revoked_at: Set(None),
        created_by: Set(token.created_by.map(|o| o.0)),
        created_at: Set(token.created_at),
    };
    Entity::insert(model)
        .exec_without_returning(conn)
        .await
        .map(|_| ())
}

pub async fn get(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: EnrollmentTokenId,
) -> Result<Option<EnrollmentToken>, DbErr> {
    Ok(Entity::find_by_id(id.0)
        .filter(Column::TenantId.eq(tenant.0))
        .one(conn)
        .await?
        .map(EnrollmentToken::from))
}

pub async fn list(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<Vec<EnrollmentToken>, DbErr> {
    let mut query = Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .order_by_asc(Column::Id)
        .limit(limit);
    if let Some(after) = cursor {
        query = query.filter(Column::Id.gt(after));
    }
    Ok(query
        .all(conn)
        .await?
        .into_iter()
        .map(EnrollmentToken::from)
        .collect())
}

/// The token a device presents. Registration happens before a tenant is known: the token says
/// which tenant it belongs to.
pub async fn find_by_hash(
    conn: &impl ConnectionTrait,
    token_hash: &str,
) -> Result<Option<EnrollmentToken>, DbErr> {
    Ok(Entity::find()
        .filter(Column::TokenHash.eq(token_hash))
        .one(conn)
        .await?
        .map(EnrollmentToken::from))
}

/// Counts one use, only while the token is usable — in one statement, so concurrent
/// registrations (on any replica) can never use it more than `max_uses` times.
pub async fn consume(
    conn: &impl ConnectionTrait,
    id: EnrollmentTokenId,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::Uses, Expr::col(Column::Uses).add(1))
        .filter(Column::Id.eq(id.0))
        .filter(Column::RevokedAt.is_null())
        .filter(Column::ExpiresAt.gt(now))
        .filter(Expr::col(Column::Uses).lt(Expr::col(Column::MaxUses)))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn revoke(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: EnrollmentTokenId,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::RevokedAt, Expr::value(now))
        .filter(Column::Id.eq(id.0))
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}
