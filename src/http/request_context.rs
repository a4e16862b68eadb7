//! Per-request context: a request id (taken from a sane incoming `x-request-id` or generated),
//! a tracing span carrying it and, once authenticated, the tenant, and one log line per request.

use super::problem::REQUEST_ID;
use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The request id, in the request's extensions for extractors. Shared, not copied: the
/// extensions, the task-local for error bodies and the response header all carry it.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

fn incoming_request_id(req: &ServiceRequest) -> Option<Arc<str>> {
    let value = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let sane = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    sane.then(|| Arc::from(value))
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let request_id = incoming_request_id(&req).unwrap_or_else(|| {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        Arc::from(&*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text))
    });
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        request_id = %request_id,
        tenant_id = tracing::field::Empty,
        operator_id = tracing::field::Empty,
        device_id = tracing::field::Empty,
    );
    let started = Instant::now();
    let quiet = matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics");
    let method = req.method().clone();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());
    let mut response = REQUEST_ID
        .scope(request_id.clone(), next.call(req).instrument(span.clone()))
        .await?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        metrics.http_request(&route, method.as_str(), status, elapsed);
    }
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if quiet {
            tracing::debug!(status, latency_ms, "request served");
        } else {
            tracing::info!(status, latency_ms, "request served");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}
