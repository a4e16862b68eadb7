//! Device values in bulk: export a device's values, and apply values to many devices in one
//! request with a result per device, as a dry run first.

use super::policies::SaveQuery;
use super::policy_versions::ChangeResponse;
use crate::auth::{Editor, Operator};
use crate::domain::{DeviceId, Expected, FieldError};
use crate::error::ApiError;
use crate::http::device::DeviceKindDto;
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::services::bulk_settings::{self, BulkEdit, DeviceResult, MAX_DEVICES, Outcome, Target};
use crate::services::devices::Mode;
use crate::state::AppState;
use actix_web::{HttpResponse, ResponseError, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// The device an export was taken from.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsSource {
    pub device_id: Uuid,
    pub hostname: String,
    pub kind: DeviceKindDto,
    /// The device's version (ETag) when exported.
    pub version: i32,
}

/// Device values as a document: what `GET /devices/{id}/settings` exports and what
/// `POST /devices/settings:bulk` applies (an export is accepted as is).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "set": {
        "ticketing.service_ticket_company": {"id": 250, "name": "Client A Ltd"},
        "billing.enabled": true,
        "billing.company": {"id": 250, "name": "Client A Ltd"},
        "billing.agreement": {"id": 71, "name": "Backup Services"},
        "billing.addition": {"id": 501, "name": "OFFSITE-GB"}
    },
    "unset": []
}))]
pub struct DeviceSettingsDocument {
    /// Device values by path: device-scoped fields, or overrides of unlocked managed fields.
    #[schema(value_type = Object)]
    pub set: BTreeMap<String, Value>,
    /// Device values to remove (empty in an export).
    #[serde(default)]
    pub unset: Vec<String>,
    /// Where an export came from; ignored when applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SettingsSource>,
    /// Secret device values an export leaves out (secrets are never exported); ignored when
    /// applied, with a warning.
    #[serde(default)]
    pub omitted_secrets: Vec<String>,
}

/// Export a device's values as a document `POST /devices/settings:bulk` applies to other
/// devices (the source product's Export Settings). Secret values are left out and named in
/// `omitted_secrets`.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path)),
    responses(
        (status = 200, body = DeviceSettingsDocument),
        (status = 400, response = ProblemDetails),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/devices/{device_id}/settings")]
pub async fn export_device_settings(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let export = bulk_settings::export(&state, caller.tenant_id, DeviceId(*path)).await?;
    let device = export.device;
    Ok(HttpResponse::Ok().json(DeviceSettingsDocument {
        set: export.set,
        unset: Vec::new(),
        source: Some(SettingsSource {
            device_id: device.id.0,
            hostname: device.hostname,
            kind: device.kind.into(),
            version: device.version,
        }),
        omitted_secrets: export.omitted_secrets,
    }))
}

/// One device to apply the values to.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkDeviceRequest {
    pub device_id: Uuid,
    /// Optional: the device's ETag as read (`"3"`, or just `3`); a device changed since gets
    /// a `precondition_failed` result. `*` or absent: whatever its version.
    pub if_match: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "dry_run": true,
    "settings": {"set": {"ticketing.service_ticket_company": {"id": 250, "name": "Client A Ltd"}}},
    "devices": [
        {"device_id": "0192f0e4-7c1a-7b3e-9d2a-5f6e7d8c9b0a", "if_match": "\"3\""},
        {"device_id": "0192f0e4-7c1a-7b3e-9d2a-5f6e7d8c9b0b"}
    ]
}))]
pub struct BulkSettingsRequest {
    /// Check everything and show per device what would change; store nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The values to apply to every device (an export document as is).
    pub settings: DeviceSettingsDocument,
    /// 1 to 500 devices, each once.
    pub devices: Vec<BulkDeviceRequest>,
}

/// What happened to one device.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkOutcome {
    /// Saved, with its change-log entry (`device.settings_applied`).
    Applied,
    /// Dry run: would be saved.
    WouldApply,
    /// Already has these values; nothing stored.
    Unchanged,
    /// Refused (see `problem`); nothing stored for this device.
    Failed,
}

impl From<Outcome> for BulkOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Applied => BulkOutcome::Applied,
            Outcome::WouldApply => BulkOutcome::WouldApply,
            Outcome::Unchanged => BulkOutcome::Unchanged,
            Outcome::Failed => BulkOutcome::Failed,
        }
    }
}

/// The result for one device.
#[derive(Serialize, ToSchema)]
pub struct BulkDeviceResult {
    pub device_id: Uuid,
    pub outcome: BulkOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The device's version (ETag) after the request; absent when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    /// What changes (or, in a dry run, would change) on this device.
    pub changes: Vec<ChangeResponse>,
    /// Why its ConnectWise references were not checked, if they were not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Why it failed: the problem a `PATCH` of this device alone would have answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<ProblemDetails>,
}

impl From<DeviceResult> for BulkDeviceResult {
    fn from(r: DeviceResult) -> Self {
        Self {
            device_id: r.device_id.0,
            outcome: r.outcome.into(),
            hostname: r.hostname,
            version: r.version,
            changes: r.changes.into_iter().map(ChangeResponse::from).collect(),
            warnings: r.warnings,
            problem: r.error.map(|e| ProblemDetails::of(&e, e.status_code())),
        }
    }
}

/// Devices per outcome.
#[derive(Serialize, ToSchema, Default)]
pub struct BulkSummary {
    pub applied: usize,
    pub would_apply: usize,
    pub unchanged: usize,
    pub failed: usize,
}

#[derive(Serialize, ToSchema)]
pub struct BulkSettingsResponse {
    pub dry_run: bool,
    pub summary: BulkSummary,
    /// About the request as a whole, e.g. secrets the document left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// One per device, in request order.
    pub results: Vec<BulkDeviceResult>,
}

/// `if_match` of one device: the ETag `"3"`, the bare version `3`, or `*`.
fn expected(i: usize, raw: Option<&str>) -> Result<Expected, FieldError> {
    let Some(raw) = raw.map(str::trim).filter(|r| *r != "*") else {
        return Ok(Expected::Any);
    };
    let bare = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    bare.parse::<i32>()
        .ok()
        .filter(|v| *v >= 0)
        .map(Expected::Version)
        .ok_or_else(|| {
            FieldError::new(
                format!("devices[{i}].if_match"),
                "invalid_if_match",
                "must be the device's ETag as read (\"3\"), its version (3) or `*`",
            )
        })
}

/// Apply device values (Service Ticket Company, billing, …) to many devices in one request —
/// the source product's Import Settings, for a fleet. Editors and admins.
///
/// Each device is changed on its own and atomically, with every check of `PATCH
/// /devices/{id}`: locks (`409`), rules across fields, billing for appliances only, and the
/// ConnectWise reference check (`?validate=false` skips it). The answer is `200` with a result
/// per device: `applied`, `unchanged` or `failed` with the problem a single save would have
/// answered (e.g. `precondition_failed` for a stale `if_match`). With `dry_run: true` nothing
/// is stored and each device shows `would_apply` and its changes. A request that is invalid as
/// a whole (more than 500 devices, a device twice, an unknown setting) is a `422` and touches
/// no device.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(SaveQuery),
    request_body = BulkSettingsRequest,
    responses(
        (status = 200, body = BulkSettingsResponse),
        (status = 400, response = ProblemDetails),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 413, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
    )
)]
#[post("/devices/settings:bulk")]
pub async fn apply_device_settings(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    query: web::Query<SaveQuery>,
    body: ApiJson<BulkSettingsRequest>,
) -> Result<HttpResponse, ApiError> {
    let references = query.references()?;
    let body = body.0;
    let mut errors = Vec::new();
    // One past the limit is enough for the count check to refuse the request.
    let mut targets = Vec::with_capacity(body.devices.len().min(MAX_DEVICES + 1));
    for (i, device) in body.devices.iter().enumerate().take(MAX_DEVICES + 1) {
        match expected(i, device.if_match.as_deref()) {
            Ok(expected) => targets.push(Target {
                device_id: DeviceId(device.device_id),
                expected,
            }),
            Err(error) => errors.push(error),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mode = if body.dry_run { Mode::DryRun } else { Mode::Save };
    let settings = body.settings;
    let warnings = if settings.omitted_secrets.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "the document leaves out secret values ({}); they are not applied",
            settings.omitted_secrets.join(", ")
        )]
    };
    let bulk = BulkEdit {
        set: settings.set,
        unset: settings.unset,
        targets,
        mode,
        references,
    };
    let results = bulk_settings::apply(&state, &caller.actor(), bulk).await?;
    let mut summary = BulkSummary::default();
    for result in &results {
        *match result.outcome {
            Outcome::Applied => &mut summary.applied,
            Outcome::WouldApply => &mut summary.would_apply,
            Outcome::Unchanged => &mut summary.unchanged,
            Outcome::Failed => &mut summary.failed,
        } += 1;
    }
    Ok(HttpResponse::Ok().json(BulkSettingsResponse {
        dry_run: body.dry_run,
        summary,
        warnings,
        results: results.into_iter().map(BulkDeviceResult::from).collect(),
    }))
}
