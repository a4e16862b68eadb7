//! Policies and their immutable versions. A policy row holds the tree structure and the number
//! of its current version; each version row holds the content as JSON (secrets sealed).

use super::{Written, expect_version, tenants};
use crate::db::changes::Announce;
use crate::db::entities::{policies, policy_versions};
use crate::domain::policy::{PolicyContent, PolicyNode, PolicyTree, Sealed, SecretHandle, SettingValue};
use crate::domain::{Expected, OperatorId, PolicyId, TenantId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, JoinType, QueryFilter, QueryOrder,
    QuerySelect, RelationDef,
};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

const SECRET_KEY: &str = "$secret";

/// A policy as listed: structure and current version, without content.
#[derive(Debug, Clone)]
pub struct PolicySummary {
    pub id: PolicyId,
    pub parent_id: Option<PolicyId>,
    pub name: String,
    pub current_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Who saved a version, when and why.
#[derive(Debug, Clone)]
pub struct VersionMeta {
    pub version: i32,
    pub author_id: Option<OperatorId>,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
}

fn summary(m: policies::Model) -> PolicySummary {
    PolicySummary {
        id: PolicyId(m.id),
        parent_id: m.parent_id.map(PolicyId),
        name: m.name,
        current_version: m.current_version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn json_error(e: serde_json::Error) -> DbErr {
    DbErr::Json(e.to_string())
}

pub fn encode_values(values: &BTreeMap<String, SettingValue>) -> Result<String, DbErr> {
    let object: Map<String, Value> = values
        .iter()
        .map(|(path, value)| {
            let stored = match value {
                SettingValue::Plain(v) => v.clone(),
                SettingValue::Secret(h) => json!({SECRET_KEY: {
                    "id": h.id, "changed_at": h.changed_at,
                    "kid": h.sealed.kid, "nonce": h.sealed.nonce, "ciphertext": h.sealed.ciphertext,
                }}),
            };
            (path.clone(), stored)
        })
        .collect();
    serde_json::to_string(&object).map_err(json_error)
}

pub fn decode_values(text: &str) -> Result<BTreeMap<String, SettingValue>, DbErr> {
    let object: Map<String, Value> = serde_json::from_str(text).map_err(json_error)?;
    object
        .into_iter()
        .map(|(path, stored)| {
            let value = match stored.get(SECRET_KEY) {
                Some(secret) => {
                    #[derive(serde::Deserialize)]
                    struct Stored {
                        id: Uuid,
                        changed_at: DateTime<Utc>,
                        #[serde(flatten)]
                        sealed: Sealed,
                    }
                    let s: Stored = serde_json::from_value(secret.clone()).map_err(json_error)?;
                    SettingValue::Secret(SecretHandle {
                        id: s.id,
                        changed_at: s.changed_at,
                        sealed: s.sealed,
                    })
                }
                None => SettingValue::Plain(stored),
            };
            Ok((path, value))
        })
        .collect()
}

fn content_of(m: &policy_versions::Model) -> Result<PolicyContent, DbErr> {
    Ok(PolicyContent {
        name: m.name.clone(),
        description: m.description.clone(),
        values: decode_values(&m.setting_values)?,
        locks: serde_json::from_str::<BTreeSet<String>>(&m.locks).map_err(json_error)?,
    })
}

fn meta_of(m: &policy_versions::Model) -> VersionMeta {
    VersionMeta {
        version: m.version,
        author_id: m.author_id.map(OperatorId),
        comment: m.comment.clone(),
        created_at: m.created_at,
    }
}

/// Every policy of the tenant at its current version. Services read the tree through
/// `services::effective` only (`current`, cached per policy revision, or `tree_for_write` in a
/// write transaction), never here.
pub(crate) async fn load_tree(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<PolicyTree, DbErr> {
    // One statement whatever the number of policies, so the policies and their current versions
    // come from one snapshot even outside a transaction.
    let current: RelationDef = policy_versions::Entity::belongs_to(policies::Entity)
        .from(policy_versions::Column::PolicyId)
        .to(policies::Column::Id)
        .into();
    let rows = policy_versions::Entity::find()
        .select_also(policies::Entity)
        .join(JoinType::InnerJoin, current)
        .filter(policies::Column::TenantId.eq(tenant.0))
        .filter(
            Expr::col((policy_versions::Entity, policy_versions::Column::Version))
                .equals((policies::Entity, policies::Column::CurrentVersion)),
        )
        .all(conn)
        .await?;
    let mut nodes = Vec::with_capacity(rows.len());
    for (version, policy) in rows {
        let policy = policy.ok_or_else(|| DbErr::RecordNotFound(format!("policy {}", version.policy_id)))?;
        nodes.push(PolicyNode {
            id: PolicyId(policy.id),
            parent_id: policy.parent_id.map(PolicyId),
            version: policy.current_version,
            content: content_of(&version)?,
        });
    }
    Ok(PolicyTree::new(nodes))
}

pub async fn get_summary(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: PolicyId,
) -> Result<Option<PolicySummary>, DbErr> {
    Ok(policies::Entity::find_by_id(id.0)
        .filter(policies::Column::TenantId.eq(tenant.0))
        .one(conn)
        .await?
        .map(summary))
}

pub async fn root_id(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<Option<PolicyId>, DbErr> {
    Ok(policies::Entity::find()
        .filter(policies::Column::TenantId.eq(tenant.0))
        .filter(policies::Column::ParentId.is_null())
        .one(conn)
        .await?
        .map(|m| PolicyId(m.id)))
}

/// The tenant's policies in id order, after `cursor`.
pub async fn list(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<Vec<PolicySummary>, DbErr> {
    let mut query = policies::Entity::find()
        .filter(policies::Column::TenantId.eq(tenant.0))
        .order_by_asc(policies::Column::Id)
        .limit(limit);
    if let Some(after) = cursor {
        query = query.filter(policies::Column::Id.gt(after));
    }
    Ok(query.all(conn).await?.into_iter().map(summary).collect())
}

/// Reads and locks a policy for a save when its version is as expected. On PostgreSQL a
/// concurrent save waits here and then sees the version the first one wrote; on SQLite the
/// write transaction already holds the database lock.
pub async fn lock_for_update(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: PolicyId,
    expected: Expected,
) -> Result<Written<()>, DbErr> {
    let row = policies::Entity::find_by_id(id.0)
        .filter(policies::Column::TenantId.eq(tenant.0))
        .lock_exclusive()
        .one(conn)
        .await?;
    Ok(match expect_version(row, |r| r.current_version, expected) {
        Written::Done(_) => Written::Done(()),
        Written::Missing => Written::Missing,
        Written::Stale => Written::Stale,
    })
}

fn version_row(
    tenant: TenantId,
    node: &PolicyNode,
    author: Option<OperatorId>,
    comment: Option<&str>,
    now: DateTime<Utc>,
) -> Result<policy_versions::ActiveModel, DbErr> {
    Ok(policy_versions::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant.0),
        policy_id: Set(node.id.0),
        version: Set(node.version),
        name: Set(node.content.name.clone()),
        description: Set(node.content.description.clone()),
        setting_values: Set(encode_values(&node.content.values)?),
        locks: Set(serde_json::to_string(&node.content.locks).map_err(json_error)?),
        author_id: Set(author.map(|a| a.0)),
        comment: Set(comment.map(str::to_owned)),
        created_at: Set(now),
    })
}

/// Creates a policy at version 1 (`node.version` must be 1).
pub async fn insert(
    conn: &impl Announce,
    tenant: TenantId,
    node: &PolicyNode,
    author: Option<OperatorId>,
    comment: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let policy = policies::ActiveModel {
        id: Set(node.id.0),
        tenant_id: Set(tenant.0),
        parent_id: Set(node.parent_id.map(|p| p.0)),
        name: Set(node.content.name.clone()),
        current_version: Set(node.version),
        created_at: Set(now),
        updated_at: Set(now),
    };
    policies::Entity::insert(policy)
        .exec_without_returning(conn)
        .await?;
    policy_versions::Entity::insert(version_row(tenant, node, author, comment, now)?)
        .exec_without_returning(conn)
        .await?;
    tenants::bump_policy_revision(conn, tenant).await
}

/// Stores `node` as the policy's new current version. Call after `lock_for_update` in the same
/// transaction; the unique (policy, version) index refuses a version number twice regardless.
pub async fn save_version(
    conn: &impl Announce,
    tenant: TenantId,
    node: &PolicyNode,
    author: Option<OperatorId>,
    comment: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    policies::Entity::update_many()
        .col_expr(policies::Column::CurrentVersion, Expr::value(node.version))
        .col_expr(policies::Column::Name, Expr::value(node.content.name.clone()))
        .col_expr(
            policies::Column::ParentId,
            Expr::value(node.parent_id.map(|p| p.0)),
        )
        .col_expr(policies::Column::UpdatedAt, Expr::value(now))
        .filter(policies::Column::Id.eq(node.id.0))
        .filter(policies::Column::TenantId.eq(tenant.0))
        .exec(conn)
        .await?;
    policy_versions::Entity::insert(version_row(tenant, node, author, comment, now)?)
        .exec_without_returning(conn)
        .await?;
    tenants::bump_policy_revision(conn, tenant).await
}

/// One version's content and metadata.
pub async fn get_version(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: PolicyId,
    version: i32,
) -> Result<Option<(PolicyContent, VersionMeta)>, DbErr> {
    match policy_versions::Entity::find()
        .filter(policy_versions::Column::TenantId.eq(tenant.0))
        .filter(policy_versions::Column::PolicyId.eq(id.0))
        .filter(policy_versions::Column::Version.eq(version))
        .one(conn)
        .await?
    {
        Some(m) => Ok(Some((content_of(&m)?, meta_of(&m)))),
        None => Ok(None),
    }
}

/// A policy's versions in order, after version `after`.
pub async fn list_versions(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: PolicyId,
    after: Option<i32>,
    limit: u64,
) -> Result<Vec<VersionMeta>, DbErr> {
    let mut query = policy_versions::Entity::find()
        .filter(policy_versions::Column::TenantId.eq(tenant.0))
        .filter(policy_versions::Column::PolicyId.eq(id.0))
        .order_by_asc(policy_versions::Column::Version)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(policy_versions::Column::Version.gt(after));
    }
    Ok(query.all(conn).await?.iter().map(meta_of).collect())
}

pub async fn delete(conn: &impl Announce, tenant: TenantId, id: PolicyId) -> Result<(), DbErr> {
    policy_versions::Entity::delete_many()
        .filter(policy_versions::Column::TenantId.eq(tenant.0))
        .filter(policy_versions::Column::PolicyId.eq(id.0))
        .exec(conn)
        .await?;
    policies::Entity::delete_many()
        .filter(policies::Column::TenantId.eq(tenant.0))
        .filter(policies::Column::Id.eq(id.0))
        .exec(conn)
        .await?;
    tenants::bump_policy_revision(conn, tenant).await
}

/// Stored version contents across all tenants, for key rotation (a platform maintenance task
/// run from the command line, never reachable from the API).
pub async fn version_values_page(
    conn: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<(Uuid, TenantId, String)>, DbErr> {
    let mut query = policy_versions::Entity::find()
        .order_by_asc(policy_versions::Column::Id)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(policy_versions::Column::Id.gt(after));
    }
    Ok(query
        .all(conn)
        .await?
        .into_iter()
        .map(|m| (m.id, TenantId(m.tenant_id), m.setting_values))
        .collect())
}

pub async fn replace_version_values(
    conn: &impl ConnectionTrait,
    id: Uuid,
    values: &str,
) -> Result<(), DbErr> {
    policy_versions::Entity::update_many()
        .col_expr(policy_versions::Column::SettingValues, Expr::value(values))
        .filter(policy_versions::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}
