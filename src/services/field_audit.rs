//! The field audit as operators query it: every field of a device (now or at a past moment),
//! its history, and who inherits or overrides a field.

use super::devices::{DeviceView, view};
use super::effective::{self, Current, Freshness};
use super::{Page, PageRequest};
use crate::db::repo::device_fields::InheritedQuery;
use crate::db::repo::{device_fields, devices, policies};
use crate::domain::catalog::Catalog;
use crate::domain::device::{Device, FieldRecord, ServedSource, value_fingerprint};
use crate::domain::field_audit::{HistoryEntry, InheritedState, OverrideKind};
use crate::domain::policy::{PolicyContent, PolicyRef, SettingValue};
use crate::domain::resolve::{Source, resolve};
use crate::domain::sync::FieldFlags;
use crate::domain::{DeviceId, PolicyId, TenantId};
use crate::error::{ApiError, Code};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

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

/// A field-audit record with the hostname of its device, for lists across devices.
#[derive(Debug, Clone)]
pub struct NamedRecord {
    pub record: FieldRecord,
    pub hostname: String,
}

async fn device(state: &AppState, tenant: TenantId, id: DeviceId) -> Result<Device, ApiError> {
    devices::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))
}

/// The device as it stands now, with the flags of its field table.
fn current_view(
    state: &AppState,
    tenant: &Current,
    device: Device,
    records: &BTreeMap<String, FieldRecord>,
) -> Result<DeviceView, ApiError> {
    let current = effective::built(state, &tenant.view, &device, tenant.revision)?;
    let mut flags = FieldFlags::default();
    for record in records.values() {
        flags.count(record.reported.as_ref().map(|r| r.state), record.violation);
    }
    Ok(view(state, &current, device, flags, state.clock.now()))
}

/// Every field of a device: effective value, provenance, lock, and what the device reported.
pub async fn fields(
    state: &AppState,
    tenant: TenantId,
    id: DeviceId,
) -> Result<(DeviceView, Vec<FieldView>), ApiError> {
    let device = device(state, tenant, id).await?;
    let policies = effective::current(state, tenant, Freshness::Database).await?;
    let resolution = resolve(&policies.view.chain(device.policy_id), &device.device_values);
    let mut records = device_fields::load(&state.db, tenant, id).await?;
    let current = current_view(state, &policies, device, &records)?;
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
    Ok((current, views))
}

/// What the device was served and reported at `at`, each field with the policy and version
/// it came from and its value where that is still known (from the policy version; a device
/// value only while the device still holds the same one). Folded from the field history.
pub async fn fields_at(
    state: &AppState,
    tenant: TenantId,
    id: DeviceId,
    at: DateTime<Utc>,
) -> Result<(DeviceView, Vec<FieldView>), ApiError> {
    let device = device(state, tenant, id).await?;
    if at < device.registered_at {
        return Err(ApiError::new(
            Code::NotFound,
            format!(
                "device {} did not exist at {}: it was registered at {}",
                id.0,
                at.to_rfc3339(),
                device.registered_at.to_rfc3339()
            ),
        ));
    }
    let history = device_fields::history_until(&state.db, tenant, id, at).await?;
    let then = crate::domain::field_audit::fields_at(history);
    let mut versions: HashMap<(Uuid, i32), Option<PolicyContent>> = HashMap::new();
    let mut views = Vec::with_capacity(then.len());
    for (path, field) in then {
        let served = &field.record.served;
        let (value, source) = match (served.source, served.policy_id, served.policy_version) {
            (ServedSource::Policy, Some(policy), Some(version)) => {
                let content = match versions.get(&(policy, version)) {
                    Some(content) => content.clone(),
                    None => {
                        let content = policies::get_version(&state.db, tenant, PolicyId(policy), version)
                            .await?
                            .map(|(content, _)| content);
                        versions.insert((policy, version), content.clone());
                        content
                    }
                };
                let value = content
                    .as_ref()
                    .and_then(|c| c.values.get(&path))
                    .filter(|v| served.fingerprint.as_deref() == Some(value_fingerprint(v).as_str()))
                    .map(SettingValue::masked);
                let name = content.map_or_else(|| "(deleted policy)".to_owned(), |c| c.name);
                let reference = PolicyRef {
                    id: PolicyId(policy),
                    name,
                    version,
                };
                (value, Some(Source::Policy(reference)))
            }
            (ServedSource::Device, _, _) => {
                let value = device
                    .device_values
                    .get(&path)
                    .filter(|v| served.fingerprint.as_deref() == Some(value_fingerprint(v).as_str()))
                    .map(SettingValue::masked);
                (value, Some(Source::Device))
            }
            _ => (None, None),
        };
        views.push(FieldView {
            path,
            value,
            source,
            locked: field.locked.unwrap_or(false),
            record: Some(field.record),
        });
    }
    let records = device_fields::load(&state.db, tenant, id).await?;
    let policies = effective::current(state, tenant, Freshness::Database).await?;
    Ok((current_view(state, &policies, device, &records)?, views))
}

pub async fn history(
    state: &AppState,
    tenant: TenantId,
    id: DeviceId,
    path: Option<&str>,
    page: PageRequest,
) -> Result<Page<HistoryEntry>, ApiError> {
    device(state, tenant, id).await?;
    let rows = device_fields::history(&state.db, tenant, id, path, page.cursor, page.fetch_limit()).await?;
    Ok(page.page(rows, |e| e.id))
}

/// `422` for a field path that is not a setting (a typo would otherwise answer an empty list).
fn known_field(request_field: &str, path: &str) -> Result<(), ApiError> {
    let catalog = Catalog::get();
    match catalog.field(path) {
        Some(_) => Ok(()),
        None => Err(ApiError::field(catalog.unknown(request_field, path))),
    }
}

/// Adds each record's device hostname.
async fn named(
    state: &AppState,
    tenant: TenantId,
    records: Vec<FieldRecord>,
) -> Result<Vec<NamedRecord>, ApiError> {
    let ids: Vec<DeviceId> = records.iter().map(|r| r.device_id).collect();
    let hostnames = devices::hostnames(&state.db, tenant, &ids).await?;
    Ok(records
        .into_iter()
        .map(|record| NamedRecord {
            hostname: hostnames.get(&record.device_id).cloned().unwrap_or_default(),
            record,
        })
        .collect())
}

/// Which devices inherit field `path` (optionally from one policy, at one version, in one
/// state): served it from a policy and reported `inherited`, or not reported it yet.
pub async fn inherited(
    state: &AppState,
    tenant: TenantId,
    path: &str,
    policy: Option<PolicyId>,
    version: Option<i32>,
    wanted: Option<InheritedState>,
    page: PageRequest,
) -> Result<Page<NamedRecord>, ApiError> {
    known_field("field", path)?;
    let query = InheritedQuery {
        path,
        policy,
        version,
        state: wanted,
    };
    let rows = device_fields::inherited(&state.db, tenant, query, page.cursor, page.fetch_limit()).await?;
    let page = page.page(rows, |r| r.device_id.0);
    Ok(Page {
        items: named(state, tenant, page.items).await?,
        next_cursor: page.next_cursor,
    })
}

/// One page of overrides; the cursor names a (device, field) pair.
#[derive(Debug)]
pub struct OverridesPage {
    pub items: Vec<NamedRecord>,
    pub next_cursor: Option<String>,
}

/// The cursor of the override after which the next page starts.
fn override_cursor(record: &FieldRecord) -> String {
    format!("{}.{}", record.device_id.0, record.path)
}

fn parse_override_cursor(cursor: &str) -> Result<(DeviceId, &str), ApiError> {
    let invalid = || {
        ApiError::new(
            Code::InvalidQuery,
            format!("the query parameter `cursor` must be a `next_cursor` this list gave, not `{cursor}`"),
        )
    };
    let (device, path) = cursor.split_at_checked(36).ok_or_else(invalid)?;
    let device = Uuid::parse_str(device).map_err(|_| invalid())?;
    let path = path
        .strip_prefix('.')
        .filter(|p| !p.is_empty())
        .ok_or_else(invalid)?;
    Ok((DeviceId(device), path))
}

/// Devices overriding field `path` (or any field) locally, violations flagged; optionally
/// only allowed overrides or only violations.
pub async fn overrides(
    state: &AppState,
    tenant: TenantId,
    path: Option<&str>,
    kind: Option<OverrideKind>,
    cursor: Option<&str>,
    limit: u64,
) -> Result<OverridesPage, ApiError> {
    if let Some(path) = path {
        known_field("field", path)?;
    }
    let after = cursor.map(parse_override_cursor).transpose()?;
    let mut rows = device_fields::overrides(&state.db, tenant, path, kind, after, limit + 1).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(override_cursor)
    } else {
        None
    };
    Ok(OverridesPage {
        items: named(state, tenant, rows).await?,
        next_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_cursor_round_trips_and_rejects_junk() {
        let id = Uuid::now_v7();
        let cursor = format!("{id}.connectwise.site");
        assert_eq!(
            parse_override_cursor(&cursor).unwrap(),
            (DeviceId(id), "connectwise.site")
        );
        for junk in [
            "",
            "abc",
            &format!("{id}"),
            &format!("{id}."),
            &format!("{id}xsite"),
        ] {
            assert_eq!(parse_override_cursor(junk).unwrap_err().code, Code::InvalidQuery);
        }
    }
}
