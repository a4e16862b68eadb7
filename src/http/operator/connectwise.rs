//! ConnectWise helpers: Test Connection, the dropdown lookups, and checking a policy against
//! ConnectWise. They call out to ConnectWise, so they are for editors.

use crate::auth::{Editor, Operator};
use crate::domain::PolicyId;
use crate::error::ApiError;
use crate::http::problem::{FieldErrorBody, ProblemDetails};
use crate::services::connectwise::{self, CredentialSource, Lookup, RawCredentials, Tested};
use crate::services::references;
use crate::state::AppState;
use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::json::ApiJson;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"policy_id": "01a21e74-c410-7062-b350-a36a7355a297"}))]
pub struct TestConnectionRequest {
    /// Test the resolved credentials of this policy (the secret never travels)…
    pub policy_id: Option<Uuid>,
    /// …or these, as typed into the form.
    pub site: Option<String>,
    pub company_id: Option<String>,
    pub public_key: Option<String>,
    pub private_key: Option<String>,
}

/// `ok: true` with the ConnectWise version, or `ok: false` with a `reason` and a sentence.
#[derive(Serialize, ToSchema)]
pub struct TestConnectionResponse {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_cloud: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// `invalid_credentials`, `insufficient_permissions`, `unknown_site_or_company`,
    /// `dns_error` (the site's name does not resolve from the GMP server), `network_unreachable`
    /// (the GMP server cannot open a connection), `timeout`, `tls_error`, `rate_limited` or
    /// `unexpected_response`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// What the operator can do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Test Connection: calls ConnectWise's `/system/info` with the given credentials or a
/// policy's resolved ones. Addresses that are internal (loopback, private, metadata…) are
/// refused with a `422` before any request is made.
#[utoipa::path(
    tag = "connectwise",
    security(("operator_jwt" = [])),
    request_body = TestConnectionRequest,
    responses(
        (status = 200, body = TestConnectionResponse),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
    )
)]
#[post("/connectwise/test-connection")]
pub async fn test_connection(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    body: ApiJson<TestConnectionRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let source = match (body.policy_id, body.site) {
        (Some(policy), None)
            if body.company_id.is_none() && body.public_key.is_none() && body.private_key.is_none() =>
        {
            CredentialSource::Policy(PolicyId(policy))
        }
        (None, Some(site)) => CredentialSource::Given(RawCredentials {
            site,
            company_id: body.company_id.unwrap_or_default(),
            public_key: body.public_key.unwrap_or_default(),
            private_key: body.private_key.unwrap_or_default(),
        }),
        _ => {
            return Err(ApiError::field(crate::domain::FieldError::new(
                "policy_id",
                "one_source",
                "give either `policy_id` or `site`, `company_id`, `public_key` and `private_key`",
            )));
        }
    };
    let response = match connectwise::test_connection(&state, caller.tenant_id, source).await? {
        Tested::Ok {
            version,
            is_cloud,
            latency_ms,
        } => TestConnectionResponse {
            ok: true,
            version: Some(version),
            is_cloud: Some(is_cloud),
            latency_ms: Some(latency_ms),
            reason: None,
            detail: None,
        },
        Tested::Failed { reason, detail } => TestConnectionResponse {
            ok: false,
            version: None,
            is_cloud: None,
            latency_ms: None,
            reason: Some(reason),
            detail: Some(detail),
        },
    };
    Ok(HttpResponse::Ok().json(response))
}

/// Records for a dropdown, normalised to `{id, name, …}`.
#[derive(Serialize, ToSchema)]
pub struct LookupResponse {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
}

fn items(records: Arc<Vec<Value>>, keep: impl Fn(&Value) -> bool) -> HttpResponse {
    HttpResponse::Ok().json(LookupResponse {
        items: records.iter().filter(|r| keep(r)).cloned().collect(),
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CompaniesQuery {
    /// Whose resolved credentials to use.
    pub policy_id: Uuid,
    /// Part of the company name.
    pub search: Option<String>,
}

/// Companies (for the Service Ticket Company and billing company dropdowns).
#[utoipa::path(tag = "connectwise", security(("operator_jwt" = [])), params(CompaniesQuery),
    responses((status = 200, body = LookupResponse), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails), (status = 422, response = ProblemDetails), (status = 502, response = ProblemDetails)))]
#[get("/connectwise/companies")]
pub async fn list_cw_companies(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    query: web::Query<CompaniesQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let records = connectwise::lookup(
        &state,
        caller.tenant_id,
        PolicyId(q.policy_id),
        Lookup::Companies { search: q.search },
    )
    .await?;
    Ok(items(records, |_| true))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgreementsQuery {
    pub policy_id: Uuid,
    pub company_id: i64,
}

/// Agreements of a company (billing).
#[utoipa::path(tag = "connectwise", security(("operator_jwt" = [])), params(AgreementsQuery),
    responses((status = 200, body = LookupResponse), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails), (status = 422, response = ProblemDetails), (status = 502, response = ProblemDetails)))]
#[get("/connectwise/agreements")]
pub async fn list_cw_agreements(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    query: web::Query<AgreementsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let records = connectwise::lookup(
        &state,
        caller.tenant_id,
        PolicyId(q.policy_id),
        Lookup::Agreements {
            company_id: q.company_id,
        },
    )
    .await?;
    Ok(items(records, |_| true))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdditionsQuery {
    pub policy_id: Uuid,
    pub agreement_id: i64,
}

/// Additions of an agreement (the one whose quantity the device sets to its storage in GB).
#[utoipa::path(tag = "connectwise", security(("operator_jwt" = [])), params(AdditionsQuery),
    responses((status = 200, body = LookupResponse), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails), (status = 422, response = ProblemDetails), (status = 502, response = ProblemDetails)))]
#[get("/connectwise/additions")]
pub async fn list_cw_additions(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    query: web::Query<AdditionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let records = connectwise::lookup(
        &state,
        caller.tenant_id,
        PolicyId(q.policy_id),
        Lookup::Additions {
            agreement_id: q.agreement_id,
        },
    )
    .await?;
    Ok(items(records, |_| true))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BoardsQuery {
    pub policy_id: Uuid,
    /// Also inactive boards (hidden by default).
    pub include_inactive: Option<bool>,
    /// Also project boards (hidden by default).
    pub include_project: Option<bool>,
}

/// Service boards for the per-event-class board dropdowns.
#[utoipa::path(tag = "connectwise", security(("operator_jwt" = [])), params(BoardsQuery),
    responses((status = 200, body = LookupResponse), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails), (status = 422, response = ProblemDetails), (status = 502, response = ProblemDetails)))]
#[get("/connectwise/boards")]
pub async fn list_cw_boards(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    query: web::Query<BoardsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let records =
        connectwise::lookup(&state, caller.tenant_id, PolicyId(q.policy_id), Lookup::Boards).await?;
    let (inactive, project) = (
        q.include_inactive.unwrap_or(false),
        q.include_project.unwrap_or(false),
    );
    Ok(items(records, |b| {
        (inactive || b["inactive"] != true) && (project || b["project"] != true)
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusesQuery {
    pub policy_id: Uuid,
    pub board_id: i64,
}

/// Statuses of a board, with `closed` so the Closed status can be suggested.
#[utoipa::path(tag = "connectwise", security(("operator_jwt" = [])), params(StatusesQuery),
    responses((status = 200, body = LookupResponse), (status = 401, response = ProblemDetails), (status = 404, response = ProblemDetails), (status = 422, response = ProblemDetails), (status = 502, response = ProblemDetails)))]
#[get("/connectwise/statuses")]
pub async fn list_cw_statuses(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    query: web::Query<StatusesQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let records = connectwise::lookup(
        &state,
        caller.tenant_id,
        PolicyId(q.policy_id),
        Lookup::Statuses { board_id: q.board_id },
    )
    .await?;
    Ok(items(records, |_| true))
}

#[derive(Serialize, ToSchema)]
pub struct ValidationResponse {
    pub ok: bool,
    /// Each reference ConnectWise does not confirm, by field.
    pub problems: Vec<FieldErrorBody>,
}

/// Check the policy's resolved board and status references against ConnectWise: each board
/// exists and is active, statuses belong to their board, the Closed status is a closed status.
#[utoipa::path(tag = "connectwise", security(("operator_jwt" = [])), params(("policy_id" = Uuid, Path)),
    responses((status = 200, body = ValidationResponse), (status = 401, response = ProblemDetails), (status = 403, response = ProblemDetails), (status = 404, response = ProblemDetails), (status = 422, response = ProblemDetails), (status = 502, response = ProblemDetails)))]
#[post("/policies/{policy_id}/validate")]
pub async fn validate_policy(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let problems = references::check_policy(&state, caller.tenant_id, PolicyId(*path)).await?;
    Ok(HttpResponse::Ok().json(ValidationResponse {
        ok: problems.is_empty(),
        problems: problems.iter().map(FieldErrorBody::from).collect(),
    }))
}
