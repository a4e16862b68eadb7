//! Sign-in, token refresh and sign-out.

use super::operators::OperatorResponse;
use crate::error::ApiError;
use crate::http::client_address::client_address;
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::services::auth::{self, TokenPair};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ops@example.com", "password": "correct horse battery staple"}))]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"refresh_token": "gmp_rt_3q2-7wzGk1c0lJpXyY5oUu9Q2b0fV7sTn8mR4eA6dHk"}))]
pub struct RefreshRequest {
    /// The refresh token from the last sign-in or refresh. Each one works once.
    pub refresh_token: String,
}

/// A new access token and the refresh token that renews it.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// JWT for `Authorization: Bearer …` on operator routes.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// Opaque; exchange it at `/api/v1/auth/refresh` before the access token expires.
    pub refresh_token: String,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: u64,
    pub operator: OperatorResponse,
}

impl From<TokenPair> for TokenResponse {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            token_type: "Bearer",
            expires_in: pair.access_expires_in,
            refresh_token: pair.refresh_token,
            refresh_expires_in: pair.refresh_expires_in,
            operator: pair.operator.into(),
        }
    }
}

/// Sign in with email and password.
///
/// Returns a short-lived access token (a JWT) and a refresh token. A wrong email and a wrong
/// password get the same answer. After five failures for one email (or twenty from one client
/// address) each further try must wait, 5 s at first and doubling up to 5 minutes: such tries
/// get `429` with `Retry-After`, whether the password is right or not. A successful sign-in
/// resets the email's count.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Problem details (`urn:gmp:problem:<code>`) with code `invalid_credentials`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, response = ProblemDetails),
        (status = 429, response = ProblemDetails),
        (status = 503, response = ProblemDetails),
    )
)]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let address = client_address(&req, &state.config.trusted_proxies);
    let pair = auth::login(&state, &body.0.email, &body.0.password, address).await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(pair)))
}

/// Exchange a refresh token for a new access token and a new refresh token.
///
/// Refresh tokens rotate: the one presented stops working. Presenting a refresh token that was
/// already used revokes every token of that sign-in, because one of the two holders is not
/// the operator.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Problem details (`urn:gmp:problem:<code>`) with code `invalid_refresh_token`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, response = ProblemDetails),
    )
)]
#[post("/auth/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    body: ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let pair = auth::refresh(&state, &body.0.refresh_token).await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(pair)))
}

/// Sign out: revoke the refresh token and every token rotated from the same sign-in.
///
/// Always `204`, whether or not the token was known. The access token stays valid until it
/// expires (at most its lifetime, 15 minutes by default).
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses((status = 204, description = "Signed out"), (status = 422, response = ProblemDetails))
)]
#[post("/auth/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    body: ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    auth::logout(&state, &body.0.refresh_token).await?;
    Ok(HttpResponse::NoContent().finish())
}
