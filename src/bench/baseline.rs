//! The baseline: the least a device pull can cost on actix-web 4 — a SHA-256 bearer lookup
//! among as many tokens as the fleet, a pre-built body of the same size as the real config,
//! its `ETag`, and `304` on `If-None-Match`. It runs as its own process (`gmp-bench baseline`)
//! so its CPU is measured the same way as the server's.

use super::BenchDevice;
use super::load::PULL_PATH;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::TcpListener;

/// Tokens (by SHA-256) and the pre-built answers they get.
pub struct Baseline {
    tokens: HashMap<[u8; 32], usize>,
    /// The quoted `ETag` and the body of each distinct config.
    configs: Vec<(String, Bytes)>,
}

impl Baseline {
    /// One pre-built body of `body_bytes` bytes per distinct `ETag` among `devices`.
    pub fn new(devices: &[BenchDevice], body_bytes: usize) -> Self {
        let mut by_etag: HashMap<&str, usize> = HashMap::new();
        let mut configs = Vec::new();
        let mut tokens = HashMap::with_capacity(devices.len());
        for device in devices {
            let index = *by_etag.entry(device.etag.as_str()).or_insert_with(|| {
                configs.push((format!("\"{}\"", device.etag), body(&device.etag, body_bytes)));
                configs.len() - 1
            });
            tokens.insert(Sha256::digest(device.credential.as_bytes()).into(), index);
        }
        Self { tokens, configs }
    }

    fn answer(&self, req: &HttpRequest) -> HttpResponse {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(&index) = token.and_then(|t| {
            let digest: [u8; 32] = Sha256::digest(t.as_bytes()).into();
            self.tokens.get(&digest)
        }) else {
            return HttpResponse::Unauthorized().finish();
        };
        let (etag, body) = &self.configs[index];
        let unchanged = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes());
        if unchanged {
            return HttpResponse::NotModified()
                .insert_header((header::ETAG, etag.as_str()))
                .finish();
        }
        HttpResponse::Ok()
            .insert_header((header::ETAG, etag.as_str()))
            .content_type("application/json")
            .body(body.clone())
    }
}

/// A JSON document of exactly `size` bytes (at least its fixed part) naming the config.
fn body(etag: &str, size: usize) -> Bytes {
    let head = format!("{{\"config_hash\":\"{etag}\",\"padding\":\"");
    let tail = "\"}";
    let pad = size.saturating_sub(head.len() + tail.len());
    Bytes::from(format!("{head}{}{tail}", "x".repeat(pad)))
}

async fn pull(state: web::Data<Baseline>, req: HttpRequest) -> HttpResponse {
    state.answer(&req)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// Serves the baseline on `listener` until the process ends (or the server is stopped).
pub fn server(
    listener: TcpListener,
    baseline: Baseline,
    workers: Option<usize>,
) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(baseline);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route(PULL_PATH, web::get().to(pull))
            .route("/healthz", web::get().to(healthz))
    });
    if let Some(workers) = workers {
        server = server.workers(workers.max(1));
    }
    Ok(server.listen(listener)?.run())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Group;

    #[test]
    fn bodies_have_the_requested_size() {
        assert_eq!(body("abc", 3000).len(), 3000);
        assert!(body("abc", 1).len() > 1, "never shorter than the JSON needs");
        let parsed: serde_json::Value = serde_json::from_slice(&body("abc", 500)).unwrap();
        assert_eq!(parsed["config_hash"], "abc");
    }

    #[test]
    fn tokens_share_the_body_of_their_etag() {
        let device = |c: &str, e: &str| BenchDevice {
            credential: c.into(),
            etag: e.into(),
            group: Group::Steady,
        };
        let baseline = Baseline::new(&[device("a", "1"), device("b", "1"), device("c", "2")], 100);
        assert_eq!(baseline.configs.len(), 2);
        assert_eq!(baseline.tokens.len(), 3);
    }
}
