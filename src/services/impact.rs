//! Impact preview: which devices' effective values a proposed version of a policy (a draft, a
//! rollback, an import) would change, computed with the resolution the pull uses.
//!
//! Devices are grouped by policy and device values: every device of a group resolves the same,
//! so the work is per group, not per device, and a fleet of 100,000 devices is a few queries
//! and a few resolutions. The device list is a page through the devices of changing groups.

use super::effective::{self, Freshness};
use super::policy_transfer::{self, ImportInput};
use super::{PageRequest, drafts};
use crate::db::repo::device_groups::{self, ValueGroup};
use crate::db::repo::policies as policies_repo;
use crate::db::repo::policies::decode_values;
use crate::domain::audit::Actor;
use crate::domain::policy::{PolicyNode, PolicyTree, SettingValue};
use crate::domain::resolve::{ResolvedField, Source, resolve};
use crate::domain::{DeviceId, DraftId, PolicyId, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// How one field's change reaches the devices under the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldImpact {
    pub path: String,
    pub secret: bool,
    /// Devices whose effective value or lock changes.
    pub changing: u64,
    /// Devices that keep their value because they override the field.
    pub hidden_by_override: u64,
    /// Devices that keep their value because a policy above locks the field.
    pub hidden_by_lock: u64,
    /// Devices that keep their value because a policy below sets it.
    pub hidden_by_policy_below: u64,
}

/// One field of one device, before and after. Secrets have no values: only `secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub path: String,
    pub secret: bool,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub locked_before: bool,
    pub locked_after: bool,
}

#[derive(Debug, Clone)]
pub struct DeviceImpact {
    pub device_id: DeviceId,
    pub hostname: String,
    pub policy_id: PolicyId,
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Clone)]
pub struct Impact {
    pub policy_id: PolicyId,
    /// The version the preview compares against (the current one).
    pub from_version: i32,
    /// Active devices assigned to the policy or below it.
    pub devices_in_scope: u64,
    /// Devices with at least one changing field.
    pub devices_changing: u64,
    pub fields: Vec<FieldImpact>,
    /// One page of the changing devices, in id order.
    pub devices: Vec<DeviceImpact>,
    pub next_cursor: Option<Uuid>,
}

/// Paths whose value or lock differs between the two versions of the node.
fn touched_paths(before: &PolicyNode, after: &PolicyNode) -> BTreeSet<String> {
    let (b, a) = (&before.content, &after.content);
    b.values
        .keys()
        .chain(a.values.keys())
        .chain(b.locks.iter())
        .chain(a.locks.iter())
        .filter(|p| b.values.get(*p) != a.values.get(*p) || b.locks.contains(*p) != a.locks.contains(*p))
        .cloned()
        .collect()
}

fn shown(value: Option<&SettingValue>) -> Option<Value> {
    match value {
        Some(SettingValue::Plain(v)) => Some(v.clone()),
        Some(SettingValue::Secret(_)) | None => None,
    }
}

/// The field's change for one group, when it changes.
fn field_change(
    path: &str,
    before: Option<&ResolvedField>,
    after: Option<&ResolvedField>,
) -> Option<FieldChange> {
    let value = |f: Option<&ResolvedField>| f.and_then(|f| f.value.clone());
    let locked = |f: Option<&ResolvedField>| f.is_some_and(|f| f.locked_by.is_some());
    if value(before) == value(after) && locked(before) == locked(after) {
        return None;
    }
    let secret = [before, after]
        .iter()
        .any(|f| matches!(f.and_then(|f| f.value.as_ref()), Some(SettingValue::Secret(_))));
    Some(FieldChange {
        path: path.to_owned(),
        secret,
        before: before.and_then(|f| shown(f.value.as_ref())),
        after: after.and_then(|f| shown(f.value.as_ref())),
        locked_before: locked(before),
        locked_after: locked(after),
    })
}

/// One group's changing fields; the counts of every field, changing or held and why, are added
/// to `fields`.
fn judge_group(
    before: &PolicyTree,
    after: &PolicyTree,
    node: PolicyId,
    group: &ValueGroup,
    values: &BTreeMap<String, SettingValue>,
    fields: &mut BTreeMap<String, FieldImpact>,
) -> Vec<FieldChange> {
    let policy = PolicyId(group.policy_id);
    let was = resolve(&before.chain(policy), values);
    let will = resolve(&after.chain(policy), values);
    let count = u64::try_from(group.devices).unwrap_or_default();
    let mut changes = Vec::new();
    for (path, field) in fields.iter_mut() {
        match field_change(path, was.get(path), will.get(path)) {
            Some(change) => {
                field.changing += count;
                field.secret |= change.secret;
                changes.push(change);
            }
            None => {
                let now = will.get(path);
                if now.is_some_and(|f| f.source == Some(Source::Device)) {
                    field.hidden_by_override += count;
                } else if now
                    .and_then(|f| f.locked_by.as_ref())
                    .is_some_and(|l| l.id != node)
                {
                    field.hidden_by_lock += count;
                } else if now.is_some_and(|f| matches!(&f.source, Some(Source::Policy(p)) if p.id != node)) {
                    field.hidden_by_policy_below += count;
                }
            }
        }
    }
    changes
}

/// The impact of making `node` the policy's version in `before` (the current tree).
pub async fn of_node(
    state: &AppState,
    tenant: TenantId,
    before: &PolicyTree,
    node: PolicyNode,
    page: PageRequest,
) -> Result<Impact, ApiError> {
    let current = before
        .get(node.id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("policy"))?;
    let mut after = before.clone();
    after.put(node.clone());
    let scope: Vec<PolicyId> = std::iter::once(node.id)
        .chain(before.descendants(node.id))
        .collect();
    let mut fields: BTreeMap<String, FieldImpact> = touched_paths(&current, &node)
        .into_iter()
        .map(|path| {
            let impact = FieldImpact {
                path: path.clone(),
                ..FieldImpact::default()
            };
            (path, impact)
        })
        .collect();

    let groups = device_groups::value_groups(&state.db, tenant, &scope).await?;
    let mut changing: BTreeMap<(Uuid, String), Vec<FieldChange>> = BTreeMap::new();
    let (mut in_scope, mut devices_changing) = (0u64, 0u64);
    for group in &groups {
        let values = decode_values(&group.device_values)?;
        let changes = judge_group(before, &after, node.id, group, &values, &mut fields);
        let count = u64::try_from(group.devices).unwrap_or_default();
        in_scope += count;
        if !changes.is_empty() {
            devices_changing += count;
            changing.insert((group.policy_id, group.device_values.clone()), changes);
        }
    }

    let (devices, next_cursor) = changing_devices(state, tenant, &changing, page).await?;
    Ok(Impact {
        policy_id: node.id,
        from_version: current.version,
        devices_in_scope: in_scope,
        devices_changing,
        fields: fields.into_values().collect(),
        devices,
        next_cursor,
    })
}

/// One page of the devices of changing groups, each with its group's changes.
async fn changing_devices(
    state: &AppState,
    tenant: TenantId,
    changing: &BTreeMap<(Uuid, String), Vec<FieldChange>>,
    page: PageRequest,
) -> Result<(Vec<DeviceImpact>, Option<Uuid>), ApiError> {
    let policies: Vec<PolicyId> = changing
        .keys()
        .map(|(p, _)| PolicyId(*p))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut found = Vec::new();
    let mut cursor = page.cursor.map(DeviceId);
    if policies.is_empty() {
        return Ok((found, None));
    }
    // Read in batches until the page is full: devices of a policy whose other groups do not
    // change are skipped.
    let batch = (page.fetch_limit() * 4).max(200);
    loop {
        let rows = device_groups::page_of_devices(&state.db, tenant, &policies, cursor, batch).await?;
        let exhausted = (rows.len() as u64) < batch;
        for row in rows {
            cursor = Some(DeviceId(row.id));
            if let Some(changes) = changing.get(&(row.policy_id, row.device_values)) {
                found.push(DeviceImpact {
                    device_id: DeviceId(row.id),
                    hostname: row.hostname,
                    policy_id: PolicyId(row.policy_id),
                    changes: changes.clone(),
                });
                if found.len() as u64 == page.fetch_limit() {
                    let page = page.page(found, |d| d.device_id.0);
                    return Ok((page.items, page.next_cursor));
                }
            }
        }
        if exhausted {
            let page = page.page(found, |d| d.device_id.0);
            return Ok((page.items, page.next_cursor));
        }
    }
}

/// The impact of publishing a draft now.
pub async fn of_draft(
    state: &AppState,
    tenant: TenantId,
    policy: PolicyId,
    draft: DraftId,
    page: PageRequest,
) -> Result<Impact, ApiError> {
    let draft = drafts::get(state, tenant, policy, draft).await?;
    let before = effective::current(state, tenant, Freshness::Database).await?.view;
    let (_, node, _) = drafts::propose_on(&before, policy, &draft.edit)?;
    of_node(state, tenant, &before, node, page).await
}

/// The impact of rolling the policy back to `version` now.
pub async fn of_rollback(
    state: &AppState,
    tenant: TenantId,
    policy: PolicyId,
    version: i32,
    page: PageRequest,
) -> Result<Impact, ApiError> {
    let (content, _) = policies_repo::get_version(&state.db, tenant, policy, version)
        .await?
        .ok_or_else(|| ApiError::not_found("policy version"))?;
    let before = effective::current(state, tenant, Freshness::Database).await?.view;
    let current = before
        .get(policy)
        .cloned()
        .ok_or_else(|| ApiError::not_found("policy"))?;
    let node = PolicyNode {
        content,
        version: current.version + 1,
        ..current
    };
    of_node(state, tenant, &before, node, page).await
}

/// The impact of an import, checked as its dry run checks it.
pub async fn of_import(
    state: &AppState,
    actor: &Actor,
    policy: PolicyId,
    input: ImportInput,
    page: PageRequest,
) -> Result<Impact, ApiError> {
    let outcome = policy_transfer::import(state, actor, policy, None, input).await?;
    let node = outcome
        .proposed
        .ok_or_else(|| ApiError::internal("a dry run proposes a node"))?;
    let before = effective::current(state, actor.tenant_id, Freshness::Database)
        .await?
        .view;
    of_node(state, actor.tenant_id, &before, node, page).await
}
