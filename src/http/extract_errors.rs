//! Query-string and path errors a person can act on: the parameter is named and the expected
//! kind of value said in words, without the parser's own wording ("Query deserialize error: …").

use crate::error::{ApiError, Code};
use actix_web::HttpRequest;
use actix_web::error::{PathError, QueryPayloadError};

/// A kind of value in words, and the test telling which given values are not of that kind.
type Kind = (&'static str, fn(&str) -> bool);

/// The kind of value a parameter failed to be, recognised from the parser's message.
fn expected_kind(message: &str) -> Option<Kind> {
    let not_integer: fn(&str) -> bool = |v| v.parse::<i64>().is_err();
    let not_bool: fn(&str) -> bool = |v| v != "true" && v != "false";
    let not_uuid: fn(&str) -> bool = |v| uuid::Uuid::parse_str(v).is_err();
    let not_time: fn(&str) -> bool = |v| chrono::DateTime::parse_from_rfc3339(v).is_err();
    let not_number: fn(&str) -> bool = |v| v.parse::<f64>().is_err();
    let integer = [
        "invalid digit",
        "number too large",
        "number too small",
        "cannot parse integer",
    ];
    let time = [
        "input contains invalid characters",
        "premature end of input",
        "trailing input",
        "input is out of range",
        "input is not enough",
        "no possible date and time",
    ];
    if integer.iter().any(|m| message.contains(m)) {
        Some(("a whole number", not_integer))
    } else if message.contains("`true` or `false`") {
        Some(("`true` or `false`", not_bool))
    } else if message.contains("UUID")
        || message.starts_with("invalid character: expected an optional prefix")
        || message.starts_with("invalid length: expected")
        || message.starts_with("invalid group")
    {
        Some(("an id (a UUID)", not_uuid))
    } else if time.iter().any(|m| message.contains(m)) {
        Some(("an RFC 3339 time such as 2026-11-28T10:00:00Z", not_time))
    } else if message.contains("invalid float") {
        Some(("a number", not_number))
    } else {
        None
    }
}

/// The first backticked name in a serde message (`unknown field `x`, …`).
fn quoted(message: &str) -> Option<&str> {
    message.split('`').nth(1)
}

/// A sentence for a deserialization `message` over the given `(name, value)` parameters.
fn sentence(message: &str, params: &[(String, String)], what: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let name = quoted(rest).unwrap_or("?");
        let takes = rest
            .split_once("expected ")
            .map(|(_, list)| format!(" (it takes {})", list.replace("one of ", "")))
            .unwrap_or_default();
        return format!("`{name}` is not a {what} of this route{takes}");
    }
    if message.starts_with("missing field") {
        return format!("the {what} `{}` is required", quoted(message).unwrap_or("?"));
    }
    if message.starts_with("duplicate field") {
        return format!(
            "the {what} `{}` is given more than once",
            quoted(message).unwrap_or("?")
        );
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let value = quoted(rest).unwrap_or_default();
        let allowed = rest
            .split_once("expected ")
            .map_or(String::new(), |(_, list)| list.replace("one of ", ""));
        return match params.iter().find(|(_, v)| v == value) {
            Some((name, _)) => format!("the {what} `{name}` must be one of {allowed}, not `{value}`"),
            None => format!("`{value}` is not one of {allowed}"),
        };
    }
    match expected_kind(message) {
        Some((kind, wrong)) => match params.iter().find(|(_, v)| wrong(v)) {
            Some((name, value)) => format!("the {what} `{name}` must be {kind}, not `{value}`"),
            None => format!("a {what} must be {kind}"),
        },
        None => format!("a {what} has a value of the wrong kind"),
    }
}

pub fn query_error(error: QueryPayloadError, req: &HttpRequest) -> actix_web::Error {
    let message = match &error {
        QueryPayloadError::Deserialize(inner) => inner.to_string(),
        _ => String::new(),
    };
    tracing::debug!(%error, "query string rejected");
    let params = actix_web::web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    ApiError::new(Code::InvalidQuery, sentence(&message, &params, "query parameter")).into()
}

pub fn path_error(error: PathError, req: &HttpRequest) -> actix_web::Error {
    // `PATCH /devices/settings:bulk` reaches `PATCH /devices/{device_id}`: the route spelled out
    // in full takes other methods, which is the answer the client needs.
    if let Some(response) = crate::http::problem::method_not_allowed(req) {
        return actix_web::error::InternalError::from_response("method not allowed", response).into();
    }
    let message = match &error {
        PathError::Deserialize(inner) => inner.to_string(),
        _ => String::new(),
    };
    tracing::debug!(%error, "path rejected");
    let params: Vec<(String, String)> = req
        .match_info()
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    ApiError::new(Code::InvalidPath, sentence(&message, &params, "path parameter")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn value_errors_name_the_parameter_and_the_kind() {
        let given = params(&[("cursor", "abc"), ("limit", "ten")]);
        assert_eq!(
            sentence("invalid digit found in string", &given, "query parameter"),
            "the query parameter `cursor` must be a whole number, not `abc`"
        );
        let given = params(&[("dry_run", "yes")]);
        assert_eq!(
            sentence(
                "provided string was not `true` or `false`",
                &given,
                "query parameter"
            ),
            "the query parameter `dry_run` must be `true` or `false`, not `yes`"
        );
    }

    #[test]
    fn unknown_and_missing_parameters_are_named() {
        assert_eq!(
            sentence(
                "unknown field `limt`, expected `cursor` or `limit`",
                &[],
                "query parameter"
            ),
            "`limt` is not a query parameter of this route (it takes `cursor` or `limit`)"
        );
        assert_eq!(
            sentence("missing field `policy_id`", &[], "query parameter"),
            "the query parameter `policy_id` is required"
        );
    }
}
