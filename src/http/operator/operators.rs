//! A tenant's operators. Everyone reads; admins create, change and remove.

use crate::auth::{Admin, Operator};
use crate::domain::{self, OperatorId, Role};
use crate::error::ApiError;
use crate::http::etag::{if_match, json_with_etag};
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::http::types::{PageQuery, PageResponse};
use crate::services::operators::{self, NewOperatorInput, OperatorUpdate};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// An operator. Passwords are never returned.
#[derive(Serialize, ToSchema)]
pub struct OperatorResponse {
    pub id: Uuid,
    pub tenant_id: Uuid,
    #[schema(example = "ops@example.com")]
    pub email: String,
    pub display_name: String,
    pub role: RoleDto,
    /// Platform admins provision tenants.
    pub platform_admin: bool,
    /// Also sent as the `ETag`; send it back in `If-Match` to update.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<domain::Operator> for OperatorResponse {
    fn from(o: domain::Operator) -> Self {
        Self {
            id: o.id.0,
            tenant_id: o.tenant_id.0,
            email: o.email,
            display_name: o.display_name,
            role: o.role.into(),
            platform_admin: o.platform_admin,
            version: o.version,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// `admin` manages operators and everything else; `editor` edits policies and devices;
/// `viewer` only reads.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleDto {
    Admin,
    Editor,
    Viewer,
}

impl From<Role> for RoleDto {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => RoleDto::Admin,
            Role::Editor => RoleDto::Editor,
            Role::Viewer => RoleDto::Viewer,
        }
    }
}

impl From<RoleDto> for Role {
    fn from(role: RoleDto) -> Self {
        match role {
            RoleDto::Admin => Role::Admin,
            RoleDto::Editor => Role::Editor,
            RoleDto::Viewer => Role::Viewer,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "jane@example.com", "display_name": "Jane Doe", "role": "editor", "password": "a long initial passphrase"}))]
pub struct CreateOperatorRequest {
    pub email: String,
    /// Defaults to the part of the email before `@`.
    pub display_name: Option<String>,
    pub role: RoleDto,
    /// Initial password, at least 12 characters.
    #[schema(min_length = 12)]
    pub password: String,
}

impl From<CreateOperatorRequest> for NewOperatorInput {
    fn from(r: CreateOperatorRequest) -> Self {
        Self {
            email: r.email,
            display_name: r.display_name,
            role: r.role.into(),
            password: r.password,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "viewer"}))]
pub struct UpdateOperatorRequest {
    pub display_name: Option<String>,
    /// Changing the role ends the operator's sessions.
    pub role: Option<RoleDto>,
    /// Sets a new password (e.g. after a forgotten one) and ends the operator's sessions.
    pub password: Option<String>,
}

/// Create an operator in your tenant.
///
/// An email of your tenant is a `409` saying so. Emails are unique across the platform, so an
/// email another tenant uses is refused too, with `409` and the field code
/// `email_unavailable`, which names no tenant. After five such refusals every creation of your
/// tenant waits (`429` with `Retry-After`, one minute doubling up to an hour).
#[utoipa::path(
    tag = "operators",
    security(("operator_jwt" = [])),
    request_body = CreateOperatorRequest,
    responses(
        (status = 201, body = OperatorResponse, headers(("ETag" = String), ("Location" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
        (status = 429, response = ProblemDetails),
        (status = 503, response = ProblemDetails),
    )
)]
#[post("/operators")]
pub async fn create_operator(
    state: web::Data<AppState>,
    caller: Operator<Admin>,
    body: ApiJson<CreateOperatorRequest>,
) -> Result<HttpResponse, ApiError> {
    let operator = operators::create(&state, &caller.actor(), body.0.into(), false).await?;
    let mut created = HttpResponse::Created();
    created.insert_header((header::LOCATION, format!("/api/v1/operators/{}", operator.id)));
    Ok(json_with_etag(
        created,
        operator.version,
        &OperatorResponse::from(operator),
    ))
}

/// List the operators of your tenant.
#[utoipa::path(
    tag = "operators",
    security(("operator_jwt" = [])),
    params(PageQuery),
    responses(
        (status = 200, body = PageResponse<OperatorResponse>),
        (status = 400, response = ProblemDetails),
        (status = 401, response = ProblemDetails),
    )
)]
#[get("/operators")]
pub async fn list_operators(
    state: web::Data<AppState>,
    caller: Operator,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = operators::list(&state, caller.tenant_id, query.to_request()?).await?;
    Ok(HttpResponse::Ok().json(PageResponse::from_page(page, OperatorResponse::from)))
}

/// Get one operator of your tenant.
#[utoipa::path(
    tag = "operators",
    security(("operator_jwt" = [])),
    params(("operator_id" = Uuid, Path)),
    responses(
        (status = 200, body = OperatorResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/operators/{operator_id}")]
pub async fn get_operator(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let operator = operators::get(&state, caller.tenant_id, OperatorId(*path)).await?;
    Ok(json_with_etag(
        HttpResponse::Ok(),
        operator.version,
        &OperatorResponse::from(operator),
    ))
}

/// Change an operator's name, role or password. Needs `If-Match`.
///
/// A tenant always keeps at least one admin: demoting the last one is a `409`.
#[utoipa::path(
    tag = "operators",
    security(("operator_jwt" = [])),
    params(("operator_id" = Uuid, Path), ("If-Match" = String, Header, description = "ETag of the operator as read")),
    request_body = UpdateOperatorRequest,
    responses(
        (status = 200, body = OperatorResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 412, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
        (status = 428, response = ProblemDetails),
    )
)]
#[patch("/operators/{operator_id}")]
pub async fn update_operator(
    state: web::Data<AppState>,
    caller: Operator<Admin>,
    req: HttpRequest,
    path: web::Path<Uuid>,
    body: ApiJson<UpdateOperatorRequest>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let body = body.0;
    let update = OperatorUpdate {
        display_name: body.display_name,
        role: body.role.map(Role::from),
        password: body.password,
    };
    let operator = operators::update(&state, &caller.actor(), OperatorId(*path), expected, update).await?;
    Ok(json_with_etag(
        HttpResponse::Ok(),
        operator.version,
        &OperatorResponse::from(operator),
    ))
}

/// Remove an operator. Needs `If-Match`. The last admin of a tenant cannot be removed.
#[utoipa::path(
    tag = "operators",
    security(("operator_jwt" = [])),
    params(("operator_id" = Uuid, Path), ("If-Match" = String, Header, description = "ETag of the operator as read")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 412, response = ProblemDetails),
        (status = 428, response = ProblemDetails),
    )
)]
#[delete("/operators/{operator_id}")]
pub async fn delete_operator(
    state: web::Data<AppState>,
    caller: Operator<Admin>,
    req: HttpRequest,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    operators::delete(&state, &caller.actor(), OperatorId(*path), expected).await?;
    Ok(HttpResponse::NoContent().finish())
}
