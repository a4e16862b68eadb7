//! `ApiJson<T>`: the JSON body extractor. Unlike `web::Json` it enforces the configured size
//! limit while streaming, and reports the exact field that failed to deserialize.

use crate::domain::FieldError;
use crate::error::{ApiError, Code};
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

/// A JSON request body deserialized into `T` (which should `deny_unknown_fields`).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(1024 * 1024, |state| state.config.max_body_bytes);
        let checked = check_headers(req, limit);
        let mut payload = payload.take();
        Box::pin(async move {
            checked?;
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk
                    .map_err(|e| ApiError::new(Code::MalformedJson, format!("cannot read the body: {e}")))?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(ApiJson)
        })
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        Code::PayloadTooLarge,
        format!("the body is larger than {limit} bytes"),
    )
}

fn check_headers(req: &HttpRequest, limit: usize) -> Result<(), ApiError> {
    let mime = req.mime_type().ok().flatten();
    let is_json = mime
        .as_ref()
        .is_some_and(|m| m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"));
    if !is_json {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "send the body as JSON with `Content-Type: application/json`",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large(limit));
    }
    Ok(())
}

/// Deserializes a body: syntax errors are `400 malformed_json`; type, missing-field and
/// unknown-field errors are `422 validation_failed` naming the field.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_data() {
            ApiError::field(field_error(&path, &inner))
        } else {
            ApiError::new(
                Code::MalformedJson,
                format!("the body is not valid JSON: {inner}"),
            )
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::new(Code::MalformedJson, format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

fn field_error(path: &str, error: &serde_json::Error) -> FieldError {
    let message = error.to_string();
    // serde names the offending key in backticks; its line/column suffix helps nobody here.
    let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
    let named = message.split('`').nth(1);
    let join = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let at_path = if path == "." {
        "(body)".to_owned()
    } else {
        path.to_owned()
    };
    // The path already ends at an unknown key, but stops at the object missing a key.
    let (field, code) = if message.starts_with("unknown field") {
        (at_path, "unknown_field")
    } else if message.starts_with("missing field") {
        (join(named.unwrap_or("?")), "required")
    } else {
        (at_path, "invalid_type")
    };
    FieldError::new(field, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        nested: Option<Nested>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        count: u32,
    }

    fn error_of(body: &str) -> ApiError {
        parse::<Body>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        assert_eq!(error_of("{\"name\": ").code, Code::MalformedJson);
        assert_eq!(error_of("{\"name\": \"x\"} trailing").code, Code::MalformedJson);
    }

    #[test]
    fn data_errors_name_the_field() {
        let unknown = error_of(r#"{"name": "x", "colour": 1}"#);
        assert_eq!(unknown.code, Code::ValidationFailed);
        assert_eq!(
            (unknown.errors[0].field.as_str(), unknown.errors[0].code),
            ("colour", "unknown_field")
        );

        let missing = error_of("{}");
        assert_eq!(
            (missing.errors[0].field.as_str(), missing.errors[0].code),
            ("name", "required")
        );

        let wrong_type = error_of(r#"{"name": "x", "nested": {"count": "three"}}"#);
        assert_eq!(
            (wrong_type.errors[0].field.as_str(), wrong_type.errors[0].code),
            ("nested.count", "invalid_type")
        );
    }
}
