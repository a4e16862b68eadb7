//! Rendering `ApiError` as RFC 9457 `application/problem+json`, and routing every framework
//! rejection (bad query, bad path, unknown route) through it.

use crate::domain::FieldError;
use crate::error::{ApiError, Code};
use actix_web::dev::ResourceDef;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use std::sync::LazyLock;
use utoipa::{ToResponse, ToSchema};

tokio::task_local! {
    /// The id of the request being served, for error bodies and logs.
    pub static REQUEST_ID: std::sync::Arc<str>;
}

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error, as RFC 9457 problem details. Match on `code`; `detail` is for humans.
#[derive(Debug, Serialize, ToSchema, ToResponse)]
#[response(
    description = "An error, as RFC 9457 problem details",
    content_type = "application/problem+json"
)]
#[schema(example = json!({
    "type": "urn:gmp:problem:validation_failed",
    "title": "The request has invalid fields",
    "status": 422,
    "detail": "`email` must contain `@`",
    "code": "validation_failed",
    "errors": [{"field": "email", "code": "invalid_email", "message": "must contain `@`"}],
    "request_id": "0f8e0c55-8e7a-4a5c-9a5e-3c1b1f2d4e6a"
}))]
pub struct ProblemDetails {
    /// URI naming the problem type: `urn:gmp:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Field-level details, for validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldErrorBody>,
    /// Quote it when reporting a problem; it is also in the server log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One invalid field.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldErrorBody {
    /// Dotted path of the field in the request.
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl ProblemDetails {
    /// The problem details of `error`, as answered with `status`.
    pub fn of(error: &ApiError, status: StatusCode) -> Self {
        Self {
            problem_type: format!("urn:gmp:problem:{}", error.code),
            title: error.code.title(),
            status: status.as_u16(),
            detail: error.detail.clone(),
            code: error.code.as_str(),
            errors: error.errors.iter().map(FieldErrorBody::from).collect(),
            request_id: REQUEST_ID.try_with(|id| id.to_string()).ok(),
        }
    }
}

impl From<&FieldError> for FieldErrorBody {
    fn from(e: &FieldError) -> Self {
        Self {
            field: e.field.clone(),
            code: e.code,
            message: e.message.clone(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            match self.cause() {
                Some(cause) => tracing::error!(code = %self.code, error = %cause, "request failed"),
                None => tracing::error!(code = %self.code, detail = %self.detail, "request failed"),
            }
        }
        let body = ProblemDetails::of(self, status);
        let mut response = HttpResponse::build(status);
        response.content_type(PROBLEM_JSON);
        if status == StatusCode::UNAUTHORIZED {
            let challenge = match self.code {
                Code::InvalidToken => r#"Bearer realm="gmp", error="invalid_token""#,
                _ => r#"Bearer realm="gmp""#,
            };
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.body(serde_json::to_vec(&body).unwrap_or_default())
    }
}

/// Registers problem+json handlers for query and path extraction failures.
pub fn extractor_configs() -> (web::QueryConfig, web::PathConfig) {
    let query = web::QueryConfig::default().error_handler(super::extract_errors::query_error);
    let path = web::PathConfig::default().error_handler(super::extract_errors::path_error);
    (query, path)
}

/// Answers any request that matched no route.
pub async fn route_not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        Code::RouteNotFound,
        format!("no route for {} {}", req.method(), req.path()),
    )
    .error_response()
}

/// The API's paths (as route patterns) and the methods each takes, from the OpenAPI document,
/// which lists every API route.
static API_ROUTES: LazyLock<Vec<(ResourceDef, Vec<&'static str>)>> = LazyLock::new(|| {
    super::spec()
        .paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods = [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ];
            let taken = methods
                .into_iter()
                .filter_map(|(method, taken)| taken.then_some(method))
                .collect();
            (ResourceDef::new(path.as_str()), taken)
        })
        .collect()
});

/// Answers an API request that matched no route: `405` with `Allow` when the path is a route
/// that takes other methods (each route answers one method, so actix itself only sees "no
/// route"), else `404`.
pub async fn api_route_not_found(req: HttpRequest) -> HttpResponse {
    match method_not_allowed(&req) {
        Some(response) => response,
        None => route_not_found(req).await,
    }
}

/// The methods the request's path takes. A route spelled out in full (`/devices/settings:bulk`)
/// wins over one with a parameter that its text also fits (`/devices/{device_id}`).
fn allowed_methods(path: &str) -> Vec<&'static str> {
    let matching: Vec<_> = API_ROUTES
        .iter()
        .filter(|(pattern, _)| pattern.is_match(path))
        .collect();
    let literal: Vec<_> = matching
        .iter()
        .filter(|(pattern, _)| !pattern.pattern().unwrap_or("{").contains('{'))
        .collect();
    let chosen: Vec<_> = if literal.is_empty() {
        matching.iter().collect()
    } else {
        literal
    };
    chosen
        .into_iter()
        .flat_map(|(_, methods)| methods.iter().copied())
        .collect()
}

/// `405` with `Allow` when the request's path is a route that does not take its method.
pub fn method_not_allowed(req: &HttpRequest) -> Option<HttpResponse> {
    let allowed = allowed_methods(req.path());
    if allowed.is_empty() || allowed.contains(&req.method().as_str()) {
        return None;
    }
    let allow = allowed.join(", ");
    let mut response = ApiError::new(
        Code::MethodNotAllowed,
        format!("{} takes {allow}, not {}", req.path(), req.method()),
    )
    .error_response();
    if let Ok(value) = header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Some(response)
}
