//! The signed-in operator.

use super::operators::OperatorResponse;
use super::tenants::TenantResponse;
use crate::auth::Operator;
use crate::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::services;
use crate::state::AppState;
use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    pub operator: OperatorResponse,
    pub tenant: TenantResponse,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "correct horse battery staple", "new_password": "a much longer new passphrase"}))]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// At least 12 characters.
    #[schema(min_length = 12)]
    pub new_password: String,
}

/// Who am I: the signed-in operator and its tenant.
#[utoipa::path(
    tag = "auth",
    security(("operator_jwt" = [])),
    responses((status = 200, body = MeResponse), (status = 401, response = ProblemDetails))
)]
#[get("/me")]
pub async fn get_me(state: web::Data<AppState>, caller: Operator) -> Result<HttpResponse, ApiError> {
    let operator = services::operators::get(&state, caller.tenant_id, caller.id).await?;
    let tenant = services::tenants::get(&state, caller.tenant_id).await?;
    Ok(HttpResponse::Ok().json(MeResponse {
        operator: operator.into(),
        tenant: tenant.into(),
    }))
}

/// Change your own password. Ends all your sessions: sign in again with the new password.
///
/// Wrong current passwords are throttled like sign-ins (five, then `429` with `Retry-After`),
/// so a stolen access token cannot be used to guess the password.
#[utoipa::path(
    tag = "auth",
    security(("operator_jwt" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Password changed"),
        (status = 401, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
        (status = 429, response = ProblemDetails),
        (status = 503, response = ProblemDetails),
    )
)]
#[post("/me/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    caller: Operator,
    body: ApiJson<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    services::operators::change_own_password(
        &state,
        &caller.actor(),
        &body.current_password,
        &body.new_password,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
