//! Where the devices of a policy stand: the devices of a policy by state, and the dashboard
//! counts (direct and with descendants) and per-version compliance of every policy.

use super::devices::{DeviceView, current_connectivity, view};
use super::effective::{self, Current, Freshness};
use super::{Page, PageRequest};
use crate::db::repo::devices::DeviceFilter;
use crate::db::repo::{device_fields, devices};
use crate::domain::device::{Connectivity, Lifecycle};
use crate::domain::sync::{FieldFlags, SyncState, sync_state};
use crate::domain::{DeviceId, PolicyId, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A filter of the devices of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    InSync,
    Pending,
    Failed,
    /// Past its next pull plus the grace period, or offline.
    Stale,
}

fn is_stale(v: &DeviceView) -> bool {
    matches!(v.connectivity, Connectivity::Stale | Connectivity::Offline)
}

/// The active devices of the tenant (or only those of `policies`) as operators see them, in
/// id order after `cursor`.
async fn views(
    state: &AppState,
    tenant: TenantId,
    tree: &effective::TenantView,
    revision: i64,
    policies: Option<Vec<PolicyId>>,
    cursor: Option<uuid::Uuid>,
) -> Result<Vec<DeviceView>, ApiError> {
    let filter = DeviceFilter {
        policy_ids: policies,
        lifecycle: Some(Lifecycle::Active),
        ..DeviceFilter::default()
    };
    let devices = devices::list(&state.db, tenant, &filter, cursor, None).await?;
    let flags = device_fields::flags(&state.db, tenant, None).await?;
    let now = state.clock.now();
    let mut views = Vec::with_capacity(devices.len());
    for device in devices {
        let current = effective::built(state, tree, &device, revision)?;
        let device_flags = flags.get(&device.id).copied().unwrap_or_default();
        views.push(view(state, &current, device, device_flags, now));
    }
    Ok(views)
}

/// The policy and its descendants: whose devices count as the policy's devices.
pub async fn subtree(
    state: &AppState,
    tenant: TenantId,
    policy: PolicyId,
) -> Result<Vec<PolicyId>, ApiError> {
    let tree = effective::current(state, tenant, Freshness::Database).await?.view;
    Ok(std::iter::once(policy).chain(tree.descendants(policy)).collect())
}

/// Devices assigned to the policy or to any of its descendants, optionally only those in
/// `wanted` state: who has not applied the current config yet, who failed, who is stale. One
/// page in id order; the state is known only once a device's config is built, so the filter
/// applies after the read.
pub async fn policy_devices(
    state: &AppState,
    tenant: TenantId,
    policy: PolicyId,
    wanted: Option<DeviceState>,
    page: PageRequest,
) -> Result<Page<DeviceView>, ApiError> {
    let Current {
        revision, view: tree, ..
    } = effective::current(state, tenant, Freshness::Database).await?;
    if tree.get(policy).is_none() {
        return Err(ApiError::not_found("policy"));
    }
    let under: Vec<PolicyId> = std::iter::once(policy).chain(tree.descendants(policy)).collect();
    let mut views = views(state, tenant, &tree, revision, Some(under), page.cursor).await?;
    views.retain(|v| match wanted {
        None => true,
        Some(DeviceState::InSync) => v.sync == SyncState::InSync,
        Some(DeviceState::Pending) => v.sync == SyncState::Pending,
        Some(DeviceState::Failed) => v.sync == SyncState::Failed,
        Some(DeviceState::Stale) => is_stale(v),
    });
    views.truncate(page.fetch_limit() as usize);
    Ok(page.page(views, |v| v.device.id.0))
}

/// Device counts of a set of devices; `in_sync + pending + failed == assigned`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyCounts {
    pub assigned: u64,
    pub in_sync: u64,
    pub pending: u64,
    pub failed: u64,
    /// Devices with at least one local override.
    pub overridden: u64,
    /// Devices overriding at least one locked field.
    pub violations: u64,
    pub stale: u64,
    /// The same devices by connectivity (`stale` above is `connectivity.stale + offline`).
    pub connectivity: ConnectivityCounts,
}

/// Devices by connectivity; the four add up to the devices counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectivityCounts {
    pub new: u64,
    pub online: u64,
    pub stale: u64,
    pub offline: u64,
}

impl PolicyCounts {
    fn add(&mut self, v: &Standing) {
        self.assigned += 1;
        self.in_sync += u64::from(v.sync == SyncState::InSync);
        self.pending += u64::from(v.sync == SyncState::Pending);
        self.failed += u64::from(v.sync == SyncState::Failed);
        self.overridden += u64::from(v.flags.overridden > 0);
        self.violations += u64::from(v.flags.violations > 0);
        self.stale += u64::from(matches!(
            v.connectivity,
            Connectivity::Stale | Connectivity::Offline
        ));
        let by = &mut self.connectivity;
        *match v.connectivity {
            Connectivity::New => &mut by.new,
            Connectivity::Online => &mut by.online,
            Connectivity::Stale => &mut by.stale,
            Connectivity::Offline => &mut by.offline,
        } += 1;
    }

    pub fn sum(&mut self, other: &PolicyCounts) {
        self.assigned += other.assigned;
        self.in_sync += other.in_sync;
        self.pending += other.pending;
        self.failed += other.failed;
        self.overridden += other.overridden;
        self.violations += other.violations;
        self.stale += other.stale;
        self.connectivity.new += other.connectivity.new;
        self.connectivity.online += other.connectivity.online;
        self.connectivity.stale += other.connectivity.stale;
        self.connectivity.offline += other.connectivity.offline;
    }
}

/// Which versions of a policy its devices (with its descendants') run.
///
/// A device runs version V of policy P when the config it was last served took its fields
/// from P at version V, and it applied that config. Every device under P counts once: on a
/// version, as `not_applied`, or as `not_served`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compliance {
    pub current_version: i32,
    /// Devices running the current version.
    pub on_current: u64,
    /// Devices running an older version.
    pub on_older: u64,
    /// Devices served a version of the policy that they have not applied (yet, or it failed).
    pub not_applied: u64,
    /// Devices that got no field of the policy yet: not pulled since being assigned, or every
    /// field the policy sets comes to them from elsewhere.
    pub not_served: u64,
    /// Devices per version they run, newest version first.
    pub versions: Vec<(i32, u64)>,
}

/// One policy on the dashboard.
#[derive(Debug, Clone)]
pub struct PolicyStatus {
    pub id: PolicyId,
    pub name: String,
    pub parent_id: Option<PolicyId>,
    /// Devices assigned to the policy itself.
    pub direct: PolicyCounts,
    /// Devices assigned to the policy or to one of its descendants.
    pub total: PolicyCounts,
    pub compliance: Compliance,
}

/// Where one active device stands, as the dashboard counts it (the same rules as its view).
struct Standing {
    id: DeviceId,
    policy_id: PolicyId,
    sync: SyncState,
    connectivity: Connectivity,
    flags: FieldFlags,
    /// It applied the config it was last served.
    applied: bool,
}

/// Every active device of the tenant, read lean: a few columns a device, and the whole device
/// only for those with a config of their own (the others share their policy's config hash).
async fn standings(
    state: &AppState,
    tenant: TenantId,
    tree: &effective::TenantView,
    revision: i64,
) -> Result<Vec<Standing>, ApiError> {
    let rows = devices::status_rows(&state.db, tenant).await?;
    let flags = device_fields::flags(&state.db, tenant, None).await?;
    let own: Vec<DeviceId> = rows.iter().filter(|r| r.own_config).map(|r| r.id).collect();
    let mut hashes: HashMap<DeviceId, String> = HashMap::with_capacity(own.len());
    for device in devices::get_many(&state.db, tenant, &own).await? {
        let built = effective::built(state, tree, &device, revision)?;
        hashes.insert(device.id, built.hash.clone());
    }
    // Devices of one policy share a config unless a rollout's wave covers some of them.
    let mut shared: HashMap<(PolicyId, u32), String> = HashMap::new();
    let now = state.clock.now();
    Ok(rows
        .into_iter()
        .map(|row| {
            let current = match hashes.get(&row.id) {
                Some(hash) => hash.as_str(),
                None => {
                    let mask = tree.mask_of(row.id, row.policy_id);
                    shared
                        .entry((row.policy_id, mask))
                        .or_insert_with(|| effective::shared_hash(&tree.tree(mask), row.policy_id))
                }
            };
            let flags = flags.get(&row.id).copied().unwrap_or_default();
            Standing {
                id: row.id,
                policy_id: row.policy_id,
                sync: sync_state(current, row.applied_hash.as_deref(), flags),
                connectivity: current_connectivity(state, row.id, row.last_seen_at, row.next_pull_after, now),
                flags,
                applied: row.served_hash.is_some() && row.applied_hash == row.served_hash,
            }
        })
        .collect())
}

/// Every policy of the tenant with its counts and compliance, by name.
pub async fn dashboard(state: &AppState, tenant: TenantId) -> Result<Vec<PolicyStatus>, ApiError> {
    let Current {
        revision, view: tree, ..
    } = effective::current(state, tenant, Freshness::Database).await?;
    let views = standings(state, tenant, &tree, revision).await?;
    let served: HashMap<(DeviceId, PolicyId), i32> = device_fields::served_versions(&state.db, tenant)
        .await?
        .into_iter()
        .map(|(device, policy, version)| ((device, policy), version))
        .collect();
    let mut direct: HashMap<PolicyId, PolicyCounts> = HashMap::new();
    for v in &views {
        direct.entry(v.policy_id).or_default().add(v);
    }
    let mut summary: Vec<PolicyStatus> = tree
        .nodes()
        .map(|node| {
            let mut total = PolicyCounts::default();
            let mut compliance = Compliance {
                current_version: node.version,
                ..Compliance::default()
            };
            let mut per_version: BTreeMap<i32, u64> = BTreeMap::new();
            let under: HashSet<PolicyId> = std::iter::once(node.id)
                .chain(tree.descendants(node.id))
                .collect();
            for policy in &under {
                total.sum(&direct.get(policy).copied().unwrap_or_default());
            }
            for v in views.iter().filter(|v| under.contains(&v.policy_id)) {
                // A field that failed means the device does not fully run what it was served.
                let applied = v.applied && v.sync != SyncState::Failed;
                match served.get(&(v.id, node.id)) {
                    None => compliance.not_served += 1,
                    Some(_) if !applied => compliance.not_applied += 1,
                    Some(&version) => {
                        *per_version.entry(version).or_default() += 1;
                        if version >= node.version {
                            compliance.on_current += 1;
                        } else {
                            compliance.on_older += 1;
                        }
                    }
                }
            }
            compliance.versions = per_version.into_iter().rev().collect();
            PolicyStatus {
                id: node.id,
                name: node.content.name.clone(),
                parent_id: node.parent_id,
                direct: direct.get(&node.id).copied().unwrap_or_default(),
                total,
                compliance,
            }
        })
        .collect();
    summary.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(summary)
}
