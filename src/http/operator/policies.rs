//! Policies: the tree and versioned saves of values, locks, name and place in the tree.
//! Everyone reads; editors change. Versions, diff, rollback and the resolved view are in
//! `policy_versions`; export and import in `policy_transfer`.

use crate::auth::{Editor, Operator};
use crate::domain::PolicyId;
use crate::domain::policy::PolicyContent;
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

pub(super) fn masked(content: &PolicyContent) -> BTreeMap<String, Value> {
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
pub(super) fn saved_response(saved: policies::Saved) -> HttpResponse {
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
    #[param(pattern = "^(true|false|connectwise)$")]
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
