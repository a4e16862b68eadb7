//! Rendering `ApiError` as RFC 9457 `application/problem+json`, and routing every framework
//! rejection (bad query, bad path, unknown route) through it.

use crate::domain::FieldError;
use crate::error::{ApiError, Code};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use utoipa::{ToResponse, ToSchema};

tokio::task_local! {
    /// The id of the request being served, for error bodies and logs.
    pub static REQUEST_ID: String;
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
            request_id: REQUEST_ID.try_with(Clone::clone).ok(),
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
