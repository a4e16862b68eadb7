//! Policy export and import: a portable document of a policy, with its secrets encrypted
//! under a passphrase for admins only, and the import of such a document (dry run first).

use super::policies::{PolicyResponse, references};
use super::policy_versions::ChangeResponse;
use crate::auth::{Admin, Editor, Operator};
use crate::domain::PolicyId;
use crate::error::ApiError;
use crate::http::etag::{if_match, json_with_etag};
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::services::policies;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"passphrase": "a long export passphrase"}))]
pub struct ExportRequest {
    /// At least 12 characters; needed again to import the secrets.
    #[schema(min_length = 12)]
    pub passphrase: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Validate and return the diff without changing anything (no `If-Match` needed).
    pub dry_run: Option<bool>,
    /// `false` skips the ConnectWise reference check (see `PATCH /policies/{policy_id}`).
    #[param(pattern = "^(true|false|connectwise)$")]
    pub validate: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "document": {
        "format": "gmp-policy",
        "format_version": 1,
        "policy": {"name": "Default", "description": "", "version": 3, "saved_at": "2026-11-27T10:00:00Z"},
        "values": {"ticketing.events.disk_usage.enabled": false},
        "locks": []
    },
    "comment": "settings from the old portal"
}))]
pub struct ImportRequest {
    /// A document from `GET` or `POST …/export`.
    #[schema(value_type = Object)]
    pub document: Value,
    /// Needed when the document carries encrypted secrets.
    pub passphrase: Option<String>,
    pub comment: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportResponse {
    pub dry_run: bool,
    /// What the import changes (or would change) in the policy.
    pub changes: Vec<ChangeResponse>,
    /// The policy after the import; absent for a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyResponse>,
    /// Why the import went through without its ConnectWise reference check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The import request from either body form: a document as downloaded is recognised by its
/// `format` member, which the wrapper does not have.
pub(super) fn import_body(req: &HttpRequest, body: Value) -> Result<ImportRequest, ApiError> {
    if body.get("format").is_none() {
        let bytes = serde_json::to_vec(&body).map_err(ApiError::internal)?;
        return crate::http::json::parse(&bytes);
    }
    let passphrase = match req.headers().get("x-export-passphrase") {
        None => None,
        Some(value) => Some(value.to_str().map(str::to_owned).map_err(|_| {
            ApiError::new(
                crate::error::Code::InvalidHeader,
                "`X-Export-Passphrase` must be visible ASCII",
            )
        })?),
    };
    Ok(ImportRequest {
        document: body,
        passphrase,
        comment: None,
    })
}

fn export_response(document: policies::ExportDocument) -> Result<HttpResponse, ApiError> {
    let file_name = format!(
        "policy-{}-v{}.json",
        document
            .policy
            .name
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        document.policy.version
    );
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file_name}\""),
        ))
        .json(document))
}

/// Export the current version as a portable document. Secrets are left out.
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path)),
    responses(
        (status = 200, description = "A `gmp-policy` document (format_version 1)", body = Object),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/policies/{policy_id}/export")]
pub async fn export_policy(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    export_response(policies::export(&state, &caller.actor(), PolicyId(*path), None).await?)
}

/// Export with secrets, encrypted under a key derived from your passphrase (argon2id +
/// AES-256-GCM). Admins only: whoever knows the passphrase can read the secrets. Recorded in
/// the change log.
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path)),
    request_body = ExportRequest,
    responses(
        (status = 200, description = "A `gmp-policy` document with an encrypted `secrets` part", body = Object),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
    )
)]
#[post("/policies/{policy_id}/export")]
pub async fn export_policy_with_secrets(
    state: web::Data<AppState>,
    caller: Operator<Admin>,
    path: web::Path<Uuid>,
    body: ApiJson<ExportRequest>,
) -> Result<HttpResponse, ApiError> {
    let document =
        policies::export(&state, &caller.actor(), PolicyId(*path), Some(&body.0.passphrase)).await?;
    export_response(document)
}

/// Import a document into this policy: its values and locks replace the policy's own (secrets
/// the document does not carry are kept). The whole document is validated first; nothing
/// changes unless all of it is valid. `?dry_run=true` returns the diff and changes nothing;
/// otherwise `If-Match` is required and one new version is created. Encrypted secrets must use
/// the key-derivation parameters this server exports with (others are a `422` naming the
/// field); the passphrase is tried only after everything else checked out.
///
/// The body is either `{document, passphrase, comment}` or the exported document itself,
/// exactly as downloaded (its passphrase, if it carries secrets, in `X-Export-Passphrase`).
/// Board and status references are checked against ConnectWise as on `PATCH`.
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    params(
        ("policy_id" = Uuid, Path), ImportQuery,
        ("If-Match" = Option<String>, Header, description = "Required unless dry_run"),
        ("X-Export-Passphrase" = Option<String>, Header, description = "The passphrase of a document sent as downloaded"),
    ),
    request_body(content = ImportRequest, description = "`{document, passphrase, comment}`, or the exported document itself"),
    responses(
        (status = 200, body = ImportResponse),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 412, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
        (status = 428, response = ProblemDetails),
        (status = 503, response = ProblemDetails),
    )
)]
#[post("/policies/{policy_id}/import")]
pub async fn import_policy(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    req: HttpRequest,
    path: web::Path<Uuid>,
    query: web::Query<ImportQuery>,
    body: ApiJson<Value>,
) -> Result<HttpResponse, ApiError> {
    let dry_run = query.dry_run.unwrap_or(false);
    let references = references(query.validate.as_deref())?;
    // A dry run needs no `If-Match`, but one that is sent must still be well-formed. The
    // service takes no precondition as a dry run.
    let sent = req.headers().contains_key(actix_web::http::header::IF_MATCH);
    let precondition = if dry_run && !sent {
        None
    } else {
        Some(if_match(&req)?)
    };
    let expected = precondition.filter(|_| !dry_run);
    let body = import_body(&req, body.0)?;
    let outcome = policies::import(
        &state,
        &caller.actor(),
        PolicyId(*path),
        expected,
        policies::ImportInput {
            document: body.document,
            passphrase: body.passphrase,
            comment: body.comment,
            references,
        },
    )
    .await?;
    let response = ImportResponse {
        dry_run,
        changes: outcome.changes.into_iter().map(ChangeResponse::from).collect(),
        policy: outcome.policy.map(PolicyResponse::from),
        warnings: outcome.warnings,
    };
    match &response.policy {
        Some(policy) => Ok(json_with_etag(HttpResponse::Ok(), policy.version, &response)),
        None => Ok(HttpResponse::Ok().json(response)),
    }
}
