//! The field audit as operators query it: every field of a device, its history, who inherits
//! or overrides a field, where the devices of a policy stand, and the dashboard counts.

use super::devices::{DeviceView, view};
use super::effective;
use super::{Page, PageRequest};
use crate::db::repo::devices::DeviceFilter;
use crate::db::repo::{device_fields, devices};
use crate::domain::device::{Connectivity, FieldRecord, Lifecycle};
use crate::domain::policy::SettingValue;
use crate::domain::resolve::{Source, resolve};
use crate::domain::{DeviceId, PolicyId, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use chrono::Utc;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// One field of a device, as operators see it.
#[derive(Debug, Clone)]
pub struct FieldView {
    pub path: String,
    /// The effective value, secrets masked.
    pub value: Option<Value>,
    pub source: Option<Source>,
    pub locked: bool,
    pub record: Option<FieldRecord>,
}

/// Every field of a device: effective value, provenance, lock, and what the device reported.
pub async fn fields(
    state: &AppState,
    tenant: TenantId,
    id: DeviceId,
) -> Result<(DeviceView, Vec<FieldView>), ApiError> {
    let device = devices::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let (revision, _, tree) = effective::current_tree(state, tenant).await?;
    let resolution = resolve(&tree.chain(device.policy_id), &device.device_values);
    let current = effective::built(state, &tree, &device, revision)?;
    let mut records = device_fields::load(&state.db, tenant, id).await?;
    let mut views: Vec<FieldView> = resolution
        .into_iter()
        .map(|(path, field)| FieldView {
            value: field.value.as_ref().map(SettingValue::masked),
            source: field.source,
            locked: field.locked_by.is_some(),
            record: records.remove(&path),
            path,
        })
        .collect();
    views.extend(records.into_iter().map(|(path, record)| FieldView {
        path,
        value: None,
        source: None,
        locked: false,
        record: Some(record),
    }));
    views.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((view(state, &current, device, Utc::now()), views))
}

pub async fn history(
    state: &AppState,
    tenant: TenantId,
    id: DeviceId,
    path: Option<&str>,
    page: PageRequest,
) -> Result<Page<device_fields::HistoryEntry>, ApiError> {
    devices::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let rows = device_fields::history(&state.db, tenant, id, path, page.cursor, page.fetch_limit()).await?;
    Ok(page.page(rows, |e| e.id))
}

/// Which devices inherit field `path` (optionally from one policy, at one version).
pub async fn inherited(
    state: &AppState,
    tenant: TenantId,
    path: &str,
    policy: Option<PolicyId>,
    version: Option<i32>,
    page: PageRequest,
) -> Result<Page<FieldRecord>, ApiError> {
    let rows = device_fields::inherited(
        &state.db,
        tenant,
        path,
        policy,
        version,
        page.cursor,
        page.fetch_limit(),
    )
    .await?;
    Ok(page.page(rows, |r| r.device_id.0))
}

/// Devices overriding field `path` (or any field) locally, violations flagged.
pub async fn overrides(
    state: &AppState,
    tenant: TenantId,
    path: Option<&str>,
) -> Result<Vec<FieldRecord>, ApiError> {
    Ok(device_fields::in_state(&state.db, tenant, "overridden", path).await?)
}

/// Where a device of a policy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    InSync,
    Pending,
    Failed,
    Stale,
}

/// Devices assigned to the policy or to any of its descendants, optionally only those in
/// `wanted` state: who has not applied the current config yet, who failed, who is stale.
pub async fn policy_devices(
    state: &AppState,
    tenant: TenantId,
    policy: PolicyId,
    wanted: Option<SyncState>,
) -> Result<Vec<DeviceView>, ApiError> {
    let (revision, _, tree) = effective::current_tree(state, tenant).await?;
    if tree.get(policy).is_none() {
        return Err(ApiError::not_found("policy"));
    }
    let under: Vec<PolicyId> = std::iter::once(policy).chain(tree.descendants(policy)).collect();
    let filter = DeviceFilter {
        policy_ids: Some(under),
        lifecycle: Some(Lifecycle::Active),
        ..DeviceFilter::default()
    };
    let now = Utc::now();
    let mut views = Vec::new();
    for device in devices::list(&state.db, tenant, &filter, None, None).await? {
        let current = effective::built(state, &tree, &device, revision)?;
        let v = view(state, &current, device, now);
        let wanted_here = match wanted {
            None => true,
            Some(SyncState::InSync) => v.in_sync,
            Some(SyncState::Pending) => !v.in_sync,
            Some(SyncState::Failed) => v.failed,
            Some(SyncState::Stale) => matches!(v.connectivity, Connectivity::Stale | Connectivity::Offline),
        };
        if wanted_here {
            views.push(v);
        }
    }
    Ok(views)
}

/// Counts per policy for dashboards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyCounts {
    pub assigned: u64,
    pub in_sync: u64,
    pub pending: u64,
    pub overridden: u64,
    pub failed: u64,
    pub violations: u64,
    pub stale: u64,
}

pub async fn dashboard(
    state: &AppState,
    tenant: TenantId,
) -> Result<Vec<(PolicyId, String, PolicyCounts)>, ApiError> {
    let (revision, _, tree) = effective::current_tree(state, tenant).await?;
    let filter = DeviceFilter {
        lifecycle: Some(Lifecycle::Active),
        ..DeviceFilter::default()
    };
    let devices = devices::list(&state.db, tenant, &filter, None, None).await?;
    let overridden = device_fields::in_state(&state.db, tenant, "overridden", None).await?;
    let failed_fields = device_fields::in_state(&state.db, tenant, "failed", None).await?;
    let overriding: HashSet<DeviceId> = overridden.iter().map(|r| r.device_id).collect();
    let violating: HashSet<DeviceId> = overridden
        .iter()
        .filter(|r| r.violation)
        .map(|r| r.device_id)
        .collect();
    let failing: HashSet<DeviceId> = failed_fields.iter().map(|r| r.device_id).collect();
    let now = Utc::now();
    let mut counts: BTreeMap<PolicyId, PolicyCounts> = BTreeMap::new();
    for device in devices {
        let current = effective::built(state, &tree, &device, revision)?;
        let v = view(state, &current, device, now);
        let c = counts.entry(v.device.policy_id).or_default();
        let id = v.device.id;
        c.assigned += 1;
        c.in_sync += u64::from(v.in_sync);
        c.pending += u64::from(!v.in_sync);
        c.overridden += u64::from(overriding.contains(&id));
        c.failed += u64::from(v.failed || failing.contains(&id));
        c.violations += u64::from(violating.contains(&id));
        c.stale += u64::from(matches!(
            v.connectivity,
            Connectivity::Stale | Connectivity::Offline
        ));
    }
    let mut summary: Vec<(PolicyId, String, PolicyCounts)> = tree
        .nodes()
        .map(|p| {
            (
                p.id,
                p.content.name.clone(),
                counts.remove(&p.id).unwrap_or_default(),
            )
        })
        .collect();
    summary.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(summary)
}
