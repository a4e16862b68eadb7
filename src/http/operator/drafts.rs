//! Drafts of a policy and impact previews: what publishing a draft, rolling back or importing
//! would change on which devices, before anything changes. Everyone reads; editors change.

use super::policies::{SaveQuery, UpdatePolicyRequest, references, saved_response};
use super::policy_transfer::import_body;
use super::policy_versions::ChangeResponse;
use crate::auth::{Editor, Operator};
use crate::domain::{DraftId, PolicyId};
use crate::error::ApiError;
use crate::http::etag::{if_match, json_with_etag};
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::http::types::{PageQuery, PageResponse};
use crate::services::drafts::{self, Draft};
use crate::services::impact::{self, DeviceImpact, FieldChange, FieldImpact, Impact};
use crate::services::policies::{ImportInput, PolicyEdit};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The edit a draft holds, as a save would send it. Secrets read as `{"set": true, …}`.
#[derive(Serialize, ToSchema)]
pub struct DraftEditResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub set: BTreeMap<String, Value>,
    pub unset: Vec<String>,
    pub lock: Vec<String>,
    pub unlock: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// An unpublished edit of a policy. Devices never see it.
#[derive(Serialize, ToSchema)]
pub struct DraftResponse {
    pub id: Uuid,
    pub policy_id: Uuid,
    /// The policy version current when the draft was made or last replaced.
    pub base_version: i32,
    /// Bumped by every replacement; also the `ETag` (for `PUT`).
    pub revision: i32,
    pub edit: DraftEditResponse,
    /// What publishing it would change in the policy as it now is.
    pub changes: Vec<ChangeResponse>,
    pub author_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

async fn draft_response(
    state: &AppState,
    caller_tenant: crate::domain::TenantId,
    draft: Draft,
) -> Result<DraftResponse, ApiError> {
    let changes = drafts::changes(state, caller_tenant, &draft).await?;
    let edit = draft.edit;
    Ok(DraftResponse {
        id: draft.id.0,
        policy_id: draft.policy_id.0,
        base_version: draft.base_version,
        revision: draft.revision,
        edit: DraftEditResponse {
            name: edit.name,
            description: edit.description,
            parent_id: edit.parent_id.map(|p| p.0),
            set: edit.set.iter().map(|(p, v)| (p.clone(), v.masked())).collect(),
            unset: edit.unset.into_iter().collect(),
            lock: edit.lock.into_iter().collect(),
            unlock: edit.unlock.into_iter().collect(),
            comment: edit.comment,
        },
        changes: changes.into_iter().map(ChangeResponse::from).collect(),
        author_id: draft.author_id.map(|a| a.0),
        created_at: draft.created_at,
        updated_at: draft.updated_at,
    })
}

fn with_location(mut builder: actix_web::HttpResponseBuilder, body: &DraftResponse) -> HttpResponse {
    builder.insert_header((
        header::LOCATION,
        format!("/api/v1/policies/{}/drafts/{}", body.policy_id, body.id),
    ));
    json_with_etag(builder, body.revision, body)
}

/// Save an edit as a draft instead of publishing it. The body is that of a save (`PATCH
/// /policies/{policy_id}`) and is checked the same way, against the policy as it now is;
/// nothing reaches a device until the draft is published or rolled out.
#[utoipa::path(
    tag = "drafts",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path)),
    request_body = UpdatePolicyRequest,
    responses(
        (status = 201, body = DraftResponse, headers(("ETag" = String), ("Location" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
    )
)]
#[post("/policies/{policy_id}/drafts")]
pub async fn create_draft(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    path: web::Path<Uuid>,
    body: ApiJson<UpdatePolicyRequest>,
) -> Result<HttpResponse, ApiError> {
    let draft = drafts::create(&state, &caller.actor(), PolicyId(*path), PolicyEdit::from(body.0)).await?;
    let body = draft_response(&state, caller.tenant_id, draft).await?;
    Ok(with_location(HttpResponse::Created(), &body))
}

/// List a policy's drafts, oldest first.
#[utoipa::path(
    tag = "drafts",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, body = PageResponse<DraftResponse>),
        (status = 400, response = ProblemDetails),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/policies/{policy_id}/drafts")]
pub async fn list_drafts(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = drafts::list(&state, caller.tenant_id, PolicyId(*path), query.to_request()?).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for draft in page.items {
        items.push(draft_response(&state, caller.tenant_id, draft).await?);
    }
    Ok(HttpResponse::Ok().json(PageResponse {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// Get a draft with what publishing it would change now.
#[utoipa::path(
    tag = "drafts",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), ("draft_id" = Uuid, Path)),
    responses(
        (status = 200, body = DraftResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/policies/{policy_id}/drafts/{draft_id}")]
pub async fn get_draft(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (policy, id) = path.into_inner();
    let draft = drafts::get(&state, caller.tenant_id, PolicyId(policy), DraftId(id)).await?;
    let body = draft_response(&state, caller.tenant_id, draft).await?;
    Ok(json_with_etag(HttpResponse::Ok(), body.revision, &body))
}

/// Replace a draft's edit (the body of a save). Needs `If-Match` with the draft's revision.
#[utoipa::path(
    tag = "drafts",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), ("draft_id" = Uuid, Path), ("If-Match" = String, Header, description = "ETag of the draft as read")),
    request_body = UpdatePolicyRequest,
    responses(
        (status = 200, body = DraftResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 412, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
        (status = 428, response = ProblemDetails),
    )
)]
#[put("/policies/{policy_id}/drafts/{draft_id}")]
pub async fn update_draft(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid)>,
    body: ApiJson<UpdatePolicyRequest>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let (policy, id) = path.into_inner();
    let edit = PolicyEdit::from(body.0);
    let draft = drafts::replace(
        &state,
        &caller.actor(),
        PolicyId(policy),
        DraftId(id),
        expected,
        edit,
    )
    .await?;
    let body = draft_response(&state, caller.tenant_id, draft).await?;
    Ok(json_with_etag(HttpResponse::Ok(), body.revision, &body))
}

/// Discard a draft.
#[utoipa::path(
    tag = "drafts",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), ("draft_id" = Uuid, Path)),
    responses(
        (status = 204, description = "Discarded"),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[delete("/policies/{policy_id}/drafts/{draft_id}")]
pub async fn delete_draft(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (policy, id) = path.into_inner();
    drafts::discard(&state, &caller.actor(), PolicyId(policy), DraftId(id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Publish a draft as the policy's next version, to every device at once: a save, with
/// `If-Match` naming the policy version you read (`412` when it moved on) and the same checks.
/// The draft is gone afterwards. To publish in waves, start a rollout instead.
#[utoipa::path(
    tag = "drafts",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), ("draft_id" = Uuid, Path), ("If-Match" = String, Header, description = "ETag of the policy as read"), SaveQuery),
    responses(
        (status = 200, body = crate::http::operator::policies::PolicyResponse, headers(("ETag" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 412, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
        (status = 428, response = ProblemDetails),
    )
)]
#[post("/policies/{policy_id}/drafts/{draft_id}/publish")]
pub async fn publish_draft(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<SaveQuery>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let references = query.references()?;
    let (policy, id) = path.into_inner();
    let saved = drafts::publish(
        &state,
        &caller.actor(),
        PolicyId(policy),
        DraftId(id),
        expected,
        references,
    )
    .await?;
    Ok(saved_response(saved))
}

/// How one field's change reaches the devices.
#[derive(Serialize, ToSchema)]
pub struct FieldImpactResponse {
    #[schema(example = "ticketing.events.failed_backup.service_board")]
    pub path: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// Devices whose effective value (or lock) changes.
    pub changing: u64,
    /// Devices that keep their value: they override the field.
    pub hidden_by_override: u64,
    /// Devices that keep their value: a policy above locks the field.
    pub hidden_by_lock: u64,
    /// Devices that keep their value: a policy below this one sets it.
    pub hidden_by_policy_below: u64,
}

impl From<FieldImpact> for FieldImpactResponse {
    fn from(f: FieldImpact) -> Self {
        Self {
            path: f.path,
            secret: f.secret,
            changing: f.changing,
            hidden_by_override: f.hidden_by_override,
            hidden_by_lock: f.hidden_by_lock,
            hidden_by_policy_below: f.hidden_by_policy_below,
        }
    }
}

/// One field of one device, before and after. A secret shows `"change": "changed"` and no
/// values.
#[derive(Serialize, ToSchema)]
pub struct FieldChangeResponse {
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    pub locked_before: bool,
    pub locked_after: bool,
}

impl From<FieldChange> for FieldChangeResponse {
    fn from(c: FieldChange) -> Self {
        let change = match (&c.before, &c.after) {
            _ if c.secret => "changed",
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            _ => "changed",
        };
        Self {
            path: c.path,
            change,
            before: c.before,
            after: c.after,
            secret: c.secret,
            locked_before: c.locked_before,
            locked_after: c.locked_after,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeviceImpactResponse {
    pub device_id: Uuid,
    pub hostname: String,
    pub policy_id: Uuid,
    pub changes: Vec<FieldChangeResponse>,
}

impl From<DeviceImpact> for DeviceImpactResponse {
    fn from(d: DeviceImpact) -> Self {
        Self {
            device_id: d.device_id.0,
            hostname: d.hostname,
            policy_id: d.policy_id.0,
            changes: d.changes.into_iter().map(FieldChangeResponse::from).collect(),
        }
    }
}

/// Which devices' effective config would change, per field and per device.
#[derive(Serialize, ToSchema)]
pub struct ImpactResponse {
    pub policy_id: Uuid,
    /// The current version, which the preview compares against.
    pub from_version: i32,
    /// Active devices assigned to the policy or to a policy below it.
    pub devices_in_scope: u64,
    /// Devices with at least one changing field.
    pub devices_changing: u64,
    pub fields: Vec<FieldImpactResponse>,
    /// One page of the changing devices, in id order.
    pub devices: Vec<DeviceImpactResponse>,
    /// Pass as `cursor` for the next page of devices; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

impl From<Impact> for ImpactResponse {
    fn from(i: Impact) -> Self {
        Self {
            policy_id: i.policy_id.0,
            from_version: i.from_version,
            devices_in_scope: i.devices_in_scope,
            devices_changing: i.devices_changing,
            fields: i.fields.into_iter().map(FieldImpactResponse::from).collect(),
            devices: i.devices.into_iter().map(DeviceImpactResponse::from).collect(),
            next_cursor: i.next_cursor,
        }
    }
}

/// The impact of publishing a draft now: per field, how many devices change and how many keep
/// their value (device override, a lock above, a policy below), and a page of the changing
/// devices with before and after. Computed with the resolution the pull uses.
#[utoipa::path(
    tag = "drafts",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), ("draft_id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, body = ImpactResponse),
        (status = 400, response = ProblemDetails),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
    )
)]
#[get("/policies/{policy_id}/drafts/{draft_id}/impact")]
pub async fn get_draft_impact(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (policy, id) = path.into_inner();
    let impact = impact::of_draft(
        &state,
        caller.tenant_id,
        PolicyId(policy),
        DraftId(id),
        query.to_request()?,
    )
    .await?;
    Ok(HttpResponse::Ok().json(ImpactResponse::from(impact)))
}

/// The impact of rolling the policy back to `version` now (see the draft impact).
#[utoipa::path(
    tag = "drafts",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path), ("version" = i32, Path), PageQuery),
    responses(
        (status = 200, body = ImpactResponse),
        (status = 400, response = ProblemDetails),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/policies/{policy_id}/versions/{version}/impact")]
pub async fn get_rollback_impact(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<(Uuid, i32)>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (policy, version) = path.into_inner();
    let impact = impact::of_rollback(
        &state,
        caller.tenant_id,
        PolicyId(policy),
        version,
        query.to_request()?,
    )
    .await?;
    Ok(HttpResponse::Ok().json(ImpactResponse::from(impact)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportImpactQuery {
    pub cursor: Option<Uuid>,
    /// Devices per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    /// `false` skips the ConnectWise reference check (as on import).
    #[param(pattern = "^(true|false|connectwise)$")]
    pub validate: Option<String>,
}

/// The impact of an import before it is applied: the body is that of `POST …/import`, checked
/// as its dry run checks it; nothing changes.
#[utoipa::path(
    tag = "drafts",
    security(("operator_jwt" = [])),
    params(
        ("policy_id" = Uuid, Path), ImportImpactQuery,
        ("X-Export-Passphrase" = Option<String>, Header, description = "The passphrase of a document sent as downloaded"),
    ),
    request_body(content = crate::http::operator::policy_transfer::ImportRequest, description = "As for the import"),
    responses(
        (status = 200, body = ImpactResponse),
        (status = 400, response = ProblemDetails),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
    )
)]
#[post("/policies/{policy_id}/import/impact")]
pub async fn get_import_impact(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    req: HttpRequest,
    path: web::Path<Uuid>,
    query: web::Query<ImportImpactQuery>,
    body: ApiJson<Value>,
) -> Result<HttpResponse, ApiError> {
    let page = PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    }
    .to_request()?;
    let references = references(query.validate.as_deref())?;
    let body = import_body(&req, body.0)?;
    let input = ImportInput {
        document: body.document,
        passphrase: body.passphrase,
        comment: body.comment,
        references,
    };
    let impact = impact::of_import(&state, &caller.actor(), PolicyId(*path), input, page).await?;
    Ok(HttpResponse::Ok().json(ImpactResponse::from(impact)))
}
