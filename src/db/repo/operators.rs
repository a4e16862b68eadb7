//! Operators of a tenant.

use super::{Expected, Written};
use crate::db::entities::operators::{ActiveModel, Column, Entity, Model};
use crate::domain::{Operator, OperatorId, Role, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, SimpleExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

fn to_domain(m: Model) -> Result<Operator, DbErr> {
    Ok(Operator {
        id: OperatorId(m.id),
        tenant_id: TenantId(m.tenant_id),
        role: m.role.parse::<Role>().map_err(DbErr::Type)?,
        email: m.email,
        display_name: m.display_name,
        platform_admin: m.platform_admin,
        version: m.version,
        session_epoch: m.session_epoch,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// What a new operator row holds.
pub struct NewOperator<'a> {
    pub id: OperatorId,
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub platform_admin: bool,
}

pub async fn insert(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    new: NewOperator<'_>,
    now: DateTime<Utc>,
) -> Result<Operator, DbErr> {
    let model = ActiveModel {
        id: Set(new.id.0),
        tenant_id: Set(tenant.0),
        email: Set(new.email.to_owned()),
        display_name: Set(new.display_name.to_owned()),
        password_hash: Set(new.password_hash.to_owned()),
        role: Set(new.role.as_str().to_owned()),
        platform_admin: Set(new.platform_admin),
        version: Set(1),
        session_epoch: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    };
    to_domain(Entity::insert(model).exec_with_returning(conn).await?)
}

pub async fn get(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: OperatorId,
) -> Result<Option<Operator>, DbErr> {
    Entity::find_by_id(id.0)
        .filter(Column::TenantId.eq(tenant.0))
        .one(conn)
        .await?
        .map(to_domain)
        .transpose()
}

/// Reads and locks an operator for an update (`FOR UPDATE` on PostgreSQL).
pub async fn get_for_update(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: OperatorId,
) -> Result<Option<Operator>, DbErr> {
    Entity::find_by_id(id.0)
        .filter(Column::TenantId.eq(tenant.0))
        .lock_exclusive()
        .one(conn)
        .await?
        .map(to_domain)
        .transpose()
}

/// The tenant's operators in id order, after `cursor`.
pub async fn list(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    cursor: Option<OperatorId>,
    limit: u64,
) -> Result<Vec<Operator>, DbErr> {
    let mut query = Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .order_by_asc(Column::Id)
        .limit(limit);
    if let Some(after) = cursor {
        query = query.filter(Column::Id.gt(after.0));
    }
    query.all(conn).await?.into_iter().map(to_domain).collect()
}

pub async fn count_admins(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<u64, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::Role.eq(Role::Admin.as_str()))
        .count(conn)
        .await
}

/// Whether any operator exists at all (the bootstrap admin is created only when none does).
pub async fn any_exists(conn: &impl ConnectionTrait) -> Result<bool, DbErr> {
    Ok(Entity::find().count(conn).await? > 0)
}

/// The operator with this login email and its password hash. Login happens before a tenant is
/// known, so this is the one lookup that is not tenant-scoped; emails are unique platform-wide.
pub async fn find_for_login(
    conn: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<(Operator, String)>, DbErr> {
    match Entity::find().filter(Column::Email.eq(email)).one(conn).await? {
        Some(m) => {
            let hash = m.password_hash.clone();
            Ok(Some((to_domain(m)?, hash)))
        }
        None => Ok(None),
    }
}

pub async fn password_hash(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: OperatorId,
) -> Result<Option<String>, DbErr> {
    Ok(Entity::find_by_id(id.0)
        .filter(Column::TenantId.eq(tenant.0))
        .one(conn)
        .await?
        .map(|m| m.password_hash))
}

/// The operator's session epoch, or `None` when the operator no longer exists.
pub async fn session_epoch(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: OperatorId,
) -> Result<Option<i32>, DbErr> {
    Entity::find_by_id(id.0)
        .filter(Column::TenantId.eq(tenant.0))
        .select_only()
        .column(Column::SessionEpoch)
        .into_tuple::<i32>()
        .one(conn)
        .await
}

/// Ends every access token of the operator issued so far.
pub async fn bump_session_epoch(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: OperatorId,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::SessionEpoch, Expr::col(Column::SessionEpoch).add(1))
        .filter(Column::Id.eq(id.0))
        .filter(Column::TenantId.eq(tenant.0))
        .exec(conn)
        .await
        .map(|_| ())
}

/// Changes to an operator; `None` leaves a field as it is.
#[derive(Default)]
pub struct OperatorChanges<'a> {
    pub display_name: Option<&'a str>,
    pub role: Option<Role>,
    pub password_hash: Option<&'a str>,
}

pub async fn update(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: OperatorId,
    expected: Expected,
    changes: OperatorChanges<'_>,
    now: DateTime<Utc>,
) -> Result<Written<Operator>, DbErr> {
    let mut update = Entity::update_many()
        .col_expr(Column::Version, Expr::col(Column::Version).add(1))
        .col_expr(Column::UpdatedAt, Expr::value(now));
    if let Some(name) = changes.display_name {
        update = update.col_expr(Column::DisplayName, Expr::value(name));
    }
    if let Some(role) = changes.role {
        update = update.col_expr(Column::Role, Expr::value(role.as_str()));
    }
    if let Some(hash) = changes.password_hash {
        update = update.col_expr(Column::PasswordHash, Expr::value(hash));
    }
    let filter = scoped(tenant, id, expected);
    if update.filter(filter).exec(conn).await?.rows_affected == 1 {
        return match get(conn, tenant, id).await? {
            Some(operator) => Ok(Written::Done(operator)),
            None => Err(DbErr::RecordNotFound("operator".into())),
        };
    }
    classify_miss(conn, tenant, id).await
}

pub async fn delete(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: OperatorId,
    expected: Expected,
) -> Result<Written<()>, DbErr> {
    if Entity::delete_many()
        .filter(scoped(tenant, id, expected))
        .exec(conn)
        .await?
        .rows_affected
        == 1
    {
        return Ok(Written::Done(()));
    }
    classify_miss(conn, tenant, id).await
}

fn scoped(tenant: TenantId, id: OperatorId, expected: Expected) -> SimpleExpr {
    let filter = Column::Id.eq(id.0).and(Column::TenantId.eq(tenant.0));
    match expected {
        Expected::Any => filter,
        Expected::Version(version) => filter.and(Column::Version.eq(version)),
    }
}

async fn classify_miss<T>(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: OperatorId,
) -> Result<Written<T>, DbErr> {
    Ok(match get(conn, tenant, id).await? {
        Some(_) => Written::Stale,
        None => Written::Missing,
    })
}
