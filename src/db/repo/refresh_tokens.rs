//! Refresh tokens, stored as SHA-256 hashes and grouped in families: every rotation stays in
//! the family of the login that started it, so reuse of an old token can revoke them all.

use crate::db::entities::refresh_tokens::{ActiveModel, Column, Entity, Model};
use crate::domain::{OperatorId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

/// A stored refresh token (its hash, never the token).
#[derive(Debug, Clone)]
pub struct StoredRefreshToken {
    pub id: Uuid,
    pub family_id: Uuid,
    pub operator_id: OperatorId,
    pub tenant_id: TenantId,
    pub expires_at: DateTime<Utc>,
    pub used: bool,
    pub revoked: bool,
}

impl From<Model> for StoredRefreshToken {
    fn from(m: Model) -> Self {
        Self {
            id: m.id,
            family_id: m.family_id,
            operator_id: OperatorId(m.operator_id),
            tenant_id: TenantId(m.tenant_id),
            expires_at: m.expires_at,
            used: m.used_at.is_some(),
            revoked: m.revoked_at.is_some(),
        }
    }
}

pub async fn insert(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    operator: OperatorId,
    family_id: Uuid,
    token_hash: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let model = ActiveModel {
        id: Set(Uuid::now_v7()),
        family_id: Set(family_id),
        operator_id: Set(operator.0),
        tenant_id: Set(tenant.0),
        token_hash: Set(token_hash.to_owned()),
        created_at: Set(now),
        expires_at: Set(expires_at),
        used_at: Set(None),
        revoked_at: Set(None),
    };
    Entity::insert(model)
        .exec_without_returning(conn)
        .await
        .map(|_| ())
}

/// Looks a presented token up by its hash. The token itself says which tenant it belongs to.
pub async fn find_by_hash(
    conn: &impl ConnectionTrait,
    token_hash: &str,
) -> Result<Option<StoredRefreshToken>, DbErr> {
    Ok(Entity::find()
        .filter(Column::TokenHash.eq(token_hash))
        .one(conn)
        .await?
        .map(StoredRefreshToken::from))
}

/// Marks the token used; `false` when it already was (or was revoked) — a concurrent second
/// use of the same token loses here even if both read it as fresh.
pub async fn mark_used(conn: &impl ConnectionTrait, id: Uuid, now: DateTime<Utc>) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::UsedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::UsedAt.is_null())
        .filter(Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn revoke_family(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::RevokedAt, Expr::value(now))
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::FamilyId.eq(family_id))
        .filter(Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// Ends every session of an operator (password or role change).
pub async fn revoke_operator(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    operator: OperatorId,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::RevokedAt, Expr::value(now))
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::OperatorId.eq(operator.0))
        .filter(Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}
