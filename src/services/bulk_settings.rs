//! Device values in bulk: export one device's values as a document, and apply values (Service
//! Ticket Company, billing, …) to many devices in one request, each device on its own and
//! atomically, as a dry run first if wanted. What the source product does one device at a
//! time with Export Settings and Import Settings.

use super::devices::{self, DeviceEdit, Mode};
use super::references::{self, References, warning_change};
use crate::db::repo;
use crate::domain::audit::Actor;
use crate::domain::device::Device;
use crate::domain::diff::Change;
use crate::domain::policy::SettingValue;
use crate::domain::{DeviceId, Expected, FieldError, TenantId};
use crate::error::{ApiError, Code};
use crate::state::AppState;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The most devices one request may name.
pub const MAX_DEVICES: usize = 500;

/// The change-log action of a device changed by a bulk apply.
const ACTION: &str = "device.settings_applied";

/// A device's values as a document another request can apply.
#[derive(Debug)]
pub struct Export {
    pub device: Device,
    /// The plain device values by path.
    pub set: BTreeMap<String, Value>,
    /// Secret device values: never exported (only the device itself receives a secret).
    pub omitted_secrets: Vec<String>,
}

pub async fn export(state: &AppState, tenant: TenantId, id: DeviceId) -> Result<Export, ApiError> {
    let device = repo::devices::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let mut set = BTreeMap::new();
    let mut omitted_secrets = Vec::new();
    for (path, value) in &device.device_values {
        match value {
            SettingValue::Plain(value) => {
                set.insert(path.clone(), value.clone());
            }
            SettingValue::Secret(_) => omitted_secrets.push(path.clone()),
        }
    }
    Ok(Export {
        device,
        set,
        omitted_secrets,
    })
}

/// One device a bulk apply names, with the version it must still be at (`Expected::Any`: any).
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub device_id: DeviceId,
    pub expected: Expected,
}

/// Values to apply to many devices.
pub struct BulkEdit {
    pub set: BTreeMap<String, Value>,
    pub unset: Vec<String>,
    pub targets: Vec<Target>,
    pub mode: Mode,
    pub references: References,
}

// `set` may hold secrets in clear: `Debug` hides them.
impl std::fmt::Debug for BulkEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkEdit")
            .field("set", &crate::domain::redact::RedactedValues(&self.set))
            .field("unset", &self.unset)
            .field("targets", &self.targets)
            .field("mode", &self.mode)
            .finish()
    }
}

/// What happened to one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Saved, with its change-log entry.
    Applied,
    /// A dry run: would be saved.
    WouldApply,
    /// Already has these values: nothing to store.
    Unchanged,
    /// Refused; nothing stored for this device.
    Failed,
}

/// The result for one device, in request order.
#[derive(Debug)]
pub struct DeviceResult {
    pub device_id: DeviceId,
    pub outcome: Outcome,
    /// The device's hostname and version after the request (unknown when it failed).
    pub hostname: Option<String>,
    pub version: Option<i32>,
    /// What the edit changes on this device (secrets without values).
    pub changes: Vec<Change>,
    /// Why its references were not checked against ConnectWise, if they were not.
    pub warnings: Vec<String>,
    /// Why it failed: the problem a single-device save would have answered.
    pub error: Option<ApiError>,
}

/// The request-level checks: how many devices, each once, and values that are valid on their
/// own (a `422` before any device is touched).
fn check_request(state: &AppState, tenant: TenantId, bulk: &BulkEdit) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if bulk.targets.is_empty() || bulk.targets.len() > MAX_DEVICES {
        errors.push(FieldError::new(
            "devices",
            "out_of_range",
            format!("name 1 to {MAX_DEVICES} devices per request"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, target) in bulk.targets.iter().enumerate() {
        if !seen.insert(target.device_id) {
            errors.push(FieldError::new(
                format!("devices[{i}].device_id"),
                "duplicate_device",
                "each device may be named once",
            ));
        }
    }
    if bulk.set.is_empty() && bulk.unset.is_empty() {
        errors.push(FieldError::new(
            "settings.set",
            "required",
            "set or unset at least one device value",
        ));
    }
    let edit = DeviceEdit {
        set: bulk.set.clone(),
        unset: bulk.unset.clone(),
        ..DeviceEdit::default()
    };
    if let Err(invalid) = devices::checked_values(state, tenant, &edit) {
        errors.extend(invalid.errors.into_iter().map(|e| e.nested("settings")));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Applies the values to each device in turn: each device is checked (its policies' locks, the
/// rules across fields, its kind, its references in ConnectWise) and saved on its own, so one
/// device's problem fails only that device.
pub async fn apply(state: &AppState, actor: &Actor, bulk: BulkEdit) -> Result<Vec<DeviceResult>, ApiError> {
    check_request(state, actor.tenant_id, &bulk)?;
    let mut results = Vec::with_capacity(bulk.targets.len());
    for target in &bulk.targets {
        results.push(apply_one(state, actor, &bulk, *target).await);
    }
    Ok(results)
}

async fn apply_one(state: &AppState, actor: &Actor, bulk: &BulkEdit, target: Target) -> DeviceResult {
    let id = target.device_id;
    let mut edit = DeviceEdit {
        set: bulk.set.clone(),
        unset: bulk.unset.clone(),
        ..DeviceEdit::default()
    };
    let applied = async {
        let warnings =
            references::vet_device_edit(state, actor.tenant_id, id, &edit, bulk.references).await?;
        edit.notes = warnings.iter().map(|w| warning_change(w)).collect();
        let edited = devices::edit_device(state, actor, id, target.expected, edit, bulk.mode, ACTION).await?;
        Ok::<_, ApiError>((edited, warnings))
    }
    .await;
    match applied {
        Ok((edited, warnings)) => {
            let outcome = match (edited.changes.is_empty(), bulk.mode) {
                (true, _) => Outcome::Unchanged,
                (false, Mode::Save) => Outcome::Applied,
                (false, Mode::DryRun) => Outcome::WouldApply,
            };
            let device = edited.view.device;
            DeviceResult {
                device_id: id,
                outcome,
                hostname: Some(device.hostname),
                version: Some(device.version),
                changes: edited.changes,
                warnings,
                error: None,
            }
        }
        Err(error) => {
            if error.code == Code::Internal {
                tracing::error!(device_id = %id, error = ?error.cause(), "bulk apply failed for a device");
            }
            DeviceResult {
                device_id: id,
                outcome: Outcome::Failed,
                hostname: None,
                version: None,
                changes: Vec::new(),
                warnings: Vec::new(),
                error: Some(error),
            }
        }
    }
}
