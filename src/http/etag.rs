//! ETags and `If-Match`: every mutable resource carries a version; its strong ETag is
//! `"<version>"`. Updates must name the version they read (`428` without it, `412` if stale).

use crate::domain::Expected;
use crate::error::{ApiError, Code};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use serde::Serialize;

pub fn etag(version: i32) -> String {
    format!("\"{version}\"")
}

/// The precondition of an `If-Match` header. `*` means "whatever version is current".
pub fn if_match(req: &HttpRequest) -> Result<Expected, ApiError> {
    let value = req.headers().get(header::IF_MATCH).ok_or_else(|| {
        ApiError::new(
            Code::PreconditionRequired,
            "send `If-Match` with the ETag you read, so concurrent edits are not lost",
        )
    })?;
    let invalid = || {
        ApiError::new(
            Code::InvalidHeader,
            "If-Match must be `*` or one strong ETag such as \"3\"",
        )
    };
    let value = value.to_str().map_err(|_| invalid())?.trim();
    if value == "*" {
        return Ok(Expected::Any);
    }
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse::<i32>().ok())
        .map(Expected::Version)
        .ok_or_else(invalid)
}

/// `status` with the body as JSON and the resource's ETag.
pub fn json_with_etag(mut builder: HttpResponseBuilder, version: i32, body: &impl Serialize) -> HttpResponse {
    builder.insert_header((header::ETAG, etag(version))).json(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn parse(value: Option<&str>) -> Result<Expected, Code> {
        let mut req = TestRequest::default();
        if let Some(value) = value {
            req = req.insert_header((header::IF_MATCH, value));
        }
        if_match(&req.to_http_request()).map_err(|e| e.code)
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(parse(Some("\"7\"")), Ok(Expected::Version(7)));
        assert_eq!(parse(Some("*")), Ok(Expected::Any));
        assert_eq!(parse(None), Err(Code::PreconditionRequired));
        assert_eq!(parse(Some("W/\"7\"")), Err(Code::InvalidHeader));
        assert_eq!(parse(Some("7")), Err(Code::InvalidHeader));
        assert_eq!(etag(7), "\"7\"");
    }
}
