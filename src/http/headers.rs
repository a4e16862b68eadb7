//! Security headers on every response: no MIME sniffing, no referrer leaking ids in URLs, no
//! cache (browser, proxy) keeping an API or device answer that may carry a secret, and HSTS
//! when the server itself speaks TLS.

use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

/// One year, the value HSTS preload lists expect.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let no_store = no_store(req.path());
    let tls = tls(&req);
    let mut response = next.call(req).await?;
    apply(response.headers_mut(), no_store, tls);
    Ok(response)
}

/// Every answer under these prefixes may carry a token, a credential or a device's config.
/// `no-store` does not interfere with the device's `If-None-Match`/`304`: the device keeps its
/// own copy and the server compares ETags; no cache in between is involved.
pub fn no_store(path: &str) -> bool {
    ["/api/", "/device/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// Whether this server speaks TLS itself (then browsers are told to never use plain HTTP).
pub fn tls(req: &ServiceRequest) -> bool {
    req.app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.config.tls_cert_file.is_some())
}

pub fn apply(headers: &mut HeaderMap, no_store: bool, tls: bool) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if no_store {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if tls {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
}
