//! Enrollment tokens, devices, device values, the field audit and the dashboard.

use super::policies::PolicyRefResponse;
use super::reregistrations::ReregistrationResponse;
use crate::auth::{Admin, Editor, Operator};
use crate::db::repo::device_fields::HistoryEntry;
use crate::db::repo::devices::DeviceFilter;
use crate::domain::device::{Connectivity, DeviceKind, EnrollmentToken, FieldRecord, Lifecycle};
use crate::domain::resolve::Source;
use crate::domain::{DeviceId, EnrollmentTokenId, PolicyId};
use crate::error::{ApiError, Code};
use crate::http::device::DeviceKindDto;
use crate::http::etag::{if_match, json_with_etag};
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::http::types::{PageQuery, PageResponse};
use crate::services::devices::{self, DeviceEdit, DeviceView, FieldView, SyncState};
use crate::services::{enrollment, tenants};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

// ---- enrollment tokens ------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"label": "Client A rollout", "expires_in_seconds": 604800, "max_uses": 25}))]
pub struct CreateEnrollmentTokenRequest {
    pub label: Option<String>,
    /// 60 seconds to 90 days (default 7 days).
    pub expires_in_seconds: Option<i64>,
    /// How many registrations it allows, 1–100000 (default 1).
    pub max_uses: Option<u32>,
    /// Devices registering with it are assigned here (default: the root policy).
    pub policy_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct EnrollmentTokenResponse {
    pub id: Uuid,
    pub label: String,
    pub policy_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub max_uses: i32,
    pub uses: i32,
    pub revoked: bool,
    /// `usable`, `expired`, `used up` or `revoked`.
    pub status: &'static str,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// The token itself: only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

fn token_response(t: EnrollmentToken, secret: Option<String>) -> EnrollmentTokenResponse {
    EnrollmentTokenResponse {
        status: t.unusable_because(Utc::now()).unwrap_or("usable"),
        id: t.id.0,
        label: t.label,
        policy_id: t.policy_id.map(|p| p.0),
        expires_at: t.expires_at,
        max_uses: t.max_uses,
        uses: t.uses,
        revoked: t.revoked_at.is_some(),
        created_by: t.created_by.map(|o| o.0),
        created_at: t.created_at,
        token: secret,
    }
}

/// Create an enrollment token (admins only: whoever enrols a device can read the secrets it
/// is served, the same right as exporting secrets). The token is in this answer only; it is
/// stored hashed.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    request_body = CreateEnrollmentTokenRequest,
    responses(
        (status = 201, body = EnrollmentTokenResponse),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
    )
)]
#[post("/enrollment-tokens")]
pub async fn create_enrollment_token(
    state: web::Data<AppState>,
    caller: Operator<Admin>,
    body: ApiJson<CreateEnrollmentTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let input = enrollment::NewToken {
        label: body.label,
        expires_in_seconds: body.expires_in_seconds,
        max_uses: body.max_uses,
        policy_id: body.policy_id.map(PolicyId),
    };
    let (token, secret) = enrollment::create(&state, &caller.actor(), input).await?;
    Ok(HttpResponse::Created().json(token_response(token, Some(secret))))
}

/// List enrollment tokens (never the tokens themselves).
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(PageQuery),
    responses((status = 200, body = PageResponse<EnrollmentTokenResponse>), (status = 401, response = ProblemDetails))
)]
#[get("/enrollment-tokens")]
pub async fn list_enrollment_tokens(
    state: web::Data<AppState>,
    caller: Operator,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = enrollment::list(&state, caller.tenant_id, query.to_request()?).await?;
    Ok(HttpResponse::Ok().json(PageResponse::from_page(page, |t| token_response(t, None))))
}

/// Get one enrollment token.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("token_id" = Uuid, Path)),
    responses((status = 200, body = EnrollmentTokenResponse), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails))
)]
#[get("/enrollment-tokens/{token_id}")]
pub async fn get_enrollment_token(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let token = enrollment::get(&state, caller.tenant_id, EnrollmentTokenId(*path)).await?;
    Ok(HttpResponse::Ok().json(token_response(token, None)))
}

/// Revoke an enrollment token: no device can register with it any more.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("token_id" = Uuid, Path)),
    responses((status = 204, description = "Revoked"), (status = 401, response = ProblemDetails), (status = 403, response = ProblemDetails), (status = 404, response = ProblemDetails))
)]
#[delete("/enrollment-tokens/{token_id}")]
pub async fn revoke_enrollment_token(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    enrollment::revoke(&state, &caller.actor(), EnrollmentTokenId(*path)).await?;
    Ok(HttpResponse::NoContent().finish())
}

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
    pub in_sync: bool,
    /// The device reported the current config as failed.
    pub failed: bool,
    pub registered_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub next_pull_after: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
    /// A registration naming this device's hardware id that waits for approval
    /// (`POST …/reregistration/approve` or `…/reject`).
    pub reregistration: Option<ReregistrationResponse>,
}

fn connectivity_name(c: Connectivity) -> &'static str {
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
            in_sync: v.in_sync,
            failed: v.failed,
            registered_at: d.registered_at,
            last_seen_at: d.last_seen_at,
            next_pull_after: d.next_pull_after,
            applied_at: d.applied_at,
            reregistration: v.reregistration.map(ReregistrationResponse::from),
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
            .map(|_| Utc::now() - state.config.thresholds().grace),
        reregistration_pending: q.reregistration_pending,
        hostname: None,
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
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path), ("If-Match" = String, Header, description = "ETag of the device as read")),
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
    body: ApiJson<UpdateDeviceRequest>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let body = body.0;
    let edit = DeviceEdit {
        policy_id: body.policy_id.map(PolicyId),
        set: body.set,
        unset: body.unset,
    };
    Ok(device_response(
        devices::update(&state, &caller.actor(), DeviceId(*path), expected, edit).await?,
    ))
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

// ---- the field audit ----------------------------------------------------------------------------

/// What a device reported for a field.
#[derive(Serialize, ToSchema)]
pub struct ReportedResponse {
    /// `inherited`, `overridden`, `failed` or `unsupported`.
    pub state: String,
    /// The local value of an override (for secrets, the device's fingerprint of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub local_value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub since: DateTime<Utc>,
}

/// One field of one device in the field audit.
#[derive(Serialize, ToSchema)]
pub struct FieldRecordResponse {
    pub device_id: Uuid,
    pub field: String,
    /// Fingerprint of the served value (not the value; secrets stay secret).
    pub served_fingerprint: Option<String>,
    /// `policy`, `device` or `unset`.
    pub source: &'static str,
    pub policy_id: Option<Uuid>,
    pub policy_version: Option<i32>,
    pub locked: bool,
    pub served_since: DateTime<Utc>,
    pub reported: Option<ReportedResponse>,
    /// A local override of a locked field.
    pub violation: bool,
}

impl From<FieldRecord> for FieldRecordResponse {
    fn from(r: FieldRecord) -> Self {
        Self {
            device_id: r.device_id.0,
            field: r.path,
            served_fingerprint: r.served.fingerprint,
            source: r.served.source,
            policy_id: r.served.policy_id,
            policy_version: r.served.policy_version,
            locked: r.served.locked,
            served_since: r.served_since,
            reported: r.reported.map(|rep| ReportedResponse {
                state: rep.state,
                local_value: rep.local_value,
                error: rep.error,
                since: rep.since,
            }),
            violation: r.violation,
        }
    }
}

/// One field of a device: its effective value, provenance, lock and reported state.
#[derive(Serialize, ToSchema)]
pub struct DeviceFieldResponse {
    pub field: String,
    /// The effective value; secrets masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub value: Option<Value>,
    /// The policy and version it comes from; absent for device values and unset fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_policy: Option<PolicyRefResponse>,
    /// `policy`, `device` or `unset`.
    pub source: &'static str,
    pub locked: bool,
    pub reported: Option<ReportedResponse>,
    pub violation: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DeviceFieldsResponse {
    pub device: DeviceResponse,
    pub fields: Vec<DeviceFieldResponse>,
}

impl From<FieldView> for DeviceFieldResponse {
    fn from(f: FieldView) -> Self {
        let (source, source_policy) = match f.source {
            Some(Source::Policy(p)) => ("policy", Some(p.into())),
            Some(Source::Device) => ("device", None),
            None => ("unset", None),
        };
        let record = f.record.map(FieldRecordResponse::from);
        Self {
            field: f.path,
            value: f.value,
            source_policy,
            source,
            locked: f.locked,
            violation: record.as_ref().is_some_and(|r| r.violation),
            reported: record.and_then(|r| r.reported),
        }
    }
}

/// What a device runs and why: every field with its effective value (secrets masked), where it
/// comes from, whether it is locked, and what the device reported.
#[utoipa::path(
    tag = "audit",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path)),
    responses((status = 200, body = DeviceFieldsResponse), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails))
)]
#[get("/devices/{device_id}/fields")]
pub async fn get_device_fields(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (view, fields) = devices::fields(&state, caller.tenant_id, DeviceId(*path)).await?;
    Ok(HttpResponse::Ok().json(DeviceFieldsResponse {
        device: view.into(),
        fields: fields.into_iter().map(DeviceFieldResponse::from).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only this field.
    pub field: Option<String>,
    pub cursor: Option<Uuid>,
    /// 1–200 (default 50).
    pub limit: Option<u64>,
}

/// One change of one field on one device.
#[derive(Serialize, ToSchema)]
pub struct HistoryEntryResponse {
    pub id: Uuid,
    /// `served` (what the server sent changed) or `reported` (what the device said changed).
    pub event: String,
    pub field: String,
    pub served_fingerprint: Option<String>,
    pub source: &'static str,
    pub policy_id: Option<Uuid>,
    pub policy_version: Option<i32>,
    pub reported: Option<ReportedResponse>,
    pub recorded_at: DateTime<Utc>,
}

impl From<HistoryEntry> for HistoryEntryResponse {
    fn from(e: HistoryEntry) -> Self {
        let r = FieldRecordResponse::from(e.record);
        Self {
            id: e.id,
            event: e.event,
            field: r.field,
            served_fingerprint: r.served_fingerprint,
            source: r.source,
            policy_id: r.policy_id,
            policy_version: r.policy_version,
            reported: r.reported,
            recorded_at: e.recorded_at,
        }
    }
}

/// A device's field history, newest first: written only when what was served or what the
/// device reported changed.
#[utoipa::path(
    tag = "audit",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path), HistoryQuery),
    responses((status = 200, body = PageResponse<HistoryEntryResponse>), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails))
)]
#[get("/devices/{device_id}/history")]
pub async fn get_device_history(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let page = PageQuery {
        cursor: q.cursor,
        limit: q.limit,
    }
    .to_request()?;
    let entries = devices::history(
        &state,
        caller.tenant_id,
        DeviceId(*path),
        q.field.as_deref(),
        page,
    )
    .await?;
    Ok(HttpResponse::Ok().json(PageResponse::from_page(entries, HistoryEntryResponse::from)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InheritedQuery {
    /// The setting path.
    pub field: String,
    /// Only devices getting it from this policy…
    pub policy_id: Option<Uuid>,
    /// …at this version.
    pub version: Option<i32>,
    pub cursor: Option<Uuid>,
    /// 1–200 (default 50).
    pub limit: Option<u64>,
}

/// Which devices inherited a field: the policy, version and value fingerprint each got.
#[utoipa::path(
    tag = "audit",
    security(("operator_jwt" = [])),
    params(InheritedQuery),
    responses((status = 200, body = PageResponse<FieldRecordResponse>), (status = 400, response = ProblemDetails), (status = 401, response = ProblemDetails))
)]
#[get("/audit/inherited")]
pub async fn list_inherited(
    state: web::Data<AppState>,
    caller: Operator,
    query: web::Query<InheritedQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let page = PageQuery {
        cursor: q.cursor,
        limit: q.limit,
    }
    .to_request()?;
    let records = devices::inherited(
        &state,
        caller.tenant_id,
        &q.field,
        q.policy_id.map(PolicyId),
        q.version,
        page,
    )
    .await?;
    Ok(HttpResponse::Ok().json(PageResponse::from_page(records, FieldRecordResponse::from)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OverridesQuery {
    /// Only this setting path (default: every field).
    pub field: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OverridesResponse {
    pub items: Vec<FieldRecordResponse>,
}

/// Which devices override a field (or any field) locally: the local value (for secrets its
/// fingerprint) and since when. Overrides of locked fields are flagged as violations.
#[utoipa::path(
    tag = "audit",
    security(("operator_jwt" = [])),
    params(OverridesQuery),
    responses((status = 200, body = OverridesResponse), (status = 401, response = ProblemDetails))
)]
#[get("/audit/overrides")]
pub async fn list_overrides(
    state: web::Data<AppState>,
    caller: Operator,
    query: web::Query<OverridesQuery>,
) -> Result<HttpResponse, ApiError> {
    let records = devices::overrides(&state, caller.tenant_id, query.field.as_deref()).await?;
    Ok(HttpResponse::Ok().json(OverridesResponse {
        items: records.into_iter().map(FieldRecordResponse::from).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PolicyDevicesQuery {
    /// `in_sync`, `pending` (not yet applied the current config), `failed` or `stale`.
    pub state: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeviceListResponse {
    pub items: Vec<DeviceResponse>,
}

/// Devices of a policy and of its descendants: who has not yet applied the current config,
/// who failed it, who is stale.
#[utoipa::path(
    tag = "audit",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), PolicyDevicesQuery),
    responses((status = 200, body = DeviceListResponse), (status = 400, response = ProblemDetails), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails))
)]
#[get("/policies/{policy_id}/devices")]
pub async fn list_policy_devices(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
    query: web::Query<PolicyDevicesQuery>,
) -> Result<HttpResponse, ApiError> {
    let wanted = match query.state.as_deref() {
        None => None,
        Some("in_sync") => Some(SyncState::InSync),
        Some("pending") => Some(SyncState::Pending),
        Some("failed") => Some(SyncState::Failed),
        Some("stale") => Some(SyncState::Stale),
        Some(other) => {
            return Err(ApiError::new(
                Code::InvalidQuery,
                format!("state `{other}` is not one of in_sync, pending, failed, stale"),
            ));
        }
    };
    let views = devices::policy_devices(&state, caller.tenant_id, PolicyId(*path), wanted).await?;
    Ok(HttpResponse::Ok().json(DeviceListResponse {
        items: views.into_iter().map(DeviceResponse::from).collect(),
    }))
}

/// Devices of one policy, counted for a dashboard.
#[derive(Serialize, ToSchema)]
pub struct PolicySummaryCounts {
    pub policy_id: Uuid,
    pub policy_name: String,
    /// Active devices assigned directly to the policy.
    pub assigned: u64,
    pub in_sync: u64,
    pub pending: u64,
    pub overridden: u64,
    pub failed: u64,
    pub violations: u64,
    pub stale: u64,
}

#[derive(Serialize, ToSchema)]
pub struct DashboardResponse {
    pub policies: Vec<PolicySummaryCounts>,
}

/// Per policy: devices assigned, in sync, pending, overriding, failed, violating, stale.
#[utoipa::path(
    tag = "audit",
    security(("operator_jwt" = [])),
    responses((status = 200, body = DashboardResponse), (status = 401, response = ProblemDetails))
)]
#[get("/dashboard/policies")]
pub async fn get_policy_dashboard(
    state: web::Data<AppState>,
    caller: Operator,
) -> Result<HttpResponse, ApiError> {
    let summary = devices::dashboard(&state, caller.tenant_id).await?;
    Ok(HttpResponse::Ok().json(DashboardResponse {
        policies: summary
            .into_iter()
            .map(|(id, name, c)| PolicySummaryCounts {
                policy_id: id.0,
                policy_name: name,
                assigned: c.assigned,
                in_sync: c.in_sync,
                pending: c.pending,
                overridden: c.overridden,
                failed: c.failed,
                violations: c.violations,
                stale: c.stale,
            })
            .collect(),
    }))
}

// ---- the tenant's device settings ------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct DeviceSettingsResponse {
    /// How often devices pull, in seconds (default 14400: every 4 hours).
    pub pull_interval_seconds: u32,
    pub version: i32,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"pull_interval_seconds": 14400}))]
pub struct UpdateDeviceSettingsRequest {
    /// 60 seconds to 7 days.
    pub pull_interval_seconds: u32,
}

/// The tenant's device settings.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    responses((status = 200, body = DeviceSettingsResponse, headers(("ETag" = String))), (status = 401, response = ProblemDetails))
)]
#[get("/device-settings")]
pub async fn get_device_settings(
    state: web::Data<AppState>,
    caller: Operator,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenants::get(&state, caller.tenant_id).await?;
    let body = DeviceSettingsResponse {
        pull_interval_seconds: tenant.pull_interval_seconds,
        version: tenant.version,
    };
    Ok(json_with_etag(HttpResponse::Ok(), tenant.version, &body))
}

/// Change how often the tenant's devices pull. Admins only; needs `If-Match`.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("If-Match" = String, Header, description = "ETag of the device settings as read")),
    request_body = UpdateDeviceSettingsRequest,
    responses(
        (status = 200, body = DeviceSettingsResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails), (status = 403, response = ProblemDetails),
        (status = 412, response = ProblemDetails), (status = 422, response = ProblemDetails), (status = 428, response = ProblemDetails),
    )
)]
#[patch("/device-settings")]
pub async fn update_device_settings(
    state: web::Data<AppState>,
    caller: Operator<Admin>,
    req: HttpRequest,
    body: ApiJson<UpdateDeviceSettingsRequest>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let tenant =
        tenants::set_pull_interval(&state, &caller.actor(), expected, body.0.pull_interval_seconds).await?;
    let response = DeviceSettingsResponse {
        pull_interval_seconds: tenant.pull_interval_seconds,
        version: tenant.version,
    };
    Ok(json_with_etag(HttpResponse::Ok(), tenant.version, &response))
}
