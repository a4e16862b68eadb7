//! The field audit: every field of a device and its history, who inherits or overrides a
//! field, the devices of a policy, and the policy dashboard.

use super::devices::DeviceResponse;
use super::policy_versions::PolicyRefResponse;
use crate::auth::Operator;
use crate::domain::device::{ReportedKind, ReportedRecord, ServedSource};
use crate::domain::field_audit::{HistoryEntry, HistoryEvent, InheritedState, OverrideKind};
use crate::domain::resolve::Source;
use crate::domain::sync::SyncState;
use crate::domain::{DeviceId, FieldError, PolicyId};
use crate::error::ApiError;
use crate::http::problem::ProblemDetails;
use crate::http::types::{PageQuery, PageResponse};
use crate::services::field_audit::{self, FieldView, NamedRecord};
use crate::state::AppState;
use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Where a device stands against its current config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncStateDto {
    /// Applied the current config, every field took, no locked field runs a local value.
    InSync,
    /// Not in sync and nothing failed: the current config is not applied yet, or a locked
    /// field still runs a local value.
    Pending,
    /// A field is reported as failed.
    Failed,
}

impl From<SyncState> for SyncStateDto {
    fn from(s: SyncState) -> Self {
        match s {
            SyncState::InSync => SyncStateDto::InSync,
            SyncState::Pending => SyncStateDto::Pending,
            SyncState::Failed => SyncStateDto::Failed,
        }
    }
}

/// Where a served field's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServedSourceDto {
    /// A policy of the device's chain.
    Policy,
    /// The device's own value.
    Device,
    /// No value (a locked field nobody set).
    Unset,
}

impl From<ServedSource> for ServedSourceDto {
    fn from(s: ServedSource) -> Self {
        match s {
            ServedSource::Policy => ServedSourceDto::Policy,
            ServedSource::Device => ServedSourceDto::Device,
            ServedSource::Unset => ServedSourceDto::Unset,
        }
    }
}

/// What a device said it did with a field (also what it sends in a report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportedStateDto {
    /// Applies the served value.
    Inherited,
    /// Runs a local value instead.
    Overridden,
    /// Could not apply the served value.
    Failed,
    /// Its software does not know the field.
    Unsupported,
}

impl From<ReportedKind> for ReportedStateDto {
    fn from(s: ReportedKind) -> Self {
        match s {
            ReportedKind::Inherited => ReportedStateDto::Inherited,
            ReportedKind::Overridden => ReportedStateDto::Overridden,
            ReportedKind::Failed => ReportedStateDto::Failed,
            ReportedKind::Unsupported => ReportedStateDto::Unsupported,
        }
    }
}

impl From<ReportedStateDto> for ReportedKind {
    fn from(s: ReportedStateDto) -> Self {
        match s {
            ReportedStateDto::Inherited => ReportedKind::Inherited,
            ReportedStateDto::Overridden => ReportedKind::Overridden,
            ReportedStateDto::Failed => ReportedKind::Failed,
            ReportedStateDto::Unsupported => ReportedKind::Unsupported,
        }
    }
}

/// What a field history entry records a change of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HistoryEventDto {
    /// What the server sent changed.
    Served,
    /// What the device said changed.
    Reported,
}

impl From<HistoryEvent> for HistoryEventDto {
    fn from(e: HistoryEvent) -> Self {
        match e {
            HistoryEvent::Served => HistoryEventDto::Served,
            HistoryEvent::Reported => HistoryEventDto::Reported,
        }
    }
}

/// What a device reported for a field.
#[derive(Serialize, ToSchema)]
pub struct ReportedResponse {
    pub state: ReportedStateDto,
    /// The local value of an override (for secrets, the device's fingerprint of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub since: DateTime<Utc>,
}

impl From<ReportedRecord> for ReportedResponse {
    fn from(rep: ReportedRecord) -> Self {
        Self {
            state: rep.state.into(),
            local_value: rep.local_value,
            error: rep.error,
            since: rep.since,
        }
    }
}

/// One field of one device in the field audit.
#[derive(Serialize, ToSchema)]
pub struct FieldRecordResponse {
    pub device_id: Uuid,
    /// The device's hostname (as it last reported it).
    pub hostname: String,
    pub field: String,
    /// Fingerprint of the served value (not the value; secrets stay secret).
    pub served_fingerprint: Option<String>,
    pub source: ServedSourceDto,
    pub policy_id: Option<Uuid>,
    pub policy_version: Option<i32>,
    pub locked: bool,
    pub served_since: DateTime<Utc>,
    pub reported: Option<ReportedResponse>,
    /// A local override of a locked field.
    pub violation: bool,
}

impl From<NamedRecord> for FieldRecordResponse {
    fn from(named: NamedRecord) -> Self {
        let r = named.record;
        Self {
            device_id: r.device_id.0,
            hostname: named.hostname,
            field: r.path,
            served_fingerprint: r.served.fingerprint,
            source: r.served.source.into(),
            policy_id: r.served.policy_id,
            policy_version: r.served.policy_version,
            locked: r.served.locked,
            served_since: r.served_since,
            reported: r.reported.map(ReportedResponse::from),
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
    pub source: ServedSourceDto,
    pub locked: bool,
    /// Fingerprint of the value last served (absent before the device was first served it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_fingerprint: Option<String>,
    /// Since when it was served as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_since: Option<DateTime<Utc>>,
    pub reported: Option<ReportedResponse>,
    pub violation: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DeviceFieldsResponse {
    /// The device as it is now.
    pub device: DeviceResponse,
    /// The moment asked about with `?at=`; absent for the current state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    pub fields: Vec<DeviceFieldResponse>,
}

impl From<FieldView> for DeviceFieldResponse {
    fn from(f: FieldView) -> Self {
        let (source, source_policy) = match f.source {
            Some(Source::Policy(p)) => (ServedSourceDto::Policy, Some(p.into())),
            Some(Source::Device) => (ServedSourceDto::Device, None),
            None => (ServedSourceDto::Unset, None),
        };
        let record = f.record;
        Self {
            field: f.path,
            value: f.value,
            source_policy,
            source,
            locked: f.locked,
            violation: record.as_ref().is_some_and(|r| r.violation),
            served_fingerprint: record.as_ref().and_then(|r| r.served.fingerprint.clone()),
            served_since: record.as_ref().map(|r| r.served_since),
            reported: record.and_then(|r| r.reported).map(ReportedResponse::from),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FieldsQuery {
    /// An RFC 3339 time, e.g. `2026-11-28T10:00:00Z`: what the device had at that moment.
    pub at: Option<String>,
}

/// `?at=` as a time, or a `422` saying what is expected.
fn parse_at(at: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(at.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::field(FieldError::new(
                "at",
                "invalid_time",
                format!("must be an RFC 3339 time such as 2026-11-28T10:00:00Z, not `{at}`"),
            ))
        })
}

/// What a device runs and why: every field with its effective value (secrets masked), where it
/// comes from, whether it is locked, and what the device reported.
///
/// With `?at=<RFC 3339 time>`: what the device was served and reported at that moment, from
/// the field history, each field with the policy and version it came from (the value when it
/// is still known: from that policy version, or a device value the device still holds). A
/// time before the device was registered is a `404` that says so.
#[utoipa::path(
    tag = "audit",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path), FieldsQuery),
    responses((status = 200, body = DeviceFieldsResponse), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails), (status = 422, response = ProblemDetails))
)]
#[get("/devices/{device_id}/fields")]
pub async fn get_device_fields(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
    query: web::Query<FieldsQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = DeviceId(*path);
    let at = query.at.as_deref().map(parse_at).transpose()?;
    let (view, fields) = match at {
        Some(at) => field_audit::fields_at(&state, caller.tenant_id, id, at).await?,
        None => field_audit::fields(&state, caller.tenant_id, id).await?,
    };
    Ok(HttpResponse::Ok().json(DeviceFieldsResponse {
        device: view.into(),
        at,
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
    pub event: HistoryEventDto,
    pub field: String,
    pub served_fingerprint: Option<String>,
    pub source: ServedSourceDto,
    pub policy_id: Option<Uuid>,
    pub policy_version: Option<i32>,
    /// Whether the served field was locked; absent on entries from before this was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    pub reported: Option<ReportedResponse>,
    pub recorded_at: DateTime<Utc>,
}

impl From<HistoryEntry> for HistoryEntryResponse {
    fn from(e: HistoryEntry) -> Self {
        let r = e.record;
        Self {
            id: e.id,
            event: e.event.into(),
            field: r.path,
            served_fingerprint: r.served.fingerprint,
            source: r.served.source.into(),
            policy_id: r.served.policy_id,
            policy_version: r.served.policy_version,
            locked: e.locked,
            reported: r.reported.map(ReportedResponse::from),
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

/// How a device holds a field it inherits.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InheritedStateDto {
    /// The device reported it applies the served value.
    Inherited,
    /// Served, not reported by the device yet.
    NotReported,
}

impl From<InheritedStateDto> for InheritedState {
    fn from(s: InheritedStateDto) -> Self {
        match s {
            InheritedStateDto::Inherited => InheritedState::Inherited,
            InheritedStateDto::NotReported => InheritedState::NotReported,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InheritedQuery {
    /// The setting path (an unknown path is a `422` with the nearest known one).
    pub field: String,
    /// Only devices getting it from this policy…
    pub policy_id: Option<Uuid>,
    /// …at this version.
    pub version: Option<i32>,
    /// Only devices that reported applying it (`inherited`) or that have not reported it
    /// yet (`not_reported`); both by default.
    #[param(inline)]
    pub state: Option<InheritedStateDto>,
    pub cursor: Option<Uuid>,
    /// 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// Which devices inherit a field: served it from a policy and reported `inherited`, or not
/// reported it yet (devices that override it or failed it are not listed). Each with its
/// hostname and the policy, version and value fingerprint it got.
#[utoipa::path(
    tag = "audit",
    security(("operator_jwt" = [])),
    params(InheritedQuery),
    responses((status = 200, body = PageResponse<FieldRecordResponse>), (status = 400, response = ProblemDetails), (status = 401, response = ProblemDetails), (status = 422, response = ProblemDetails))
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
        q.state.map(InheritedState::from),
        page,
    )
    .await?;
    Ok(HttpResponse::Ok().json(PageResponse::from_page(records, FieldRecordResponse::from)))
}

/// Which overrides to list.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverrideStateDto {
    /// Local values of fields that are not locked.
    Allowed,
    /// Local values of locked fields.
    Violation,
}

impl From<OverrideStateDto> for OverrideKind {
    fn from(s: OverrideStateDto) -> Self {
        match s {
            OverrideStateDto::Allowed => OverrideKind::Allowed,
            OverrideStateDto::Violation => OverrideKind::Violation,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OverridesQuery {
    /// Only this setting path (default: every field; an unknown path is a `422`).
    pub field: Option<String>,
    /// Only allowed overrides or only violations (default: both).
    #[param(inline)]
    pub state: Option<OverrideStateDto>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\..+$")]
    pub cursor: Option<String>,
    /// 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// One page of overrides, in device and field order.
#[derive(Serialize, ToSchema)]
pub struct OverridesResponse {
    pub items: Vec<FieldRecordResponse>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Which devices override a field (or any field) locally: the hostname, the local value (for
/// secrets its fingerprint) and since when. Overrides of locked fields are flagged as
/// violations.
#[utoipa::path(
    tag = "audit",
    security(("operator_jwt" = [])),
    params(OverridesQuery),
    responses((status = 200, body = OverridesResponse), (status = 400, response = ProblemDetails), (status = 401, response = ProblemDetails), (status = 422, response = ProblemDetails))
)]
#[get("/audit/overrides")]
pub async fn list_overrides(
    state: web::Data<AppState>,
    caller: Operator,
    query: web::Query<OverridesQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = PageQuery {
        cursor: None,
        limit: q.limit,
    }
    .to_request()?
    .limit;
    let page = field_audit::overrides(
        &state,
        caller.tenant_id,
        q.field.as_deref(),
        q.state.map(OverrideKind::from),
        q.cursor.as_deref(),
        limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(OverridesResponse {
        items: page.items.into_iter().map(FieldRecordResponse::from).collect(),
        next_cursor: page.next_cursor,
    }))
}
