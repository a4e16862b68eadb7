//! Re-registrations of known hardware ids, waiting for an operator's approval.

use super::devices::{DeviceResponse, device_response};
use crate::auth::{Editor, Operator};
use crate::domain::DeviceId;
use crate::domain::device::Reregistration;
use crate::error::ApiError;
use crate::http::device::DeviceKindDto;
use crate::http::problem::ProblemDetails;
use crate::services::reregistrations;
use crate::state::AppState;
use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A registration that named this device's hardware id, waiting for approval. Approve it when
/// the appliance was reinstalled; reject it when you do not recognise it.
#[derive(Serialize, ToSchema)]
pub struct ReregistrationResponse {
    pub id: Uuid,
    pub device_id: Uuid,
    pub kind: DeviceKindDto,
    /// The hostname and software version the requester reported.
    pub hostname: String,
    pub software_version: String,
    /// The enrollment token it registered with.
    pub enrollment_token_id: Uuid,
    pub requested_at: DateTime<Utc>,
}

impl From<Reregistration> for ReregistrationResponse {
    fn from(r: Reregistration) -> Self {
        Self {
            id: r.id.0,
            device_id: r.device_id.0,
            kind: r.kind.into(),
            hostname: r.hostname,
            software_version: r.software_version,
            enrollment_token_id: r.enrollment_token_id.0,
            requested_at: r.requested_at,
        }
    }
}

/// The re-registration waiting for a device, if any (`404` when none waits).
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path)),
    responses((status = 200, body = ReregistrationResponse), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails))
)]
#[get("/devices/{device_id}/reregistration")]
pub async fn get_reregistration(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let request = reregistrations::get(&state, caller.tenant_id, DeviceId(*path)).await?;
    Ok(HttpResponse::Ok().json(ReregistrationResponse::from(request)))
}

/// Approve the waiting re-registration: the requester's credential becomes the device's, the old
/// credential stops working at once, and the reported hostname and version are taken. The
/// device keeps its id, policy, device values and audit.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path)),
    responses(
        (status = 200, body = DeviceResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, description = "Problem details (`urn:gmp:problem:<code>`) with code `conflict` or `device_decommissioned`", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
#[post("/devices/{device_id}/reregistration/approve")]
pub async fn approve_reregistration(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(device_response(
        reregistrations::approve(&state, &caller.actor(), DeviceId(*path)).await?,
    ))
}

/// Reject the waiting re-registration: its credential never works; the device keeps its own.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path)),
    responses((status = 204), (status = 401, response = ProblemDetails), (status = 403, response = ProblemDetails), (status = 404, response = ProblemDetails))
)]
#[post("/devices/{device_id}/reregistration/reject")]
pub async fn reject_reregistration(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    reregistrations::reject(&state, &caller.actor(), DeviceId(*path)).await?;
    Ok(HttpResponse::NoContent().finish())
}
