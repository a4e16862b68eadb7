//! Devices as operators manage them: views and lists, assignment and device values, adopting
//! and reasserting fields, credential rotation and decommissioning.

use super::effective::{self, Built, Freshness};
use super::{Page, PageRequest, audit, written};
use crate::auth::token;
use crate::db;
use crate::db::repo::devices::DeviceFilter;
use crate::db::repo::{device_fields, device_reregistrations, devices};
use crate::domain::audit::{Actor, NewEntry};
use crate::domain::catalog::{Catalog, Scope};
use crate::domain::device::{Connectivity, Device, Lifecycle, ReportedKind, Reregistration, connectivity};
use crate::domain::diff::{Change, ChangeKind, diff_values};
use crate::domain::policy::{PolicyTree, SecretHandle, SettingValue};
use crate::domain::redact::RedactedValues;
use crate::domain::resolve::{masked_values, resolve};
use crate::domain::sync::{FieldFlags, SyncState, sync_state};
use crate::domain::validation::Validator;
use crate::domain::{DeviceId, Expected, FieldError, PolicyId, TenantId};
use crate::domain::{billing, binding};
use crate::error::{ApiError, Code};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

pub const CREDENTIAL_PREFIX: &str = "gmp_dc_";

pub(super) fn device_entry(action: &'static str, id: DeviceId, changes: Vec<Change>) -> NewEntry {
    NewEntry {
        action,
        target_type: "device",
        target_id: id.0,
        changes,
    }
}

// ---- operator views ---------------------------------------------------------------------------

/// A device as operators see it: its record plus where it stands against its current config.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub device: Device,
    pub connectivity: Connectivity,
    /// The hash of the config the device should run now.
    pub current_hash: String,
    /// Where it stands against the current config (the rule of `domain::sync`).
    pub sync: SyncState,
    /// What its field table says: overridden, failed and violating fields.
    pub flags: FieldFlags,
    /// A re-registration of this hardware id waiting for an operator.
    pub reregistration: Option<Reregistration>,
}

/// A device's connectivity now: from its stored check-in times, or from the check-in this
/// replica has not written yet.
pub(super) fn current_connectivity(
    state: &AppState,
    id: DeviceId,
    last_seen: Option<DateTime<Utc>>,
    next_pull: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Connectivity {
    let (last_seen, next_pull) = match state.checkins.pending(id) {
        Some((seen, next)) => (Some(seen), Some(next)),
        None => (last_seen, next_pull),
    };
    connectivity(last_seen, next_pull, now, state.config.thresholds())
}

pub(super) fn view(
    state: &AppState,
    current: &Built,
    device: Device,
    flags: FieldFlags,
    now: DateTime<Utc>,
) -> DeviceView {
    let current_hash = current.hash.clone();
    DeviceView {
        connectivity: current_connectivity(
            state,
            device.id,
            device.last_seen_at,
            device.next_pull_after,
            now,
        ),
        sync: sync_state(&current_hash, device.applied_hash.as_deref(), flags),
        flags,
        current_hash,
        device,
        reregistration: None,
    }
}

pub async fn list(
    state: &AppState,
    tenant: TenantId,
    filter: DeviceFilter,
    page: PageRequest,
) -> Result<Page<DeviceView>, ApiError> {
    let rows = devices::list(&state.db, tenant, &filter, page.cursor, Some(page.fetch_limit())).await?;
    let policies = effective::current(state, tenant, Freshness::Database).await?;
    let now = state.clock.now();
    let page = page.page(rows, |d| d.id.0);
    let ids: Vec<DeviceId> = page.items.iter().map(|d| d.id).collect();
    let mut waiting: BTreeMap<DeviceId, Reregistration> =
        device_reregistrations::for_devices(&state.db, tenant, &ids)
            .await?
            .into_iter()
            .map(|r| (r.device_id, r))
            .collect();
    let flags = device_fields::flags(&state.db, tenant, Some(&ids)).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for device in page.items {
        let current = effective::built(state, &policies.view, &device, policies.revision)?;
        let device_flags = flags.get(&device.id).copied().unwrap_or_default();
        items.push(DeviceView {
            reregistration: waiting.remove(&device.id),
            ..view(state, &current, device, device_flags, now)
        });
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

/// Candidates read per query by [`list_matching`].
const SCAN_CHUNK: u64 = 500;

/// One page of the devices of `filter` whose view also passes `keep`: what SQL cannot decide,
/// such as the sync state against the current config or connectivity with this replica's
/// unwritten check-ins. Candidates are read in chunks in id order until the page is full, so a
/// selective filter costs reads, never memory.
pub async fn list_matching(
    state: &AppState,
    tenant: TenantId,
    filter: DeviceFilter,
    page: PageRequest,
    keep: impl Fn(&DeviceView) -> bool,
) -> Result<Page<DeviceView>, ApiError> {
    // A page's worth first (most filters keep most devices), then larger chunks.
    let mut chunk = PageRequest {
        cursor: page.cursor,
        limit: page.fetch_limit(),
    };
    let mut found = Vec::new();
    loop {
        let candidates = list(state, tenant, filter.clone(), chunk).await?;
        found.extend(candidates.items.into_iter().filter(|v| keep(v)));
        match candidates.next_cursor {
            Some(next) if found.len() as u64 <= page.limit => {
                chunk.cursor = Some(next);
                chunk.limit = SCAN_CHUNK;
            }
            _ => break,
        }
    }
    Ok(page.page(found, |v| v.device.id.0))
}

pub async fn get(state: &AppState, tenant: TenantId, id: DeviceId) -> Result<DeviceView, ApiError> {
    let device = devices::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let policies = effective::current(state, tenant, Freshness::Database).await?;
    let current = effective::built(state, &policies.view, &device, policies.revision)?;
    let reregistration = device_reregistrations::for_device(&state.db, tenant, id).await?;
    let flags = device_fields::flags(&state.db, tenant, Some(&[id])).await?;
    let flags = flags.get(&id).copied().unwrap_or_default();
    Ok(DeviceView {
        reregistration,
        ..view(state, &current, device, flags, state.clock.now())
    })
}

/// Operator changes to a device: its policy and its own values.
#[derive(Default)]
pub struct DeviceEdit {
    pub policy_id: Option<PolicyId>,
    pub set: BTreeMap<String, Value>,
    pub unset: Vec<String>,
    /// Recorded with the edit's change-log entry (the reference check's warnings).
    pub notes: Vec<Change>,
}

// `set` holds secrets in clear: `Debug` hides them.
impl std::fmt::Debug for DeviceEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceEdit")
            .field("policy_id", &self.policy_id)
            .field("set", &RedactedValues(&self.set))
            .field("unset", &self.unset)
            .finish()
    }
}

/// Checks and seals device values: any catalogue field, device-scoped or an override of a
/// managed one.
fn parse_device_values(
    state: &AppState,
    tenant: TenantId,
    raw: &BTreeMap<String, Value>,
    v: &mut Validator,
) -> BTreeMap<String, SettingValue> {
    let catalog = Catalog::get();
    let mut values = BTreeMap::new();
    for (path, raw_value) in raw {
        let field = format!("set.{path}");
        let Some(def) = catalog.field(path) else {
            v.push(catalog.unknown(field, path));
            continue;
        };
        let Some(valid) = v.check(catalog.validate(&field, def, raw_value)) else {
            continue;
        };
        let value = if def.secret {
            SettingValue::Secret(SecretHandle {
                id: Uuid::now_v7(),
                changed_at: state.clock.now(),
                sealed: state
                    .keyring
                    .seal(tenant, path, valid.as_str().unwrap_or_default()),
            })
        } else {
            SettingValue::Plain(valid)
        };
        values.insert(path.clone(), value);
    }
    values
}

/// The checks every new device state passes: the policy exists, no device value overrides a
/// locked field, and the effective config keeps the cross-field rules.
fn check_device(tree: &PolicyTree, device: &Device) -> Result<(), ApiError> {
    if tree.get(device.policy_id).is_none() {
        return Err(ApiError::field(FieldError::new(
            "policy_id",
            "unknown_policy",
            "no such policy",
        )));
    }
    let chain = tree.chain(device.policy_id);
    for path in device.device_values.keys() {
        if let Some(holder) = chain.iter().find(|n| n.content.locks.contains(path)) {
            let message = format!(
                "`{path}` is locked by policy “{}” (version {}); devices cannot override it",
                holder.content.name, holder.version
            );
            let mut error = ApiError::new(Code::Conflict, message.clone());
            error.errors.push(FieldError::new(
                format!("set.{path}"),
                "locked_by_ancestor",
                message,
            ));
            return Err(error);
        }
    }
    let resolution = resolve(&chain, &device.device_values);
    let mut errors = Catalog::get().check_consistency(&masked_values(&resolution));
    errors.extend(binding::check_one_source(&resolution));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Whether an edit is stored or only tried (a dry run checks everything and stores nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Save,
    DryRun,
}

/// A device after an edit (as it is, for a dry run or an edit that changed nothing) and what
/// the edit changes.
#[derive(Debug)]
pub struct Edited {
    pub view: DeviceView,
    pub changes: Vec<Change>,
}

/// How an edit is recorded: its change-log action, lines logged with it (e.g. the warnings of
/// a reference check), and whether it is stored at all.
struct Recording {
    action: &'static str,
    notes: Vec<Change>,
    mode: Mode,
}

impl Recording {
    fn saved(action: &'static str) -> Self {
        Self {
            action,
            notes: Vec::new(),
            mode: Mode::Save,
        }
    }
}

/// Locks the device, applies `change`, checks and stores the result with its audit entry. A
/// change that changes nothing stores nothing; neither does a dry run.
async fn change_device(
    state: &AppState,
    actor: &Actor,
    id: DeviceId,
    expected: Expected,
    recording: Recording,
    change: impl FnOnce(&mut Device) -> Result<(), ApiError>,
) -> Result<Edited, ApiError> {
    let tenant = actor.tenant_id;
    let txn = db::begin_write(&state.db).await?;
    let before = written(
        devices::get_for_update(&txn, tenant, id, expected).await?,
        "device",
    )?;
    let mut after = before.clone();
    change(&mut after)?;
    let moved = binding::check_reentered(&before.device_values, &after.device_values, "set.");
    if !moved.is_empty() {
        return Err(ApiError::validation(moved));
    }
    let vault_billing =
        billing::vault_billing_errors(after.kind, &before.device_values, &after.device_values, "set.");
    if !vault_billing.is_empty() {
        return Err(ApiError::validation(vault_billing));
    }
    let tree = effective::tree_for_write(&txn, tenant).await?;
    check_device(&tree, &after)?;
    let mut changes = diff_values(&before.device_values, &after.device_values);
    if before.policy_id != after.policy_id {
        changes.insert(
            0,
            Change::of(
                "policy_id",
                Some(before.policy_id.to_string().into()),
                Some(after.policy_id.to_string().into()),
            ),
        );
    }
    for path in after.reassert.difference(&before.reassert) {
        changes.push(Change::of(
            format!("reassert.{path}"),
            Some(Value::Bool(false)),
            Some(Value::Bool(true)),
        ));
    }
    if changes.is_empty() || recording.mode == Mode::DryRun {
        drop(txn);
        let view = get(state, tenant, id).await?;
        return Ok(Edited { view, changes });
    }
    devices::save_operator_state(&txn, &after, state.clock.now()).await?;
    let mut logged = changes.clone();
    logged.extend(recording.notes);
    audit::record_at(
        &txn,
        actor,
        tenant,
        device_entry(recording.action, id, logged),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    let view = get(state, tenant, id).await?;
    Ok(Edited { view, changes })
}

pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: DeviceId,
    expected: Expected,
    edit: DeviceEdit,
) -> Result<DeviceView, ApiError> {
    Ok(
        edit_device(state, actor, id, expected, edit, Mode::Save, "device.updated")
            .await?
            .view,
    )
}

/// Checks the paths and values of an edit on its own (a `422` naming every problem); returns
/// the values to set, secrets sealed.
pub fn checked_values(
    state: &AppState,
    tenant: TenantId,
    edit: &DeviceEdit,
) -> Result<BTreeMap<String, SettingValue>, ApiError> {
    let mut v = Validator::new();
    let set = parse_device_values(state, tenant, &edit.set, &mut v);
    for (i, path) in edit.unset.iter().enumerate() {
        if Catalog::get().field(path).is_none() {
            v.push(Catalog::get().unknown(format!("unset[{i}]"), path));
        } else if edit.set.contains_key(path) {
            v.push(FieldError::new(
                format!("unset[{i}]"),
                "contradictory",
                format!("`{path}` is both set and unset"),
            ));
        }
    }
    v.finish().map_err(ApiError::validation)?;
    Ok(set)
}

/// [`update`] as a save or a dry run, logged as `action`.
pub async fn edit_device(
    state: &AppState,
    actor: &Actor,
    id: DeviceId,
    expected: Expected,
    edit: DeviceEdit,
    mode: Mode,
    action: &'static str,
) -> Result<Edited, ApiError> {
    let set = checked_values(state, actor.tenant_id, &edit)?;
    let notes = edit.notes;
    change_device(
        state,
        actor,
        id,
        expected,
        Recording { action, notes, mode },
        move |device| {
            if let Some(policy) = edit.policy_id {
                device.policy_id = policy;
            }
            device.device_values.extend(set);
            device.device_values.retain(|path, _| !edit.unset.contains(path));
            Ok(())
        },
    )
    .await
}

/// Checks that the device exists in the tenant (a `404` first, whatever the field) and that
/// `path` is a setting; returns the setting.
async fn device_and_field(
    state: &AppState,
    tenant: TenantId,
    id: DeviceId,
    path: &str,
) -> Result<&'static crate::domain::catalog::FieldDef, ApiError> {
    devices::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let catalog = Catalog::get();
    catalog
        .field(path)
        .ok_or_else(|| ApiError::field(catalog.unknown("field", path)))
}

/// Makes a device's reported local override its server-side device value.
pub async fn adopt(
    state: &AppState,
    actor: &Actor,
    id: DeviceId,
    expected: Expected,
    path: &str,
) -> Result<DeviceView, ApiError> {
    let tenant = actor.tenant_id;
    let def = device_and_field(state, tenant, id, path).await?;
    let records = device_fields::load(&state.db, tenant, id).await?;
    let local = records
        .get(path)
        .and_then(|r| r.reported.as_ref())
        .filter(|r| r.state == ReportedKind::Overridden)
        .and_then(|r| r.local_value.clone());
    if def.secret {
        return Err(ApiError::conflict(
            "a local secret is known only by its fingerprint; set it as a device value instead",
        ));
    }
    let local = local.ok_or_else(|| {
        ApiError::conflict(format!("the device does not report a local override of `{path}`"))
    })?;
    let path = path.to_owned();
    change_device(
        state,
        actor,
        id,
        expected,
        Recording::saved("device.override_adopted"),
        move |device| {
            device
                .device_values
                .insert(path.clone(), SettingValue::Plain(local));
            device.reassert.remove(&path);
            Ok(())
        },
    )
    .await
    .map(|edited| edited.view)
}

/// Tells the device (in its next config) to drop its local value of `path`; the policy's value
/// applies again. A device value of the field is removed too.
pub async fn reassert(
    state: &AppState,
    actor: &Actor,
    id: DeviceId,
    expected: Expected,
    path: &str,
) -> Result<DeviceView, ApiError> {
    let def = device_and_field(state, actor.tenant_id, id, path).await?;
    if def.scope == Scope::Device {
        return Err(ApiError::field(FieldError::new(
            "field",
            "device_scoped_setting",
            "device-scoped fields have no policy value to reassert",
        )));
    }
    let path = path.to_owned();
    change_device(
        state,
        actor,
        id,
        expected,
        Recording::saved("device.policy_reasserted"),
        move |device| {
            device.device_values.remove(&path);
            device.reassert.insert(path);
            Ok(())
        },
    )
    .await
    .map(|edited| edited.view)
}

/// A new credential; the old one stops working at once.
pub async fn rotate_credential(
    state: &AppState,
    actor: &Actor,
    id: DeviceId,
) -> Result<(DeviceView, String), ApiError> {
    let tenant = actor.tenant_id;
    let credential = token::generate(CREDENTIAL_PREFIX);
    let txn = db::begin_write(&state.db).await?;
    let device = written(
        devices::get_for_update(&txn, tenant, id, Expected::Any).await?,
        "device",
    )?;
    if device.lifecycle == Lifecycle::Decommissioned {
        return Err(ApiError::conflict(
            "the device is decommissioned; it must register again",
        ));
    }
    devices::replace_credential(
        &txn,
        &device,
        &token::digest(&credential),
        Lifecycle::Active,
        state.clock.now(),
    )
    .await?;
    let changes = vec![Change::secret("credential", ChangeKind::Changed)];
    audit::record_at(
        &txn,
        actor,
        tenant,
        device_entry("device.credential_rotated", id, changes),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    Ok((get(state, tenant, id).await?, credential))
}

/// Retires a device: its credential stops working; it can come back only by registering.
pub async fn decommission(state: &AppState, actor: &Actor, id: DeviceId) -> Result<DeviceView, ApiError> {
    let tenant = actor.tenant_id;
    let txn = db::begin_write(&state.db).await?;
    let device = written(
        devices::get_for_update(&txn, tenant, id, Expected::Any).await?,
        "device",
    )?;
    if device.lifecycle == Lifecycle::Active {
        // A fresh random credential nobody knows, so even a leaked old one is useless.
        let unusable = token::digest(&token::generate(CREDENTIAL_PREFIX));
        devices::replace_credential(
            &txn,
            &device,
            &unusable,
            Lifecycle::Decommissioned,
            state.clock.now(),
        )
        .await?;
        let changes = vec![Change::of(
            "status",
            Some("active".into()),
            Some("decommissioned".into()),
        )];
        audit::record_at(
            &txn,
            actor,
            tenant,
            device_entry("device.decommissioned", id, changes),
            state.clock.now(),
        )
        .await?;
    }
    txn.commit().await?;
    get(state, tenant, id).await
}
