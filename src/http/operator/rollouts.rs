//! Staged rollouts of a draft: start one, follow it, pause, resume, promote or abort it.
//! Everyone reads; editors act.

use crate::auth::{Editor, Operator};
use crate::domain::rollout::{Health, Plan, RolloutState, Wave, WaveFigures};
use crate::domain::{DraftId, PolicyId, RolloutId};
use crate::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::problem::ProblemDetails;
use crate::http::types::{PageQuery, PageResponse};
use crate::services::rollouts::{self, Command, RolloutStatus};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "draft_id": "0193a0c4-5a7e-7f43-9d0b-2a9f0c1d2e3f",
    "waves": [{"percent": 5, "hold_pull_cycles": 1}, {"percent": 25, "hold_pull_cycles": 1}, {"percent": 100}],
    "health": {"max_failed_ratio": 0.02, "min_reports": 20}
}))]
pub struct StartRolloutRequest {
    /// The draft to roll out; it stays a draft until the rollout completes.
    pub draft_id: Uuid,
    /// Cumulative shares of the policy's devices, rising to 100.
    pub waves: Vec<Wave>,
    pub health: Health,
}

/// One wave: its plan and, once reached, what its devices showed.
#[derive(Serialize, ToSchema)]
pub struct WaveResponse {
    pub percent: u32,
    pub hold_pull_cycles: u32,
    /// Absent for waves not reached yet. For the current wave of a running rollout, live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figures: Option<WaveFiguresResponse>,
}

#[derive(Serialize, ToSchema)]
pub struct WaveFiguresResponse {
    /// Devices served the new version.
    pub served: u64,
    /// Devices that reported on the new version.
    pub reported: u64,
    /// Devices that reported failed fields on it.
    pub failed: u64,
    /// Devices that pulled it and then stopped pulling.
    pub stopped: u64,
    /// (failed + stopped) / (reported + stopped).
    pub failed_ratio: f64,
}

impl From<WaveFigures> for WaveFiguresResponse {
    fn from(f: WaveFigures) -> Self {
        Self {
            served: f.served,
            reported: f.reported,
            failed: f.failed,
            stopped: f.stopped,
            failed_ratio: f.failed_ratio(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RolloutResponse {
    pub id: Uuid,
    pub policy_id: Uuid,
    pub draft_id: Uuid,
    pub state: RolloutState,
    /// The version devices outside the waves are served.
    pub from_version: i32,
    /// The version the rollout publishes when it completes.
    pub to_version: i32,
    /// The current wave, from 1.
    pub wave: usize,
    pub waves: Vec<WaveResponse>,
    pub health: Health,
    /// Why it stopped, with the figures.
    pub reason: Option<String>,
    /// Active devices under the policy, by the policy version they are served now (absent in
    /// lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!({"3": 190, "4": 10}))]
    pub devices_per_version: Option<BTreeMap<String, u64>>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<RolloutStatus> for RolloutResponse {
    fn from(status: RolloutStatus) -> Self {
        let r = status.rollout;
        let waves = r
            .plan
            .waves
            .iter()
            .enumerate()
            .map(|(i, wave)| WaveResponse {
                percent: wave.percent,
                hold_pull_cycles: wave.hold_pull_cycles,
                figures: r.waves.get(i).copied().map(WaveFiguresResponse::from),
            })
            .collect();
        let devices_per_version = status.devices.map(|(in_scope, on_new)| {
            [(r.base_version, in_scope - on_new), (r.base_version + 1, on_new)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(v, n)| (v.to_string(), n))
                .collect()
        });
        Self {
            id: r.id.0,
            policy_id: r.policy_id.0,
            draft_id: r.draft_id.0,
            state: r.state,
            from_version: r.base_version,
            to_version: r.base_version + 1,
            wave: r.wave + 1,
            waves,
            health: r.plan.health,
            reason: r.reason,
            devices_per_version,
            created_by: r.created_by.map(|o| o.0),
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}

/// Roll a draft out in waves. Devices join waves in a stable order (a hash of the device id);
/// those outside the current wave keep the current version. A scheduled job holds each wave
/// for its pull intervals, then advances it when the devices heard from show a failed ratio
/// within `max_failed_ratio` — or halts and rolls back, serving every device the previous
/// version again, as soon as they do not. The last wave done, the draft becomes the policy's
/// next version. One rollout at a time per policy (`409` naming the running one); saves of the
/// policy are refused while it runs.
#[utoipa::path(
    tag = "rollouts",
    security(("operator_jwt" = [])),
    params(("policy_id" = Uuid, Path)),
    request_body = StartRolloutRequest,
    responses(
        (status = 201, body = RolloutResponse, headers(("Location" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
        (status = 412, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
    )
)]
#[post("/policies/{policy_id}/rollouts")]
pub async fn start_rollout(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    path: web::Path<Uuid>,
    body: ApiJson<StartRolloutRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let plan = Plan {
        waves: body.waves,
        health: body.health,
    };
    let rollout = rollouts::start(
        &state,
        &caller.actor(),
        PolicyId(*path),
        DraftId(body.draft_id),
        plan,
    )
    .await?;
    let status = rollouts::get(&state, caller.tenant_id, rollout.id).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/rollouts/{}", rollout.id)))
        .json(RolloutResponse::from(status)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RolloutsQuery {
    /// Only the rollouts of this policy.
    pub policy_id: Option<Uuid>,
    pub cursor: Option<Uuid>,
    /// Items per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// List the tenant's rollouts, oldest first, with the figures stored at their last step (read
/// one for its live figures and devices per version).
#[utoipa::path(
    tag = "rollouts",
    security(("operator_jwt" = [])),
    params(RolloutsQuery),
    responses(
        (status = 200, body = PageResponse<RolloutResponse>),
        (status = 400, response = ProblemDetails),
        (status = 401, response = ProblemDetails),
    )
)]
#[get("/rollouts")]
pub async fn list_rollouts(
    state: web::Data<AppState>,
    caller: Operator,
    query: web::Query<RolloutsQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    }
    .to_request()?;
    let policy = query.policy_id.map(PolicyId);
    let page = rollouts::list(&state, caller.tenant_id, policy, page).await?;
    Ok(HttpResponse::Ok().json(PageResponse::from_page(page, RolloutResponse::from)))
}

/// A rollout: its state, its current wave, per wave the devices served, reported and failed,
/// and the devices per policy version.
#[utoipa::path(
    tag = "rollouts",
    security(("operator_jwt" = [])),
    params(("rollout_id" = Uuid, Path)),
    responses(
        (status = 200, body = RolloutResponse),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/rollouts/{rollout_id}")]
pub async fn get_rollout(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let status = rollouts::get(&state, caller.tenant_id, RolloutId(*path)).await?;
    Ok(HttpResponse::Ok().json(RolloutResponse::from(status)))
}

/// Steer a rollout. `pause`: hold it at its wave (whose devices keep the new version).
/// `resume`: let a paused rollout advance again. `promote`: skip the remaining waves and publish
/// the new version to every device now. `abort`: serve every device the previous version
/// again; the draft stays. A rollout that has stopped takes no command (`409`).
#[utoipa::path(
    tag = "rollouts",
    security(("operator_jwt" = [])),
    params(("rollout_id" = Uuid, Path), ("action" = inline(Command), Path)),
    responses(
        (status = 200, body = RolloutResponse),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
        (status = 409, response = ProblemDetails),
    )
)]
#[post("/rollouts/{rollout_id}/{action}")]
pub async fn steer_rollout(
    state: web::Data<AppState>,
    caller: Operator<Editor>,
    path: web::Path<(Uuid, Command)>,
) -> Result<HttpResponse, ApiError> {
    let (id, command) = path.into_inner();
    let status = rollouts::command(&state, &caller.actor(), RolloutId(id), command).await?;
    Ok(HttpResponse::Ok().json(RolloutResponse::from(status)))
}
