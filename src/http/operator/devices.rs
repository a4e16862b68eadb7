//! Devices as operators manage them: list, read, assign and set device values, rotate the
//! credential, decommission, adopt and reassert fields.

use super::policies::SaveQuery;
use super::reregistrations::ReregistrationResponse;
use crate::auth::{Admin, Editor, Operator};
use crate::db::repo::devices::DeviceFilter;
use crate::domain::device::{Connectivity, DeviceKind, Lifecycle};
use crate::domain::sync::SyncState;
use crate::domain::{DeviceId, PolicyId};
use crate::error::{ApiError, Code};
use crate::http::device::DeviceKindDto;
use crate::http::etag::{if_match, json_with_etag};
use crate::http::json::ApiJson;
use crate::http::operator::field_audit::SyncStateDto;
use crate::http::problem::ProblemDetails;
use crate::http::types::{PageQuery, PageResponse};
use crate::services::devices::{self, DeviceEdit, DeviceView};
use crate::services::references;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

// ---- devices ------------------------------------------------------------------------------------

/// A device. Device values of secret fields read as `{"set": true, …}`.
#[derive(Serialize, ToSchema)]
pub struct DeviceResponse {
    pub id: Uuid,
    pub kind: DeviceKindDto,
    pub hardware_id: String,
    pub hostname: String,
    pub software_version: String,
    pub policy_id: Uuid,
    /// `active` or `decommissioned`.
    pub status: &'static str,
    /// `new`, `online`, `stale` or `offline`.
    pub connectivity: &'static str,
    /// The device's own values: device-scoped fields and overrides set by operators.
    #[schema(value_type = Object)]
    pub device_values: BTreeMap<String, Value>,
    /// Fields the next config tells the device to stop overriding.
    pub reassert: Vec<String>,
    /// The `ETag`; bumped by assignment, device values and reassert.
    pub version: i32,
    /// The hash of the config the device should run now.
    pub current_config_hash: String,
    pub served_config_hash: Option<String>,
    pub applied_config_hash: Option<String>,
    /// In sync, pending or failed: exactly one holds (see `in_sync`, `pending`, `failed`).
    pub sync_state: SyncStateDto,
    /// Applied the current config, every field took, and no locked field runs a local value.
    pub in_sync: bool,
    /// Not in sync yet, nothing failed: the current config is not applied yet, or a locked
    /// field still runs a local value.
    pub pending: bool,
    /// A field is reported as failed (see `GET /api/v1/devices/{id}/fields`).
    pub failed: bool,
    pub registered_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub next_pull_after: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
    /// A registration naming this device's hardware id that waits for approval
    /// (`POST …/reregistration/approve` or `…/reject`).
    pub reregistration: Option<ReregistrationResponse>,
    /// `PATCH` only: why the save went through without its ConnectWise reference check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

pub(super) fn connectivity_name(c: Connectivity) -> &'static str {
    match c {
        Connectivity::New => "new",
        Connectivity::Online => "online",
        Connectivity::Stale => "stale",
        Connectivity::Offline => "offline",
    }
}

impl From<DeviceView> for DeviceResponse {
    fn from(v: DeviceView) -> Self {
        let d = v.device;
        Self {
            id: d.id.0,
            kind: d.kind.into(),
            hardware_id: d.hardware_id,
            hostname: d.hostname,
            software_version: d.software_version,
            policy_id: d.policy_id.0,
            status: d.lifecycle.as_str(),
            connectivity: connectivity_name(v.connectivity),
            device_values: d
                .device_values
                .iter()
                .map(|(k, v)| (k.clone(), v.masked()))
                .collect(),
            reassert: d.reassert.into_iter().collect(),
            version: d.version,
            current_config_hash: v.current_hash,
            served_config_hash: d.served_hash,
            applied_config_hash: d.applied_hash,
            sync_state: v.sync.into(),
            in_sync: v.sync == SyncState::InSync,
            pending: v.sync == SyncState::Pending,
            failed: v.sync == SyncState::Failed,
            registered_at: d.registered_at,
            last_seen_at: d.last_seen_at,
            next_pull_after: d.next_pull_after,
            applied_at: d.applied_at,
            reregistration: v.reregistration.map(ReregistrationResponse::from),
            warnings: Vec::new(),
        }
    }
}

pub(super) fn device_response(view: DeviceView) -> HttpResponse {
    let version = view.device.version;
    json_with_etag(HttpResponse::Ok(), version, &DeviceResponse::from(view))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceListQuery {
    pub kind: Option<DeviceKindDto>,
    /// `active` or `decommissioned`.
    #[param(pattern = "^(active|decommissioned)$")]
    pub status: Option<String>,
    /// Devices assigned to this policy.
    pub policy_id: Option<Uuid>,
    /// Devices reporting at least one local override (or none, with `false`).
    pub has_overrides: Option<bool>,
    /// Devices reporting at least one failed field.
    pub has_failures: Option<bool>,
    /// Devices whose reported state differs from their config (overrides or failures).
    pub drifted: Option<bool>,
    /// Only devices past their next pull plus the grace period.
    pub stale: Option<bool>,
    /// Devices with a re-registration waiting for approval (or none, with `false`).
    pub reregistration_pending: Option<bool>,
    pub cursor: Option<Uuid>,
    /// 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// List devices with filters, cursor-paginated.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(DeviceListQuery),
    responses((status = 200, body = PageResponse<DeviceResponse>), (status = 400, response = ProblemDetails), (status = 401, response = ProblemDetails))
)]
#[get("/devices")]
pub async fn list_devices(
    state: web::Data<AppState>,
    caller: Operator,
    query: web::Query<DeviceListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let page = PageQuery {
        cursor: q.cursor,
        limit: q.limit,
    }
    .to_request()?;
    let lifecycle = match q.status.as_deref() {
        None => None,
        Some(raw) => Some(
            raw.parse::<Lifecycle>()
                .map_err(|e| ApiError::new(Code::InvalidQuery, e))?,
        ),
    };
    let filter = DeviceFilter {
        kind: q.kind.map(DeviceKind::from),
        lifecycle,
        policy_ids: q.policy_id.map(|p| vec![PolicyId(p)]),
        has_overrides: q.has_overrides,
        has_failures: q.has_failures,
        drifted: q.drifted,
        due_before: q
            .stale
            .filter(|s| *s)
            .map(|_| state.clock.now() - state.config.thresholds().grace),
        reregistration_pending: q.reregistration_pending,
        ..DeviceFilter::default()
    };
    let page = devices::list(&state, caller.tenant_id, filter, page).await?;
    Ok(HttpResponse::Ok().json(PageResponse::from_page(page, DeviceResponse::from)))
}

/// Get one device: identity, assignment, device values, and whether it runs its current config.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path)),
    responses((status = 200, body = DeviceResponse, headers(("ETag" = String))), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails))
)]
#[get("/devices/{device_id}")]
pub async fn get_device(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(device_response(
        devices::get(&state, caller.tenant_id, DeviceId(*path)).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "set": {"ticketing.service_ticket_company": {"id": 250, "name": "Client A Ltd"}},
    "unset": []
}))]
pub struct UpdateDeviceRequest {
    /// Assign the device to this policy.
    pub policy_id: Option<Uuid>,
    /// Device values by path: device-scoped fields, or overrides of unlocked managed fields.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub set: BTreeMap<String, Value>,
    #[serde(default)]
    pub unset: Vec<String>,
}

/// Assign a device to a policy and set or unset its device values. Needs `If-Match`. An
/// override of a field locked by the device's policies is a `409`.
///
/// The Service Ticket Company, billing company, agreement (of that company) and addition (of
/// that agreement) the request changes are checked against ConnectWise when the device's
/// configuration has credentials (`422` naming each problem). When ConnectWise cannot be
/// reached, or no credentials are configured, the save goes through with `warnings`, also
/// recorded in the change log. `?validate=false` skips the check.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path), ("If-Match" = String, Header, description = "ETag of the device as read"), SaveQuery),
    request_body = UpdateDeviceRequest,
    responses(
        (status = 200, body = DeviceResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 412, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
        (status = 428, response = ProblemDetails),
    )
)]
#[patch("/devices/{device_id}")]
pub async fn update_device(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    req: HttpRequest,
    path: web::Path<Uuid>,
    query: web::Query<SaveQuery>,
    body: ApiJson<UpdateDeviceRequest>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let references = query.references()?;
    let body = body.0;
    let edit = DeviceEdit {
        policy_id: body.policy_id.map(PolicyId),
        set: body.set,
        unset: body.unset,
        notes: Vec::new(),
    };
    let (view, warnings) = references::update_device(
        &state,
        &caller.actor(),
        DeviceId(*path),
        expected,
        edit,
        references,
    )
    .await?;
    let version = view.device.version;
    let mut response = DeviceResponse::from(view);
    response.warnings = warnings;
    Ok(json_with_etag(HttpResponse::Ok(), version, &response))
}

#[derive(Serialize, ToSchema)]
pub struct CredentialResponse {
    pub device_id: Uuid,
    /// The new credential, shown only now. The old one no longer works.
    pub credential: String,
}

/// Give a device a new credential; the old one stops working at once.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path)),
    responses((status = 200, body = CredentialResponse), (status = 401, response = ProblemDetails), (status = 403, response = ProblemDetails), (status = 404, response = ProblemDetails), (status = 409, response = ProblemDetails))
)]
#[post("/devices/{device_id}/rotate-credential")]
pub async fn rotate_device_credential(
    state: web::Data<AppState>,
    caller: Operator<Admin>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (view, credential) = devices::rotate_credential(&state, &caller.actor(), DeviceId(*path)).await?;
    Ok(HttpResponse::Ok().json(CredentialResponse {
        device_id: view.device.id.0,
        credential,
    }))
}

/// Decommission a device: its credential stops working, and its hardware id cannot register
/// again.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path)),
    responses((status = 200, body = DeviceResponse), (status = 401, response = ProblemDetails), (status = 403, response = ProblemDetails), (status = 404, response = ProblemDetails))
)]
#[post("/devices/{device_id}/decommission")]
pub async fn decommission_device(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(device_response(
        devices::decommission(&state, &caller.actor(), DeviceId(*path)).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"field": "ticketing.events.failed_backup.service_board"}))]
pub struct FieldActionRequest {
    /// A setting path.
    pub field: String,
}

/// Adopt a device's local override: the value it reports becomes its device value on the
/// server. Needs `If-Match`.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path), ("If-Match" = String, Header, description = "ETag of the device as read")),
    request_body = FieldActionRequest,
    responses(
        (status = 200, body = DeviceResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails), (status = 403, response = ProblemDetails), (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails), (status = 412, response = ProblemDetails), (status = 422, response = ProblemDetails), (status = 428, response = ProblemDetails),
    )
)]
#[post("/devices/{device_id}/adopt")]
pub async fn adopt_device_override(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    req: HttpRequest,
    path: web::Path<Uuid>,
    body: ApiJson<FieldActionRequest>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    Ok(device_response(
        devices::adopt(&state, &caller.actor(), DeviceId(*path), expected, &body.0.field).await?,
    ))
}

/// Reassert the policy for a field: the next config tells the device to drop its local value
/// (and any device value of the field is removed). Needs `If-Match`.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path), ("If-Match" = String, Header, description = "ETag of the device as read")),
    request_body = FieldActionRequest,
    responses(
        (status = 200, body = DeviceResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails), (status = 403, response = ProblemDetails), (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails), (status = 412, response = ProblemDetails), (status = 422, response = ProblemDetails), (status = 428, response = ProblemDetails),
    )
)]
#[post("/devices/{device_id}/reassert")]
pub async fn reassert_device_field(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    req: HttpRequest,
    path: web::Path<Uuid>,
    body: ApiJson<FieldActionRequest>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    Ok(device_response(
        devices::reassert(&state, &caller.actor(), DeviceId(*path), expected, &body.0.field).await?,
    ))
}
