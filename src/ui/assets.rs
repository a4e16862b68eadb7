//! The UI's static files, compiled into the binary: no CDN, no external font.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// `(name, content type, bytes)`. htmx is vendored as released (BSD Zero Clause licence); the
/// version is in its name so a browser never mixes an old cached copy with new pages.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "htmx-2.0.4.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx-2.0.4.min.js"),
    ),
    (
        "gmp.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/gmp.js"),
    ),
    (
        "gmp.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/gmp.css"),
    ),
];

pub async fn asset(name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(n, _, _)| *n == name.as_str()) {
        Some((_, content_type, bytes)) => HttpResponse::Ok()
            .content_type(*content_type)
            // Our own files change with a release; a short cache keeps pages fast without
            // serving stale files for long.
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .body(*bytes),
        None => HttpResponse::NotFound().finish(),
    }
}
