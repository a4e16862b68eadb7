//! The settings catalogue.

use crate::auth::Operator;
use crate::domain::catalog::{Catalog, EVENT_CLASSES, FieldType, ReferenceKind, Scope};
use crate::http::problem::ProblemDetails;
use actix_web::{HttpResponse, get};
use serde::Serialize;
use utoipa::ToSchema;

/// Every setting a policy or device can hold, the event classes, and the rules across fields.
#[derive(Serialize, ToSchema)]
pub struct CatalogResponse {
    pub fields: Vec<CatalogField>,
    pub event_classes: Vec<CatalogEventClass>,
    pub rules: &'static [CatalogRule],
}

#[derive(Serialize, ToSchema)]
pub struct CatalogField {
    #[schema(example = "ticketing.events.failed_backup.service_board")]
    pub path: String,
    /// `bool`, `site`, `text` or `reference` (`{id, name}` of a ConnectWise record).
    #[schema(example = "reference")]
    pub r#type: &'static str,
    /// For references: what the id points at.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "board")]
    pub reference: Option<&'static str>,
    /// For text: the longest value accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// `managed` (policies provide it) or `device` (set per device only).
    #[schema(example = "managed")]
    pub scope: &'static str,
    /// Write-only: readable by no operator, sent in clear only to devices.
    pub secret: bool,
    pub display_name: String,
    pub help: String,
    /// What a device does while the field is unset.
    pub when_unset: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct CatalogEventClass {
    #[schema(example = "failed_backup")]
    pub key: &'static str,
    #[schema(example = "Failed Backup")]
    pub display_name: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct CatalogRule {
    /// The `code` a violation of this rule reports.
    pub code: &'static str,
    pub description: &'static str,
}

fn reference_name(kind: ReferenceKind) -> &'static str {
    match kind {
        ReferenceKind::Company => "company",
        ReferenceKind::Agreement => "agreement",
        ReferenceKind::Addition => "addition",
        ReferenceKind::Board => "board",
        ReferenceKind::Status => "status",
    }
}

const RULES: &[CatalogRule] = &[
    CatalogRule {
        code: "required_with",
        description: "connectwise.site, company_id, public_key and private_key are set together or not at all",
    },
    CatalogRule {
        code: "required_when_enabled",
        description: "an enabled event class needs its service_board, new_status and closed_status; enabled billing needs company, agreement and addition",
    },
    CatalogRule {
        code: "statuses_must_differ",
        description: "an event class's closed_status differs from its new_status",
    },
    CatalogRule {
        code: "locked_by_ancestor",
        description: "a field locked by a policy cannot be set by its descendants or overridden by devices",
    },
];

/// The settings catalogue: every field with its type, scope, validation and help text.
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    responses((status = 200, body = CatalogResponse), (status = 401, response = ProblemDetails))
)]
#[get("/settings/catalog")]
pub async fn get_catalog(_caller: Operator) -> HttpResponse {
    let fields = Catalog::get()
        .fields()
        .iter()
        .map(|f| {
            let (kind, reference, max_length) = match f.field_type {
                FieldType::Bool => ("bool", None, None),
                FieldType::Site => ("site", None, Some(253)),
                FieldType::Text { max_chars, .. } => ("text", None, Some(max_chars)),
                FieldType::Reference(kind) => ("reference", Some(reference_name(kind)), None),
            };
            CatalogField {
                path: f.path.clone(),
                r#type: kind,
                reference,
                max_length,
                scope: match f.scope {
                    Scope::Managed => "managed",
                    Scope::Device => "device",
                },
                secret: f.secret,
                display_name: f.display_name.clone(),
                help: f.help.clone(),
                when_unset: f.when_unset,
            }
        })
        .collect();
    let event_classes = EVENT_CLASSES
        .iter()
        .map(|c| CatalogEventClass {
            key: c.key,
            display_name: c.display_name,
        })
        .collect();
    HttpResponse::Ok().json(CatalogResponse {
        fields,
        event_classes,
        rules: RULES,
    })
}
