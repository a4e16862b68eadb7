//! Liveness and readiness probes.

use crate::db;
use crate::error::{ApiError, Code};
use crate::state::AppState;
use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(tag = "operations", responses((status = 200, body = HealthResponse)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse { status: "ok" })
}

/// Readiness: the database answers and the server is not shutting down. Load balancers send
/// traffic only while this is 200.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, body = HealthResponse), (status = 503, response = super::problem::ProblemDetails))
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(ApiError::new(Code::Unavailable, "the server is shutting down"));
    }
    db::ping(&state.db).await.map_err(|error| {
        tracing::warn!(%error, "readiness check failed");
        ApiError::new(Code::Unavailable, "the database is not reachable")
    })?;
    Ok(HttpResponse::Ok().json(HealthResponse { status: "ready" }))
}
