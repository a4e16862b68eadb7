//! Policies: the tree, versioned saves, locks, diff, rollback, the resolved view, export and
//! import. Everyone reads; editors change; exporting secrets is for admins.

use crate::auth::{Admin, Editor, Operator};
use crate::domain::PolicyId;
use crate::domain::diff::{Change, ChangeKind};
use crate::domain::policy::{PolicyContent, PolicyRef};
use crate::domain::resolve::Source;
use crate::error::ApiError;
use crate::http::etag::{if_match, json_with_etag};
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::http::types::{PageQuery, PageResponse};
use crate::services::policies::{self, PolicyDetail, PolicyEdit};
use crate::services::references::References;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// A policy at its current version. Secret values read as `{"set": true, "changed_at": …}`.
#[derive(Serialize, ToSchema)]
pub struct PolicyResponse {
    pub id: Uuid,
    /// `null` for the tenant's root policy, `Default`.
    pub parent_id: Option<Uuid>,
    #[schema(example = "Client A")]
    pub name: String,
    pub description: String,
    /// The current version; also the `ETag`.
    pub version: i32,
    /// The policy's own values by setting path (not inherited ones; see `/resolved`).
    #[schema(value_type = Object, example = json!({"connectwise.site": "na.myconnectwise.net", "connectwise.private_key": {"set": true, "changed_at": "2026-11-27T10:00:00Z"}}))]
    pub values: BTreeMap<String, Value>,
    /// Paths this policy locks for its descendants and devices.
    pub locks: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Who saved the current version (`null` when the system did).
    pub updated_by: Option<Uuid>,
    pub comment: Option<String>,
    /// Saves only (`PATCH`, rollback): `false` when the save changed nothing, so no version was
    /// made and nothing was logged; `version` is then the current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    /// Saves only: why the save went through without its ConnectWise reference check
    /// (ConnectWise unreachable, no credentials). Also in the change log.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

fn masked(content: &PolicyContent) -> BTreeMap<String, Value> {
    content
        .values
        .iter()
        .map(|(path, value)| (path.clone(), value.masked()))
        .collect()
}

impl From<PolicyDetail> for PolicyResponse {
    fn from(d: PolicyDetail) -> Self {
        Self {
            id: d.node.id.0,
            parent_id: d.node.parent_id.map(|p| p.0),
            values: masked(&d.node.content),
            locks: d.node.content.locks.iter().cloned().collect(),
            name: d.node.content.name,
            description: d.node.content.description,
            version: d.node.version,
            created_at: d.created_at,
            updated_at: d.updated_at,
            updated_by: d.current.author_id.map(|a| a.0),
            comment: d.current.comment,
            changed: None,
            warnings: Vec::new(),
        }
    }
}

fn policy_response(builder: actix_web::HttpResponseBuilder, detail: PolicyDetail) -> HttpResponse {
    let id = detail.node.id;
    respond(builder, id, PolicyResponse::from(detail))
}

fn respond(mut builder: actix_web::HttpResponseBuilder, id: PolicyId, body: PolicyResponse) -> HttpResponse {
    builder.insert_header((header::LOCATION, format!("/api/v1/policies/{id}")));
    json_with_etag(builder, body.version, &body)
}

/// The answer to a save: the policy, whether it changed, and the warnings.
fn saved_response(saved: policies::Saved) -> HttpResponse {
    let changed = saved.changed();
    let id = saved.detail.node.id;
    let mut body = PolicyResponse::from(saved.detail);
    body.changed = Some(changed);
    body.warnings = saved.warnings;
    respond(HttpResponse::Ok(), id, body)
}

/// A policy as listed.
#[derive(Serialize, ToSchema)]
pub struct PolicySummaryResponse {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Client A",
    "description": "Devices of Client A",
    "set": {"ticketing.events.failed_backup.service_board": {"id": 12, "name": "Client A Desk"}},
    "lock": [],
    "comment": "one board per client"
}))]
pub struct CreatePolicyRequest {
    pub name: String,
    pub description: Option<String>,
    /// The parent policy; the tenant's root when absent.
    pub parent_id: Option<Uuid>,
    /// Values by setting path. Secrets are given in clear here and never returned.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub set: BTreeMap<String, Value>,
    /// Paths to lock for descendants and devices.
    #[serde(default)]
    pub lock: Vec<String>,
    /// Why: kept with the version.
    pub comment: Option<String>,
}

/// One save: every part is optional; each save creates one new version.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "set": {
        "connectwise.site": "na.myconnectwise.net",
        "connectwise.company_id": "acme",
        "connectwise.public_key": "AbCdEf0123456789",
        "connectwise.private_key": "the-api-secret",
        "ticketing.events.failed_backup.enabled": true,
        "ticketing.events.failed_backup.service_board": {"id": 1, "name": "Help Desk"},
        "ticketing.events.failed_backup.new_status": {"id": 10, "name": "New"},
        "ticketing.events.failed_backup.closed_status": {"id": 11, "name": "Closed (resolved)"}
    },
    "lock": ["connectwise.site"],
    "comment": "ConnectWise credentials and failed-backup tickets"
}))]
pub struct UpdatePolicyRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Move the policy under another parent (not the root policy).
    pub parent_id: Option<Uuid>,
    /// Values to set by path. Secrets are given in clear here and never returned.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub set: BTreeMap<String, Value>,
    /// Paths to remove from this policy (they fall back to the parent's value).
    #[serde(default)]
    pub unset: Vec<String>,
    #[serde(default)]
    pub lock: Vec<String>,
    #[serde(default)]
    pub unlock: Vec<String>,
    pub comment: Option<String>,
}

impl From<UpdatePolicyRequest> for PolicyEdit {
    fn from(r: UpdatePolicyRequest) -> Self {
        Self {
            name: r.name,
            description: r.description,
            parent_id: r.parent_id.map(PolicyId),
            set: r.set,
            unset: r.unset,
            lock: r.lock,
            unlock: r.unlock,
            comment: r.comment,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SaveQuery {
    /// Board and status references are checked against ConnectWise by default when the policy
    /// has credentials (`422` listing each problem by field; a warning when ConnectWise cannot
    /// be reached). `false` skips the check; `true` and `connectwise` are the default.
    pub validate: Option<String>,
}

impl SaveQuery {
    pub fn references(&self) -> Result<References, ApiError> {
        references(self.validate.as_deref())
    }
}

/// `?validate=`: the ConnectWise reference check of a save.
pub(super) fn references(validate: Option<&str>) -> Result<References, ApiError> {
    match validate {
        None | Some("true" | "connectwise") => Ok(References::Check),
        Some("false") => Ok(References::Skip),
        Some(other) => Err(ApiError::new(
            crate::error::Code::InvalidQuery,
            format!("validate=`{other}` is not supported; use validate=true (the default) or validate=false"),
        )),
    }
}

#[derive(Serialize, ToSchema)]
pub struct VersionSummaryResponse {
    pub version: i32,
    pub author_id: Option<Uuid>,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct VersionListResponse {
    pub items: Vec<VersionSummaryResponse>,
    /// Pass as `cursor` for the next page (the last version of this page); absent on the
    /// last page.
    pub next_cursor: Option<i32>,
}

/// One immutable version of a policy.
#[derive(Serialize, ToSchema)]
pub struct VersionResponse {
    pub version: i32,
    pub name: String,
    pub description: String,
    #[schema(value_type = Object)]
    pub values: BTreeMap<String, Value>,
    pub locks: Vec<String>,
    pub author_id: Option<Uuid>,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionsQuery {
    /// The `next_cursor` of the previous page (its last version number).
    pub cursor: Option<i32>,
    /// Items per page, 1–200 (default 50).
    pub limit: Option<u64>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The older version (default: the one before `to`; 0 is the empty policy).
    pub from: Option<i32>,
    /// The newer version (default: the current one).
    pub to: Option<i32>,
}

/// A field that differs between two versions. Secrets show only `change`, never values.
#[derive(Serialize, ToSchema)]
pub struct ChangeResponse {
    /// `name`, `description`, `parent_id`, `values.<path>` or `locks.<path>`.
    #[schema(example = "values.connectwise.site")]
    pub field: String,
    /// `added`, `removed` or `changed`.
    #[schema(example = "changed")]
    pub change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub after: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

impl From<Change> for ChangeResponse {
    fn from(c: Change) -> Self {
        Self {
            field: c.field,
            change: match c.change {
                ChangeKind::Added => "added",
                ChangeKind::Removed => "removed",
                ChangeKind::Changed => "changed",
            },
            before: c.before,
            after: c.after,
            secret: c.secret,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DiffResponse {
    pub from: i32,
    pub to: i32,
    pub changes: Vec<ChangeResponse>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"version": 1, "comment": "back to the original board"}))]
pub struct RollbackRequest {
    /// The version whose content becomes the new version.
    pub version: i32,
    pub comment: Option<String>,
}

/// A policy's identity at one version.
#[derive(Serialize, ToSchema)]
pub struct PolicyRefResponse {
    pub policy_id: Uuid,
    pub policy_name: String,
    pub version: i32,
}

impl From<PolicyRef> for PolicyRefResponse {
    fn from(r: PolicyRef) -> Self {
        Self {
            policy_id: r.id.0,
            policy_name: r.name,
            version: r.version,
        }
    }
}

/// One field of the resolved view.
#[derive(Serialize, ToSchema)]
pub struct ResolvedFieldResponse {
    /// The effective value (secrets masked); absent when locked but set nowhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub value: Option<Value>,
    /// The policy (and its version) the value comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<PolicyRefResponse>,
    pub locked: bool,
    /// The topmost policy locking the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<PolicyRefResponse>,
}

/// What a device assigned to the policy gets, field by field, with provenance.
#[derive(Serialize, ToSchema)]
pub struct ResolvedResponse {
    pub policy_id: Uuid,
    pub version: i32,
    pub fields: BTreeMap<String, ResolvedFieldResponse>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"passphrase": "a long export passphrase"}))]
pub struct ExportRequest {
    /// At least 12 characters; needed again to import the secrets.
    pub passphrase: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Validate and return the diff without changing anything (no `If-Match` needed).
    pub dry_run: Option<bool>,
    /// `false` skips the ConnectWise reference check (see `PATCH /policies/{policy_id}`).
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
fn import_body(req: &HttpRequest, body: Value) -> Result<ImportRequest, ApiError> {
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

/// List the tenant's policies (the tree, flat: each with its parent).
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    params(PageQuery),
    responses(
        (status = 200, body = PageResponse<PolicySummaryResponse>),
        (status = 400, response = ProblemDetails),
        (status = 401, response = ProblemDetails),
    )
)]
#[get("/policies")]
pub async fn list_policies(
    state: web::Data<AppState>,
    caller: Operator,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = policies::list(&state, caller.tenant_id, query.to_request()?).await?;
    Ok(
        HttpResponse::Ok().json(PageResponse::from_page(page, |p| PolicySummaryResponse {
            id: p.id.0,
            parent_id: p.parent_id.map(|p| p.0),
            name: p.name,
            version: p.current_version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        })),
    )
}

/// Create a child policy (version 1). It inherits everything it does not set.
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    request_body = CreatePolicyRequest,
    responses(
        (status = 201, body = PolicyResponse, headers(("ETag" = String), ("Location" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
    )
)]
#[post("/policies")]
pub async fn create_policy(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    body: ApiJson<CreatePolicyRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let edit = PolicyEdit {
        description: body.description,
        parent_id: body.parent_id.map(PolicyId),
        set: body.set,
        lock: body.lock,
        comment: body.comment,
        ..PolicyEdit::default()
    };
    let detail = policies::create(&state, &caller.actor(), &body.name, edit).await?;
    Ok(policy_response(HttpResponse::Created(), detail))
}

/// Get a policy at its current version, with its own values and locks.
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path)),
    responses(
        (status = 200, body = PolicyResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/policies/{policy_id}")]
pub async fn get_policy(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let detail = policies::get(&state, caller.tenant_id, PolicyId(*path)).await?;
    Ok(policy_response(HttpResponse::Ok(), detail))
}

/// Save a policy: set or unset values, lock or unlock fields, rename, describe or move it.
///
/// One request is one transaction creating version N+1. Needs `If-Match` with the version you
/// read: `412` when someone saved in between. A value an ancestor locked is a `409` naming the
/// locking policy. Every value is checked against the catalogue and the cross-field rules
/// (for this policy and every descendant inheriting the change); a policy that sets a class's
/// Service Board sets its New and Closed statuses with it. Board and status references are
/// checked against ConnectWise when the policy has credentials (`?validate=false` skips it);
/// when ConnectWise cannot be reached the save goes through with `warnings`.
///
/// A save that changes nothing makes no version and no change-log entry: `200` with the
/// current version and `changed: false` (`changed: true` otherwise).
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), ("If-Match" = String, Header, description = "ETag of the policy as read"), SaveQuery),
    request_body = UpdatePolicyRequest,
    responses(
        (status = 200, body = PolicyResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 412, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
        (status = 428, response = ProblemDetails),
    )
)]
#[patch("/policies/{policy_id}")]
pub async fn update_policy(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    req: HttpRequest,
    path: web::Path<Uuid>,
    query: web::Query<SaveQuery>,
    body: ApiJson<UpdatePolicyRequest>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let references = query.references()?;
    let (actor, id, edit) = (caller.actor(), PolicyId(*path), PolicyEdit::from(body.0));
    let saved = policies::update(&state, &actor, id, expected, edit, references).await?;
    Ok(saved_response(saved))
}

/// Delete a policy that has no child policies and no devices. The root cannot be deleted.
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), ("If-Match" = String, Header, description = "ETag of the policy as read")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 412, response = ProblemDetails),
        (status = 428, response = ProblemDetails),
    )
)]
#[delete("/policies/{policy_id}")]
pub async fn delete_policy(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    req: HttpRequest,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    policies::delete(&state, &caller.actor(), PolicyId(*path), expected).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List a policy's versions, oldest first.
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), VersionsQuery),
    responses(
        (status = 200, body = VersionListResponse),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/policies/{policy_id}/versions")]
pub async fn list_policy_versions(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
    query: web::Query<VersionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = PageQuery {
        cursor: None,
        limit: query.limit,
    }
    .to_request()?
    .limit;
    let (items, next_cursor) =
        policies::list_versions(&state, caller.tenant_id, PolicyId(*path), query.cursor, limit).await?;
    Ok(HttpResponse::Ok().json(VersionListResponse {
        items: items
            .into_iter()
            .map(|m| VersionSummaryResponse {
                version: m.version,
                author_id: m.author_id.map(|a| a.0),
                comment: m.comment,
                created_at: m.created_at,
            })
            .collect(),
        next_cursor,
    }))
}

/// Get one immutable version of a policy.
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), ("version" = i32, Path)),
    responses(
        (status = 200, body = VersionResponse),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/policies/{policy_id}/versions/{version}")]
pub async fn get_policy_version(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<(Uuid, i32)>,
) -> Result<HttpResponse, ApiError> {
    let (id, version) = path.into_inner();
    let (content, meta) = policies::get_version(&state, caller.tenant_id, PolicyId(id), version).await?;
    Ok(HttpResponse::Ok().json(VersionResponse {
        version: meta.version,
        values: masked(&content),
        locks: content.locks.into_iter().collect(),
        name: content.name,
        description: content.description,
        author_id: meta.author_id.map(|a| a.0),
        comment: meta.comment,
        created_at: meta.created_at,
    }))
}

/// Field-level differences between two versions (values, locks, name, description).
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), DiffQuery),
    responses(
        (status = 200, body = DiffResponse),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
    )
)]
#[get("/policies/{policy_id}/diff")]
pub async fn diff_policy_versions(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
    query: web::Query<DiffQuery>,
) -> Result<HttpResponse, ApiError> {
    let (from, to, changes) =
        policies::diff_versions(&state, caller.tenant_id, PolicyId(*path), query.from, query.to).await?;
    Ok(HttpResponse::Ok().json(DiffResponse {
        from,
        to,
        changes: changes.into_iter().map(ChangeResponse::from).collect(),
    }))
}

/// Roll back: create version N+1 with the content of an earlier version. Needs `If-Match`.
/// References are checked as on `PATCH`; rolling back to content equal to the current one
/// answers `changed: false` and makes no version.
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), ("If-Match" = String, Header, description = "ETag of the policy as read"), SaveQuery),
    request_body = RollbackRequest,
    responses(
        (status = 200, body = PolicyResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 412, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
        (status = 428, response = ProblemDetails),
    )
)]
#[post("/policies/{policy_id}/rollback")]
pub async fn rollback_policy(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    req: HttpRequest,
    path: web::Path<Uuid>,
    query: web::Query<SaveQuery>,
    body: ApiJson<RollbackRequest>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let references = query.references()?;
    let body = body.0;
    let saved = policies::rollback(
        &state,
        &caller.actor(),
        PolicyId(*path),
        expected,
        body.version,
        body.comment,
        references,
    )
    .await?;
    Ok(saved_response(saved))
}

/// The resolved view: what a device assigned to this policy would get, each field with the
/// policy and version it comes from and whether it is locked. Secrets are masked.
#[utoipa::path(
    tag = "policies",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path)),
    responses(
        (status = 200, body = ResolvedResponse),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/policies/{policy_id}/resolved")]
pub async fn get_resolved_policy(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (node, resolution) = policies::resolved(&state, caller.tenant_id, PolicyId(*path)).await?;
    let fields = resolution
        .into_iter()
        .map(|(path, field)| {
            let source = match field.source {
                Some(Source::Policy(policy)) => Some(policy.into()),
                Some(Source::Device) | None => None,
            };
            let response = ResolvedFieldResponse {
                value: field.value.as_ref().map(|v| v.masked()),
                source,
                locked: field.locked_by.is_some(),
                locked_by: field.locked_by.map(PolicyRefResponse::from),
            };
            (path, response)
        })
        .collect();
    Ok(json_with_etag(
        HttpResponse::Ok(),
        node.version,
        &ResolvedResponse {
            policy_id: node.id.0,
            version: node.version,
            fields,
        },
    ))
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
    let expected = if dry_run { None } else { Some(if_match(&req)?) };
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
