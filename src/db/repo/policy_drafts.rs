//! Drafts: edits of a policy kept unpublished. The edit is stored as the save would apply it
//! (secrets sealed); only the service reads it.

use super::{Written, expect_version};
use crate::db::entities::policy_drafts::{ActiveModel, Column, Entity, Model};
use crate::domain::{DraftId, OperatorId, PolicyId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

/// A draft as stored; `edit` is the encoded checked edit.
#[derive(Debug, Clone)]
pub struct DraftRow {
    pub id: DraftId,
    pub policy_id: PolicyId,
    pub base_version: i32,
    pub edit: String,
    pub revision: i32,
    pub author_id: Option<OperatorId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn row(m: Model) -> DraftRow {
    DraftRow {
        id: DraftId(m.id),
        policy_id: PolicyId(m.policy_id),
        base_version: m.base_version,
        edit: m.edit,
        revision: m.revision,
        author_id: m.author_id.map(OperatorId),
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

pub async fn insert(conn: &impl ConnectionTrait, tenant: TenantId, draft: &DraftRow) -> Result<(), DbErr> {
    Entity::insert(ActiveModel {
        id: Set(draft.id.0),
        tenant_id: Set(tenant.0),
        policy_id: Set(draft.policy_id.0),
        base_version: Set(draft.base_version),
        edit: Set(draft.edit.clone()),
        revision: Set(draft.revision),
        author_id: Set(draft.author_id.map(|a| a.0)),
        created_at: Set(draft.created_at),
        updated_at: Set(draft.updated_at),
    })
    .exec_without_returning(conn)
    .await
    .map(|_| ())
}

pub async fn get(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    policy: PolicyId,
    id: DraftId,
) -> Result<Option<DraftRow>, DbErr> {
    Ok(Entity::find_by_id(id.0)
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::PolicyId.eq(policy.0))
        .one(conn)
        .await?
        .map(row))
}

/// The policy's drafts in id order, after `cursor`.
pub async fn list(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    policy: PolicyId,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<Vec<DraftRow>, DbErr> {
    let mut query = Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::PolicyId.eq(policy.0))
        .order_by_asc(Column::Id)
        .limit(limit);
    if let Some(after) = cursor {
        query = query.filter(Column::Id.gt(after));
    }
    Ok(query.all(conn).await?.into_iter().map(row).collect())
}

/// Replaces the edit when the draft is at the expected revision; the new revision.
pub async fn replace_edit(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    policy: PolicyId,
    id: DraftId,
    expected: super::Expected,
    edit: &str,
    now: DateTime<Utc>,
) -> Result<Written<i32>, DbErr> {
    let found = Entity::find_by_id(id.0)
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::PolicyId.eq(policy.0))
        .lock_exclusive()
        .one(conn)
        .await?;
    let current = match expect_version(found, |m| m.revision, expected) {
        Written::Done(m) => m,
        Written::Missing => return Ok(Written::Missing),
        Written::Stale => return Ok(Written::Stale),
    };
    let revision = current.revision + 1;
    Entity::update_many()
        .col_expr(Column::Edit, Expr::value(edit))
        .col_expr(Column::Revision, Expr::value(revision))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id.0))
        .filter(Column::Revision.eq(current.revision))
        .exec(conn)
        .await?;
    Ok(Written::Done(revision))
}

/// Deletes the draft; true when there was one.
pub async fn delete(conn: &impl ConnectionTrait, tenant: TenantId, id: DraftId) -> Result<bool, DbErr> {
    let result = Entity::delete_many()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::Id.eq(id.0))
        .exec(conn)
        .await?;
    Ok(result.rows_affected > 0)
}
