//! Enrollment tokens: created by admins, shown once, used by devices to register.

use crate::auth::{Admin, Editor, Operator};
use crate::domain::device::EnrollmentToken;
use crate::domain::{EnrollmentTokenId, PolicyId};
use crate::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::http::types::{PageQuery, PageResponse};
use crate::services::enrollment;
use crate::state::AppState;
use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

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

/// The token as answered; `now` decides its status.
fn token_response(t: EnrollmentToken, secret: Option<String>, now: DateTime<Utc>) -> EnrollmentTokenResponse {
    EnrollmentTokenResponse {
        status: t.unusable_because(now).unwrap_or("usable"),
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
    Ok(HttpResponse::Created().json(token_response(token, Some(secret), state.clock.now())))
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
    let now = state.clock.now();
    Ok(HttpResponse::Ok().json(PageResponse::from_page(page, |t| token_response(t, None, now))))
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
    Ok(HttpResponse::Ok().json(token_response(token, None, state.clock.now())))
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
