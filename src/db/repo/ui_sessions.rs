//! Sessions of the web UI, keyed by the SHA-256 of the id in the browser's cookie (never the id
//! itself). Like a refresh token, a presented id says which tenant it belongs to, so the lookup
//! by hash is the one read here that is not tenant-scoped.

use crate::db::entities::ui_sessions::{ActiveModel, Column, Entity};
use crate::db::entities::{operators, tenants};
use crate::domain::{OperatorId, Role, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, JoinType,
    QueryFilter, QuerySelect, RelationDef,
};
use uuid::Uuid;

/// A session row with what its operator and tenant are now.
#[derive(Debug, Clone)]
pub struct StoredUiSession {
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub operator_id: OperatorId,
    pub email: String,
    /// The role the operator signed in with.
    pub role: Role,
    /// The operator's role now.
    pub current_role: Role,
    pub platform_admin: bool,
    pub csrf_token: String,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(FromQueryResult)]
struct Joined {
    tenant_id: Uuid,
    tenant_name: String,
    operator_id: Uuid,
    email: String,
    role: String,
    current_role: String,
    platform_admin: bool,
    csrf_token: String,
    last_seen_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl TryFrom<Joined> for StoredUiSession {
    type Error = DbErr;

    fn try_from(row: Joined) -> Result<Self, DbErr> {
        Ok(Self {
            tenant_id: TenantId(row.tenant_id),
            tenant_name: row.tenant_name,
            operator_id: OperatorId(row.operator_id),
            email: row.email,
            role: row.role.parse().map_err(DbErr::Type)?,
            current_role: row.current_role.parse().map_err(DbErr::Type)?,
            platform_admin: row.platform_admin,
            csrf_token: row.csrf_token,
            last_seen_at: row.last_seen_at,
            expires_at: row.expires_at,
        })
    }
}

/// What a new session row holds.
pub struct NewUiSession<'a> {
    pub id_hash: &'a str,
    pub tenant: TenantId,
    pub operator: OperatorId,
    pub role: Role,
    pub csrf_token: &'a str,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(conn: &impl ConnectionTrait, new: NewUiSession<'_>) -> Result<(), DbErr> {
    let model = ActiveModel {
        id_hash: Set(new.id_hash.to_owned()),
        tenant_id: Set(new.tenant.0),
        operator_id: Set(new.operator.0),
        role: Set(new.role.as_str().to_owned()),
        csrf_token: Set(new.csrf_token.to_owned()),
        created_at: Set(new.now),
        last_seen_at: Set(new.now),
        expires_at: Set(new.expires_at),
    };
    Entity::insert(model)
        .exec_without_returning(conn)
        .await
        .map(|_| ())
}

/// The session with this id hash, joined by primary key to its operator and tenant: one
/// indexed read.
pub async fn find(conn: &impl ConnectionTrait, id_hash: &str) -> Result<Option<StoredUiSession>, DbErr> {
    let operator: RelationDef = Entity::belongs_to(operators::Entity)
        .from(Column::OperatorId)
        .to(operators::Column::Id)
        .into();
    let tenant: RelationDef = Entity::belongs_to(tenants::Entity)
        .from(Column::TenantId)
        .to(tenants::Column::Id)
        .into();
    Entity::find_by_id(id_hash.to_owned())
        .select_only()
        .columns([
            Column::TenantId,
            Column::OperatorId,
            Column::Role,
            Column::CsrfToken,
            Column::LastSeenAt,
            Column::ExpiresAt,
        ])
        .column_as(tenants::Column::Name, "tenant_name")
        .column_as(operators::Column::Email, "email")
        .column_as(operators::Column::Role, "current_role")
        .column_as(operators::Column::PlatformAdmin, "platform_admin")
        .join(JoinType::InnerJoin, operator)
        .join(JoinType::InnerJoin, tenant)
        .into_model::<Joined>()
        .one(conn)
        .await?
        .map(StoredUiSession::try_from)
        .transpose()
}

/// Records that the session was used at `now`.
pub async fn touch(conn: &impl ConnectionTrait, id_hash: &str, now: DateTime<Utc>) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::LastSeenAt, Expr::value(now))
        .filter(Column::IdHash.eq(id_hash))
        .exec(conn)
        .await
        .map(|_| ())
}

pub async fn delete(conn: &impl ConnectionTrait, id_hash: &str) -> Result<(), DbErr> {
    Entity::delete_by_id(id_hash.to_owned())
        .exec(conn)
        .await
        .map(|_| ())
}

/// Ends every web UI session of the operator.
pub async fn delete_for_operator(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    operator: OperatorId,
) -> Result<u64, DbErr> {
    Ok(Entity::delete_many()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::OperatorId.eq(operator.0))
        .exec(conn)
        .await?
        .rows_affected)
}

/// Deletes sessions past their absolute expiry at `now`, or unused since `idle_before`.
pub async fn delete_expired(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    idle_before: DateTime<Utc>,
) -> Result<u64, DbErr> {
    Ok(Entity::delete_many()
        .filter(Column::ExpiresAt.lte(now).or(Column::LastSeenAt.lt(idle_before)))
        .exec(conn)
        .await?
        .rows_affected)
}
