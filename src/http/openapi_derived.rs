//! What the document derives from each operation's inputs: the error answers it documents, the
//! form of `If-Match`, and a description for every answer.
//!
//! The extractors a handler uses decide most of its error statuses: a `web::Path` can fail with
//! `400 invalid_path` and name a missing resource (`404`), a `web::Query` with
//! `400 invalid_query`, a JSON body with `400 malformed_json`, `413`, `415` and `422`, `If-Match`
//! with `400 invalid_header`, `412` and `428`, and the bearer extractors with `401`. Every route
//! that reaches the database can be told to come back later (`503`) and can fail (`500`). Writing
//! these by hand on each route loses some, so they are added here from the operation's
//! parameters, body and security; a route annotates only the statuses its own logic adds (`403`
//! for a role, `409`, `429`, `502`, …).
//!
//! Each derived answer names the problem codes it can carry, so a client knows what `code` to
//! expect under each status.

use super::problem::PROBLEM_JSON;
use crate::error::Code;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};

/// The one route that answers without touching anything that can fail.
const INFALLIBLE: &[&str] = &["/healthz"];

/// What `http::etag::if_match` accepts: `*` or one strong ETag of a version.
const IF_MATCH_PATTERN: &str = r#"^(\*|"[0-9]{1,9}")$"#;

/// Completes every operation of `api`.
pub fn document(api: &mut OpenApi) {
    for (path, item) in api.paths.paths.iter_mut() {
        let infallible = INFALLIBLE.contains(&path.as_str());
        for operation in [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            let codes = derived_codes(operation, infallible);
            add_responses(operation, &codes);
            name_declared_codes(operation);
            describe_if_match(operation);
            describe_answers(operation);
        }
    }
}

/// The problem codes an operation can answer because of its shape.
fn derived_codes(operation: &Operation, infallible: bool) -> BTreeSet<&'static str> {
    let mut codes = Vec::new();
    if !infallible {
        codes.extend([Code::Internal, Code::Unavailable]);
    }
    for parameter in operation.parameters.iter().flatten() {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        match parameter.parameter_in {
            ParameterIn::Path => codes.extend([Code::InvalidPath, Code::NotFound]),
            ParameterIn::Query => codes.push(Code::InvalidQuery),
            ParameterIn::Header if parameter.name.eq_ignore_ascii_case("if-match") => codes.extend([
                Code::InvalidHeader,
                Code::PreconditionFailed,
                Code::PreconditionRequired,
            ]),
            _ => {}
        }
    }
    if operation.request_body.is_some() {
        codes.extend([
            Code::MalformedJson,
            Code::PayloadTooLarge,
            Code::UnsupportedMediaType,
            Code::ValidationFailed,
        ]);
    }
    for scheme in security_schemes(operation) {
        match scheme.as_str() {
            "operator_jwt" => codes.extend([Code::Unauthenticated, Code::InvalidToken]),
            "device_credential" => codes.extend([Code::Unauthenticated, Code::InvalidDeviceCredential]),
            _ => {}
        }
    }
    codes.into_iter().map(Code::as_str).collect()
}

/// The names of the security schemes an operation accepts.
fn security_schemes(operation: &Operation) -> Vec<String> {
    // `SecurityRequirement` keeps its scheme names private; its JSON form is `{name: scopes}`.
    operation
        .security
        .iter()
        .flatten()
        .filter_map(|requirement| serde_json::to_value(requirement).ok())
        .filter_map(|value| value.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
        .flatten()
        .collect()
}

/// Documents each status of `codes` on `operation`. A status the route declared with the shared
/// problem response gets the derived description; one it describes itself is left as written.
fn add_responses(operation: &mut Operation, codes: &BTreeSet<&'static str>) {
    let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    for code in Code::ALL.iter().filter(|c| codes.contains(c.as_str())) {
        by_status.entry(code.status()).or_default().push(code.as_str());
    }
    let responses = &mut operation.responses.responses;
    for (status, names) in by_status {
        let key = status.to_string();
        let shared = match responses.get(&key) {
            None => true,
            Some(RefOr::Ref(reference)) => reference.ref_location.ends_with("/ProblemDetails"),
            Some(RefOr::T(_)) => false,
        };
        if shared {
            responses.insert(key, RefOr::T(problem_response(&names)));
        }
    }
}

/// Names the code of each status a route declared with the shared problem response and the
/// derivation did not cover: the one code of its status, or, for `403`, the one its caller can
/// get. A status with several possible codes (`401` of the public routes) is left general
/// unless the route describes it itself.
fn name_declared_codes(operation: &mut Operation) {
    let device = security_schemes(operation)
        .iter()
        .any(|s| s == "device_credential");
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::Ref(reference) = response else {
            continue;
        };
        if !reference.ref_location.ends_with("/ProblemDetails") {
            continue;
        }
        let Ok(status) = status.parse::<u16>() else {
            continue;
        };
        let codes: Vec<&str> = match status {
            403 if device => vec![Code::RegistrationPending.as_str()],
            403 => vec![Code::Forbidden.as_str()],
            404 => vec![Code::NotFound.as_str()],
            409 => vec![Code::Conflict.as_str()],
            _ => {
                let candidates: Vec<&str> = Code::ALL
                    .iter()
                    .filter(|c| c.status() == status)
                    .map(|c| c.as_str())
                    .collect();
                if candidates.len() != 1 {
                    continue;
                }
                candidates
            }
        };
        *response = RefOr::T(problem_response(&codes));
    }
}

/// A problem+json answer carrying one of `codes`.
pub fn problem_response(codes: &[&str]) -> Response {
    let listed: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
    ResponseBuilder::new()
        .description(format!(
            "Problem details (`urn:gmp:problem:<code>`) with code {}",
            listed.join(" or ")
        ))
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ProblemDetails")))
                .build(),
        )
        .build()
}

/// Gives `If-Match` the form the server accepts, so a client (or a fuzzer) can tell a valid one.
fn describe_if_match(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if let RefOr::T(parameter) = parameter
            && parameter.parameter_in == ParameterIn::Header
            && parameter.name.eq_ignore_ascii_case("if-match")
        {
            let schema = ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(IF_MATCH_PATTERN))
                .examples([json!("\"3\""), json!("*")]);
            parameter.schema = Some(RefOr::T(Schema::Object(schema.build())));
        }
    }
}

/// OpenAPI requires a description on every answer; a route that gave none gets the status's
/// reason phrase.
fn describe_answers(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        if let RefOr::T(response) = response
            && response.description.is_empty()
        {
            let reason = status
                .parse::<u16>()
                .ok()
                .and_then(|code| actix_web::http::StatusCode::from_u16(code).ok())
                .and_then(|code| code.canonical_reason());
            response.description = reason.unwrap_or("Answer").to_owned();
        }
    }
}
