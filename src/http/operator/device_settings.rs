//! The tenant's device settings: how often its devices pull.

use crate::auth::{Admin, Operator};
use crate::error::ApiError;
use crate::http::etag::{if_match, json_with_etag};
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::services::tenants;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, get, patch, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
