//! Tenant provisioning, for platform admins.

use super::operators::OperatorResponse;
use crate::auth::{Operator, PlatformAdmin};
use crate::domain::{self, Role, TenantId};
use crate::error::ApiError;
use crate::http::etag::{if_match, json_with_etag};
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::http::types::{PageQuery, PageResponse};
use crate::services::operators::NewOperatorInput;
use crate::services::tenants;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// An MSP organisation.
#[derive(Serialize, ToSchema)]
pub struct TenantResponse {
    pub id: Uuid,
    #[schema(example = "Acme MSP")]
    pub name: String,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<domain::Tenant> for TenantResponse {
    fn from(t: domain::Tenant) -> Self {
        Self {
            id: t.id.0,
            name: t.name,
            version: t.version,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Acme MSP",
    "admin": {"email": "owner@acme.example", "display_name": "Acme owner", "password": "a long initial passphrase"}
}))]
pub struct CreateTenantRequest {
    pub name: String,
    /// The tenant's first admin, who then manages its operators.
    pub admin: TenantAdminRequest,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantAdminRequest {
    pub email: String,
    pub display_name: Option<String>,
    /// At least 12 characters.
    #[schema(min_length = 12)]
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreateTenantResponse {
    pub tenant: TenantResponse,
    pub admin: OperatorResponse,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Acme Managed Services"}))]
pub struct UpdateTenantRequest {
    pub name: String,
}

/// Create a tenant (an MSP) together with its first admin. Platform admins only.
#[utoipa::path(
    tag = "tenants",
    security(("operator_jwt" = [])),
    request_body = CreateTenantRequest,
    responses(
        (status = 201, body = CreateTenantResponse, headers(("ETag" = String), ("Location" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
    )
)]
#[post("/tenants")]
pub async fn create_tenant(
    state: web::Data<AppState>,
    caller: Operator<PlatformAdmin>,
    body: ApiJson<CreateTenantRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let admin = NewOperatorInput {
        email: body.admin.email,
        display_name: body.admin.display_name,
        role: Role::Admin,
        password: body.admin.password,
    };
    let (tenant, admin) = tenants::create(&state, &caller.actor(), &body.name, admin).await?;
    let mut created = HttpResponse::Created();
    created.insert_header((header::LOCATION, format!("/api/v1/tenants/{}", tenant.id)));
    let version = tenant.version;
    Ok(json_with_etag(
        created,
        version,
        &CreateTenantResponse {
            tenant: tenant.into(),
            admin: admin.into(),
        },
    ))
}

/// List all tenants. Platform admins only.
#[utoipa::path(
    tag = "tenants",
    security(("operator_jwt" = [])),
    params(PageQuery),
    responses(
        (status = 200, body = PageResponse<TenantResponse>),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
    )
)]
#[get("/tenants")]
pub async fn list_tenants(
    state: web::Data<AppState>,
    _caller: Operator<PlatformAdmin>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = tenants::list(&state, query.to_request()?).await?;
    Ok(HttpResponse::Ok().json(PageResponse::from_page(page, TenantResponse::from)))
}

/// Get one tenant. Platform admins only; operators see their own tenant at `/api/v1/me`.
#[utoipa::path(
    tag = "tenants",
    security(("operator_jwt" = [])),
    params(("tenant_id" = Uuid, Path)),
    responses(
        (status = 200, body = TenantResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/tenants/{tenant_id}")]
pub async fn get_tenant(
    state: web::Data<AppState>,
    _caller: Operator<PlatformAdmin>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenants::get(&state, TenantId(*path)).await?;
    Ok(json_with_etag(
        HttpResponse::Ok(),
        tenant.version,
        &TenantResponse::from(tenant),
    ))
}

/// Rename a tenant. Platform admins only; needs `If-Match`.
#[utoipa::path(
    tag = "tenants",
    security(("operator_jwt" = [])),
    params(("tenant_id" = Uuid, Path), ("If-Match" = String, Header, description = "ETag of the tenant as read")),
    request_body = UpdateTenantRequest,
    responses(
        (status = 200, body = TenantResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 412, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
        (status = 428, response = ProblemDetails),
    )
)]
#[patch("/tenants/{tenant_id}")]
pub async fn update_tenant(
    state: web::Data<AppState>,
    caller: Operator<PlatformAdmin>,
    req: HttpRequest,
    path: web::Path<Uuid>,
    body: ApiJson<UpdateTenantRequest>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let tenant = tenants::rename(&state, &caller.actor(), TenantId(*path), expected, &body.0.name).await?;
    Ok(json_with_etag(
        HttpResponse::Ok(),
        tenant.version,
        &TenantResponse::from(tenant),
    ))
}
