//! The top of the OpenAPI document: info, tags and security schemes. Paths come from
//! `http::routes`.

use super::problem::ProblemDetails;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "GMP server API",
        description = "Multi-tenant Global Management Portal: versioned, inheritable policies for \
                       MSP backup appliances and vaults, the device pull protocol, and the audit of \
                       what every device runs. Errors are RFC 9457 problem+json with a stable `code`.",
        license(name = "MIT")
    ),
    components(schemas(ProblemDetails), responses(ProblemDetails)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Sign-in, tokens and the signed-in operator"),
        (name = "tenants", description = "MSP organisations (platform admins)"),
        (name = "operators", description = "People of a tenant and their roles"),
        (name = "policies", description = "The settings catalogue and versioned, inheritable policies"),
        (name = "drafts", description = "Unpublished edits of a policy and the impact of a change before it is made"),
        (name = "rollouts", description = "Staged rollouts of a draft in waves, with health gates and automatic rollback"),
        (name = "audit", description = "The change log and the per-device field audit"),
        (name = "devices", description = "Enrollment tokens, devices, device values and dashboards"),
        (name = "device protocol", description = "What devices call: register, pull, report"),
        (name = "connectwise", description = "Test Connection, dropdown lookups and reference checks against ConnectWise"),
        (name = "operations", description = "Health probes"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut operator = Http::new(HttpAuthScheme::Bearer);
        operator.bearer_format = Some("JWT".into());
        operator.description = Some("Operator access token from `POST /api/v1/auth/login`.".into());
        components.add_security_scheme("operator_jwt", SecurityScheme::Http(operator));
        let mut device = Http::new(HttpAuthScheme::Bearer);
        device.description = Some("Device credential returned once by `POST /device/v1/register`.".into());
        components.add_security_scheme("device_credential", SecurityScheme::Http(device));
    }
}
