//! Policy versions: the list, one version, the diff between two, rollback, and the resolved
//! view of what a device assigned to the policy gets. Everyone reads; editors roll back.

use super::policies::{PolicyResponse, SaveQuery, masked, saved_response};
use crate::auth::{Editor, Operator};
use crate::domain::PolicyId;
use crate::domain::diff::{Change, ChangeKind};
use crate::domain::policy::PolicyRef;
use crate::domain::resolve::Source;
use crate::error::ApiError;
use crate::http::etag::{if_match, json_with_etag};
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::http::types::PageQuery;
use crate::services::policies;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
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
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The older version (default: the one before `to`; 0 is the empty policy).
    #[param(minimum = 0)]
    pub from: Option<i32>,
    /// The newer version (default: the current one).
    #[param(minimum = 0)]
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
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
