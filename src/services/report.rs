//! The report of the device protocol: what a device says it did with each field of its config.

use super::billing;
use super::effective::{self, Freshness};
use super::registration::identity_text;
use super::served_audit;
use crate::db;
use crate::db::repo::devices::ReportOutcome;
use crate::db::repo::{Written, device_fields, devices};
use crate::domain::billing::Usage;
use crate::domain::device::{
    self, Device, FieldRecord, RawReportedField, ReportedRecord, ReportedState, ServedField, canonical_json,
};
use crate::domain::field_audit::HistoryEvent;
use crate::domain::validation::Validator;
use crate::domain::{Expected, FieldError};
use crate::error::ApiError;
use crate::state::AppState;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What a device reports after applying a config.
#[derive(Debug)]
pub struct Report {
    pub config_hash: String,
    pub software_version: Option<String>,
    pub hostname: Option<String>,
    pub fields: BTreeMap<String, RawReportedField>,
    /// The storage the device bills, when it reports it (appliances only).
    pub billing: Option<Usage>,
}

/// What the server made of a report.
#[derive(Debug)]
pub struct ReportReceipt {
    /// False when the same report was already recorded: nothing changed.
    pub recorded: bool,
    pub fields_changed: usize,
    pub violations: Vec<String>,
}

pub async fn report(state: &AppState, mut device: Device, report: Report) -> Result<ReportReceipt, ApiError> {
    let mut v = Validator::new();
    if report.config_hash.len() != 64 || !report.config_hash.chars().all(|c| c.is_ascii_hexdigit()) {
        v.push(FieldError::new(
            "config_hash",
            "invalid",
            "must be the 64-hex-digit config_hash that was applied",
        ));
    }
    if let Some(hostname) = &report.hostname {
        device.hostname = identity_text(&mut v, "hostname", hostname, 253);
    }
    if let Some(version) = &report.software_version {
        device.software_version = identity_text(&mut v, "software_version", version, 64);
    }
    let states = match device::validate_report(&report.fields) {
        Ok(states) => Some(states),
        Err(errors) => {
            errors.into_iter().for_each(|e| v.push(e));
            None
        }
    };
    let usage = report
        .billing
        .as_ref()
        .and_then(|raw| billing::checked_usage(&mut v, device.kind, raw));
    v.finish().map_err(ApiError::validation)?;
    let states = states.unwrap_or_default();

    let digest = report_digest(&report, &device, usage.as_ref());
    if device.last_report_digest.as_deref() == Some(digest.as_str()) {
        return Ok(ReportReceipt {
            recorded: false,
            fields_changed: 0,
            violations: Vec::new(),
        });
    }

    let now = state.clock.now();
    let tenant = device.tenant_id;
    let current = effective::current(state, tenant, Freshness::Directory).await?;
    let served = effective::built(state, &current.view, &device, current.revision)?
        .served
        .clone();

    let txn = db::begin_write(&state.db).await?;
    // The fields to reassert as stored now: the device authenticated from memory, and an
    // operator may have asked for more on another replica within the last second.
    let mut reassert = match devices::get_for_update(&txn, tenant, device.id, Expected::Any).await? {
        Written::Done(stored) => stored.reassert,
        Written::Missing | Written::Stale => device.reassert.clone(),
    };
    let mut current = device_fields::load(&txn, tenant, device.id).await?;
    let mut changed = Vec::new();
    let mut reported_anew = Vec::new();
    let mut violations = Vec::new();
    for (path, state_now) in &states {
        let mut record = current.remove(path).unwrap_or_else(|| FieldRecord {
            device_id: device.id,
            path: path.clone(),
            served: served.get(path).cloned().unwrap_or_else(ServedField::unset),
            served_since: now,
            reported: None,
            violation: false,
        });
        if matches!(state_now, ReportedState::Inherited) {
            reassert.remove(path);
        }
        let unchanged = record.reported.as_ref().is_some_and(|r| state_now.same_as(r));
        if !unchanged {
            record.reported = Some(ReportedRecord {
                state: state_now.kind(),
                local_value: state_now.local_value().cloned(),
                error: state_now.error().map(str::to_owned),
                since: now,
            });
        }
        let violation = served_audit::is_violation(&record.served, record.reported.as_ref());
        if violation {
            violations.push(path.clone());
        }
        if !unchanged || violation != record.violation {
            record.violation = violation;
            if unchanged {
                changed.push(record);
            } else {
                reported_anew.push(record);
            }
        }
    }
    device_fields::append_history(&txn, tenant, HistoryEvent::Reported, &reported_anew).await?;
    let fields_changed = reported_anew.len();
    changed.append(&mut reported_anew);
    device_fields::put(&txn, tenant, &changed).await?;
    let failed = states.values().any(|s| matches!(s, ReportedState::Failed { .. }));
    let outcome = ReportOutcome {
        applied_hash: (!failed).then_some(report.config_hash.as_str()),
        failed_hash: failed.then_some(report.config_hash.as_str()),
        digest: &digest,
        reassert: &reassert,
    };
    devices::record_report(&txn, &device, now, outcome).await?;
    if let Some(usage) = &usage {
        billing::record_usage(&txn, tenant, device.id, usage, now).await?;
    }
    txn.commit().await?;
    if !violations.is_empty() {
        tracing::warn!(device_id = %device.id, ?violations, "device overrides locked fields");
    }
    Ok(ReportReceipt {
        recorded: true,
        fields_changed,
        violations,
    })
}

/// Identifies a report's content, so the same report sent twice is recognised.
fn report_digest(report: &Report, device: &Device, usage: Option<&Usage>) -> String {
    let fields: Map<String, Value> = report
        .fields
        .iter()
        .map(|(path, f)| {
            (
                path.clone(),
                json!({"state": f.state.as_str(), "value": f.value, "fingerprint": f.fingerprint, "error": f.error}),
            )
        })
        .collect();
    let mut body = json!({
        "config_hash": report.config_hash,
        "hostname": device.hostname,
        "software_version": device.software_version,
        "fields": fields,
    });
    // Only when present, so the digest of a report without usage stays what it was.
    if let Some(usage) = usage {
        body["billing"] = json!({"storage_gb": usage.storage_gb, "vaults": usage.vaults});
    }
    hex::encode(Sha256::digest(canonical_json(&body).as_bytes()))
}
