//! The append-only change log. There is deliberately no update or delete here.

use crate::db::entities::audit_changes::{ActiveModel, Column, Entity, Model};
use crate::domain::audit::{Entry, Filter, NewEntry};
use crate::domain::{OperatorId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

fn to_domain(m: Model) -> Result<Entry, DbErr> {
    Ok(Entry {
        id: m.id,
        tenant_id: TenantId(m.tenant_id),
        actor_id: m.actor_id.map(OperatorId),
        actor_label: m.actor_label,
        action: m.action,
        target_type: m.target_type,
        target_id: m.target_id,
        changes: serde_json::from_str(&m.changes).map_err(|e| DbErr::Json(e.to_string()))?,
        request_id: m.request_id,
        created_at: m.created_at,
    })
}

pub async fn insert(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    actor_id: Option<OperatorId>,
    actor_label: &str,
    request_id: Option<&str>,
    entry: NewEntry,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let model = ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant.0),
        actor_id: Set(actor_id.map(|a| a.0)),
        actor_label: Set(actor_label.to_owned()),
        action: Set(entry.action.to_owned()),
        target_type: Set(entry.target_type.to_owned()),
        target_id: Set(entry.target_id.to_string()),
        changes: Set(serde_json::to_string(&entry.changes).map_err(|e| DbErr::Json(e.to_string()))?),
        request_id: Set(request_id.map(str::to_owned)),
        created_at: Set(now),
    };
    Entity::insert(model)
        .exec_without_returning(conn)
        .await
        .map(|_| ())
}

/// The tenant's entries, newest first, before `cursor`.
pub async fn list(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    filter: &Filter,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Entry>, DbErr> {
    let mut query = Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .order_by_desc(Column::Id)
        .limit(limit);
    if let Some(before) = cursor {
        query = query.filter(Column::Id.lt(before));
    }
    if let Some(actor) = filter.actor_id {
        query = query.filter(Column::ActorId.eq(actor.0));
    }
    if let Some(action) = &filter.action {
        query = query.filter(Column::Action.eq(action.as_str()));
    }
    if let Some(target_type) = &filter.target_type {
        query = query.filter(Column::TargetType.eq(target_type.as_str()));
    }
    if let Some(target_id) = &filter.target_id {
        query = query.filter(Column::TargetId.eq(target_id.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(Column::CreatedAt.gte(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(Column::CreatedAt.lt(until));
    }
    query.all(conn).await?.into_iter().map(to_domain).collect()
}
