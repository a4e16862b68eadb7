//! Where the devices of a policy stand: the devices of a policy by state, and the policy
//! dashboard (counts with and without descendants, compliance per policy version).

use super::devices::DeviceResponse;
use crate::auth::Operator;
use crate::domain::PolicyId;
use crate::error::ApiError;
use crate::http::problem::ProblemDetails;
use crate::http::types::{PageQuery, PageResponse};
use crate::services::policy_status::{self, Compliance, DeviceState, PolicyCounts, PolicyStatus};
use crate::state::AppState;
use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PolicyDevicesQuery {
    #[param(inline)]
    pub state: Option<PolicyDeviceStateDto>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// A state of the devices of a policy.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyDeviceStateDto {
    /// Applied the current config, every field took, no locked field overridden.
    InSync,
    /// Not applied the current config yet (or a locked field still overridden), nothing failed.
    Pending,
    /// A field is reported as failed.
    Failed,
    /// Past its next pull plus the grace period, or offline.
    Stale,
}

impl From<PolicyDeviceStateDto> for DeviceState {
    fn from(s: PolicyDeviceStateDto) -> Self {
        match s {
            PolicyDeviceStateDto::InSync => DeviceState::InSync,
            PolicyDeviceStateDto::Pending => DeviceState::Pending,
            PolicyDeviceStateDto::Failed => DeviceState::Failed,
            PolicyDeviceStateDto::Stale => DeviceState::Stale,
        }
    }
}

/// Devices of a policy and of its descendants, in id order: who has not yet applied the
/// current config, who failed it, who is stale.
#[utoipa::path(
    tag = "audit",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), PolicyDevicesQuery),
    responses((status = 200, body = PageResponse<DeviceResponse>), (status = 400, response = ProblemDetails), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails))
)]
#[get("/policies/{policy_id}/devices")]
pub async fn list_policy_devices(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
    query: web::Query<PolicyDevicesQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let page = PageQuery {
        cursor: q.cursor,
        limit: q.limit,
    }
    .to_request()?;
    let wanted = q.state.map(DeviceState::from);
    let views =
        policy_status::policy_devices(&state, caller.tenant_id, PolicyId(*path), wanted, page).await?;
    Ok(HttpResponse::Ok().json(PageResponse::from_page(views, DeviceResponse::from)))
}

/// Devices counted for a dashboard: `in_sync + pending + failed == assigned`.
#[derive(Serialize, ToSchema)]
pub struct CountsResponse {
    /// Active devices.
    pub assigned: u64,
    pub in_sync: u64,
    pub pending: u64,
    pub failed: u64,
    /// Devices with at least one local override.
    pub overridden: u64,
    /// Devices overriding at least one locked field.
    pub violations: u64,
    /// Devices past their next pull plus the grace period, or offline.
    pub stale: u64,
}

impl From<PolicyCounts> for CountsResponse {
    fn from(c: PolicyCounts) -> Self {
        Self {
            assigned: c.assigned,
            in_sync: c.in_sync,
            pending: c.pending,
            failed: c.failed,
            overridden: c.overridden,
            violations: c.violations,
            stale: c.stale,
        }
    }
}

/// Devices running one version of a policy.
#[derive(Serialize, ToSchema)]
pub struct VersionCountResponse {
    pub version: i32,
    pub devices: u64,
}

/// Which versions of the policy the devices under it (its own and its descendants') run. A
/// device runs version V when the config it was last served took fields from the policy at
/// V and it applied that config. Each device counts once: on a version, in `not_applied`, or
/// in `not_served`.
#[derive(Serialize, ToSchema)]
pub struct ComplianceResponse {
    pub current_version: i32,
    /// Devices running the current version.
    pub on_current_version: u64,
    /// Devices running an older version.
    pub on_older_version: u64,
    /// Devices served a version they have not applied (not yet, or it failed).
    pub not_applied: u64,
    /// Devices that got no field from this policy yet (not pulled since, or every field it
    /// sets comes to them from elsewhere).
    pub not_served: u64,
    /// Devices per version they run, newest first.
    pub versions: Vec<VersionCountResponse>,
}

impl From<Compliance> for ComplianceResponse {
    fn from(c: Compliance) -> Self {
        Self {
            current_version: c.current_version,
            on_current_version: c.on_current,
            on_older_version: c.on_older,
            not_applied: c.not_applied,
            not_served: c.not_served,
            versions: c
                .versions
                .into_iter()
                .map(|(version, devices)| VersionCountResponse { version, devices })
                .collect(),
        }
    }
}

/// One policy on the dashboard. The top-level counts include the devices of descendant
/// policies; `direct` counts only devices assigned to the policy itself.
#[derive(Serialize, ToSchema)]
pub struct PolicySummaryCounts {
    pub policy_id: Uuid,
    pub policy_name: String,
    pub parent_id: Option<Uuid>,
    /// Active devices assigned to the policy or to one of its descendants.
    #[serde(flatten)]
    pub total: CountsResponse,
    /// The same counts for the devices assigned to this policy itself.
    pub direct: CountsResponse,
    pub compliance: ComplianceResponse,
}

impl From<PolicyStatus> for PolicySummaryCounts {
    fn from(p: PolicyStatus) -> Self {
        Self {
            policy_id: p.id.0,
            policy_name: p.name,
            parent_id: p.parent_id.map(|id| id.0),
            total: p.total.into(),
            direct: p.direct.into(),
            compliance: p.compliance.into(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DashboardResponse {
    pub policies: Vec<PolicySummaryCounts>,
}

/// Per policy, with its descendants and on its own: devices assigned, in sync, pending,
/// failed, overriding, violating, stale; and which versions of the policy they run.
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
    let summary = policy_status::dashboard(&state, caller.tenant_id).await?;
    Ok(HttpResponse::Ok().json(DashboardResponse {
        policies: summary.into_iter().map(PolicySummaryCounts::from).collect(),
    }))
}
