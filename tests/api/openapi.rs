use serde_json::Value;

const COMMITTED: &str = "openapi/openapi.json";

#[test]
fn committed_spec_matches_the_code() {
    let generated = gmp::http::spec_json();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
        .unwrap_or_default();
    assert!(
        committed == generated,
        "{COMMITTED} is out of date with the handlers. Regenerate it with:\n\n    cargo run -- openapi --out {COMMITTED}\n"
    );
}

fn operations(spec: &Value) -> Vec<(String, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            found.push((method.to_uppercase(), path.clone(), operation));
        }
    }
    found
}

#[test]
fn every_operation_is_documented_and_secured() {
    let spec = serde_json::to_value(gmp::http::spec()).unwrap();
    let public = [
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/device/v1/register",
        "/healthz",
        "/readyz",
    ];
    for (method, path, operation) in operations(&spec) {
        assert!(
            operation["summary"].is_string(),
            "{method} {path} has no doc comment"
        );
        assert!(operation["operationId"].is_string(), "{method} {path}");
        if !public.contains(&path.as_str()) {
            assert!(
                operation["security"].is_array(),
                "{method} {path} declares no security scheme"
            );
        }
        if let Some(body) = operation.get("requestBody") {
            let reference = body["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap();
            let name = reference.rsplit('/').next().unwrap();
            assert!(
                spec["components"]["schemas"][name]["example"].is_object(),
                "request body {name} of {method} {path} has no example"
            );
        }
    }
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["operator_jwt"]["bearerFormat"], "JWT");
    assert_eq!(schemes["device_credential"]["scheme"], "bearer");
}

/// The statuses every operation must document because of what it takes: the problem
/// responses `http::openapi_derived` derives, checked on the served shape of each operation.
#[test]
fn every_operation_documents_the_errors_of_its_inputs() {
    let spec = serde_json::to_value(gmp::http::spec()).unwrap();
    for (method, path, operation) in operations(&spec) {
        let responses = &operation["responses"];
        let documents = |status: &str, code: &str| {
            let description = responses[status]["description"].as_str().unwrap_or_default();
            assert!(
                description.contains(&format!("`{code}`")),
                "{method} {path} does not document {status} {code}: {description:?}"
            );
        };
        let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
        let takes = |place: &str| parameters.iter().any(|p| p["in"] == place);
        if takes("path") {
            documents("400", "invalid_path");
            documents("404", "not_found");
        }
        if takes("query") {
            documents("400", "invalid_query");
        }
        if operation.get("requestBody").is_some() {
            documents("400", "malformed_json");
            documents("413", "payload_too_large");
            documents("415", "unsupported_media_type");
            documents("422", "validation_failed");
        }
        if operation["security"].is_array() {
            documents("401", "unauthenticated");
        }
        if path != "/healthz" {
            documents("503", "service_unavailable");
        }
        // Every error answer names the codes it can carry.
        for (status, response) in responses.as_object().unwrap() {
            if status.as_str() >= "400" {
                let description = response["description"].as_str().unwrap_or_default();
                assert!(
                    description.contains("with code `"),
                    "{method} {path} answers {status} without naming its codes: {response}"
                );
            }
        }
    }
}

/// Setting values are any JSON (a string, a number, a boolean, an object, …), so their schemas
/// name no type, and a reported field's value is optional (`inherited` has none).
#[test]
fn setting_values_are_declared_as_any_json() {
    let spec = serde_json::to_value(gmp::http::spec()).unwrap();
    let schemas = &spec["components"]["schemas"];
    for (schema, field) in [
        ("ChangeResponse", "before"),
        ("ChangeResponse", "after"),
        ("ResolvedFieldResponse", "value"),
        ("DeviceFieldResponse", "value"),
        ("ReportedFieldRequest", "value"),
    ] {
        let property = &schemas[schema]["properties"][field];
        assert!(property.is_object(), "{schema}.{field} is not documented");
        assert!(
            property.get("type").is_none() && property.get("$ref").is_none(),
            "{schema}.{field} is declared as {property}, not as any JSON"
        );
        let required = schemas[schema]["required"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            !required.contains(&Value::from(field)),
            "{schema}.{field} is required"
        );
    }
}
