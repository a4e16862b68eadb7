//! The change log.

use crate::auth::Operator;
use crate::domain::OperatorId;
use crate::domain::audit::{Entry, Filter};
use crate::error::ApiError;
use crate::http::operator::policy_versions::ChangeResponse;
use crate::http::problem::ProblemDetails;
use crate::http::types::{PageQuery, PageResponse};
use crate::services::audit;
use crate::state::AppState;
use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// One change: who did what to which resource, field by field. Secrets appear only as
/// `{"secret": true, "change": …}`.
#[derive(Serialize, ToSchema)]
pub struct AuditEntryResponse {
    pub id: Uuid,
    /// The operator; absent when the system acted (e.g. a command-line admin task).
    pub actor_id: Option<Uuid>,
    /// The actor's email at the time, or `system`.
    pub actor: String,
    #[schema(example = "policy.updated")]
    pub action: String,
    #[schema(example = "policy")]
    pub target_type: String,
    pub target_id: String,
    pub changes: Vec<ChangeResponse>,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<Entry> for AuditEntryResponse {
    fn from(e: Entry) -> Self {
        Self {
            id: e.id,
            actor_id: e.actor_id.map(|a| a.0),
            actor: e.actor_label,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            changes: e.changes.into_iter().map(ChangeResponse::from).collect(),
            request_id: e.request_id,
            created_at: e.created_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only changes by this operator.
    pub actor_id: Option<Uuid>,
    /// Only this action, e.g. `policy.updated`.
    pub action: Option<String>,
    /// Only this kind of target: `policy`, `operator`, `tenant`.
    pub target_type: Option<String>,
    /// Only changes to this resource.
    pub target_id: Option<String>,
    /// From this time on (inclusive, RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Before this time (exclusive, RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Where the previous page ended.
    pub cursor: Option<Uuid>,
    /// Items per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// The tenant's change log, newest first, filtered and cursor-paginated. Append-only: there is
/// no way to change or delete an entry.
#[utoipa::path(
    tag = "audit",
    security(("operator_jwt" = [])),
    params(AuditQuery),
    responses(
        (status = 200, body = PageResponse<AuditEntryResponse>),
        (status = 400, response = ProblemDetails),
        (status = 401, response = ProblemDetails),
    )
)]
#[get("/audit/changes")]
pub async fn list_audit_changes(
    state: web::Data<AppState>,
    caller: Operator,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    }
    .to_request()?;
    let filter = Filter {
        actor_id: query.actor_id.map(OperatorId),
        action: query.action,
        target_type: query.target_type,
        target_id: query.target_id,
        since: query.since,
        until: query.until,
    };
    let entries = audit::list(&state, caller.tenant_id, &filter, page).await?;
    Ok(HttpResponse::Ok().json(PageResponse::from_page(entries, AuditEntryResponse::from)))
}
