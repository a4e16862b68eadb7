//! Tenants. Only platform admins list or create them; everyone else reads their own.

use super::{Expected, Written};
use crate::db::changes::{self, Announce, Change};
use crate::db::entities::tenants::{ActiveModel, Column, Entity, Model};
use crate::domain::{Tenant, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

/// Devices sync with the GMP every 4 hours unless the tenant says otherwise.
pub const DEFAULT_PULL_INTERVAL_SECONDS: u32 = 4 * 3600;

impl From<Model> for Tenant {
    fn from(m: Model) -> Self {
        Tenant {
            id: TenantId(m.id),
            name: m.name,
            version: m.version,
            pull_interval_seconds: u32::try_from(m.pull_interval_seconds)
                .unwrap_or(DEFAULT_PULL_INTERVAL_SECONDS),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

pub async fn insert(
    conn: &impl ConnectionTrait,
    id: TenantId,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Tenant, DbErr> {
    let model = ActiveModel {
        id: Set(id.0),
        name: Set(name.to_owned()),
        version: Set(1),
        pull_interval_seconds: Set(DEFAULT_PULL_INTERVAL_SECONDS as i32),
        policy_revision: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Entity::insert(model)
        .exec_with_returning(conn)
        .await
        .map(Tenant::from)
}

pub async fn get(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<Option<Tenant>, DbErr> {
    Entity::find_by_id(tenant.0)
        .one(conn)
        .await
        .map(|m| m.map(Tenant::from))
}

pub async fn find_by_name(conn: &impl ConnectionTrait, name: &str) -> Result<Option<Tenant>, DbErr> {
    Entity::find()
        .filter(Column::Name.eq(name))
        .one(conn)
        .await
        .map(|m| m.map(Tenant::from))
}

/// Reads and locks a tenant for an update (`FOR UPDATE` on PostgreSQL).
pub async fn get_for_update(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<Option<Tenant>, DbErr> {
    Entity::find_by_id(tenant.0)
        .lock_exclusive()
        .one(conn)
        .await
        .map(|m| m.map(Tenant::from))
}

/// All tenants in id order, after `cursor`. Platform-admin only: callers check that.
pub async fn list_all(
    conn: &impl ConnectionTrait,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Tenant>, DbErr> {
    let mut query = Entity::find().order_by_asc(Column::Id).limit(limit);
    if let Some(after) = cursor {
        query = query.filter(Column::Id.gt(after));
    }
    Ok(query.all(conn).await?.into_iter().map(Tenant::from).collect())
}

pub async fn rename(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    expected: Expected,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Written<Tenant>, DbErr> {
    let mut update = Entity::update_many()
        .col_expr(Column::Name, Expr::value(name))
        .col_expr(Column::Version, Expr::col(Column::Version).add(1))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(tenant.0));
    if let Expected::Version(version) = expected {
        update = update.filter(Column::Version.eq(version));
    }
    if update.exec(conn).await?.rows_affected == 1 {
        let tenant = get(conn, tenant)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("tenant".into()))?;
        return Ok(Written::Done(tenant));
    }
    Ok(match get(conn, tenant).await? {
        Some(_) => Written::Stale,
        None => Written::Missing,
    })
}

/// Marks the tenant's policies as changed: every replica's cached tree and effective configs
/// of the tenant are stale from this commit on. Called by every policy write, in its
/// transaction.
pub async fn bump_policy_revision(conn: &impl Announce, tenant: TenantId) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::PolicyRevision, Expr::col(Column::PolicyRevision).add(1))
        .filter(Column::Id.eq(tenant.0))
        .exec(conn)
        .await?;
    changes::announce(conn, Change::Tenant(tenant)).await
}

/// What a pull needs of its tenant, in one read by primary key: the policy revision (to know a
/// cached tree is current) and the pull interval.
pub async fn pull_facts(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<Option<(i64, u32)>, DbErr> {
    Ok(Entity::find_by_id(tenant.0)
        .select_only()
        .column(Column::PolicyRevision)
        .column(Column::PullIntervalSeconds)
        .into_tuple::<(i64, i32)>()
        .one(conn)
        .await?
        .map(|(revision, interval)| (revision, std::cmp::max(interval, 1) as u32)))
}

/// Sets how often the tenant's devices pull; bumps the version. Call with the row locked.
pub async fn set_pull_interval(
    conn: &impl Announce,
    tenant: TenantId,
    seconds: u32,
    now: DateTime<Utc>,
) -> Result<Tenant, DbErr> {
    Entity::update_many()
        .col_expr(Column::PullIntervalSeconds, Expr::value(seconds as i32))
        .col_expr(Column::Version, Expr::col(Column::Version).add(1))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(tenant.0))
        .exec(conn)
        .await?;
    changes::announce(conn, Change::Tenant(tenant)).await?;
    get(conn, tenant)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("tenant".into()))
}
