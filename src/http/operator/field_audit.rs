//! The field audit: every field of a device and its history, who inherits or overrides a
//! field, the devices of a policy, and the policy dashboard.

use super::devices::DeviceResponse;
use super::policies::PolicyRefResponse;
use crate::auth::Operator;
use crate::db::repo::device_fields::HistoryEntry;
use crate::domain::device::FieldRecord;
use crate::domain::resolve::Source;
use crate::domain::{DeviceId, PolicyId};
use crate::error::{ApiError, Code};
use crate::http::problem::ProblemDetails;
use crate::http::types::{PageQuery, PageResponse};
use crate::services::field_audit::{self, FieldView, SyncState};
use crate::state::AppState;
use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// What a device reported for a field.
#[derive(Serialize, ToSchema)]
pub struct ReportedResponse {
    /// `inherited`, `overridden`, `failed` or `unsupported`.
    pub state: String,
    /// The local value of an override (for secrets, the device's fingerprint of it).
    #[serde(skip_serializing_if = "Option::is_none")]
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
    let (view, fields) = field_audit::fields(&state, caller.tenant_id, DeviceId(*path)).await?;
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
    #[param(minimum = 1, maximum = 200)]
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
    let entries = field_audit::history(
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
    #[param(minimum = 1, maximum = 200)]
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
    let records = field_audit::inherited(
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
    let records = field_audit::overrides(&state, caller.tenant_id, query.field.as_deref()).await?;
    Ok(HttpResponse::Ok().json(OverridesResponse {
        items: records.into_iter().map(FieldRecordResponse::from).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PolicyDevicesQuery {
    /// `in_sync`, `pending` (not yet applied the current config), `failed` or `stale`.
    #[param(pattern = "^(in_sync|pending|failed|stale)$")]
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
    let views = field_audit::policy_devices(&state, caller.tenant_id, PolicyId(*path), wanted).await?;
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
    let summary = field_audit::dashboard(&state, caller.tenant_id).await?;
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
