//! Staged rollouts of a draft: start one, follow it, pause, resume, promote or abort it.
//! Everyone reads; editors act.

use crate::auth::{Editor, Operator};
use crate::domain::rollout::{
    DEFAULT_HOLD_PULL_CYCLES, DEFAULT_MIN_REPORTS, Health, Plan, RolloutState, Wave, WaveFigures,
};
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

/// Where a rollout stands.
#[derive(Serialize, ToSchema)]
#[schema(as = RolloutState)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStateDto {
    /// Advancing wave by wave.
    Running,
    /// Held at its wave by an operator; the wave keeps the new version.
    Paused,
    /// Every device got the new version, which is now the policy's current version.
    Completed,
    /// The health gate failed: every device is served the previous version again.
    RolledBack,
    /// Stopped by an operator: every device is served the previous version again.
    Aborted,
}

impl From<RolloutState> for RolloutStateDto {
    fn from(state: RolloutState) -> Self {
        match state {
            RolloutState::Running => Self::Running,
            RolloutState::Paused => Self::Paused,
            RolloutState::Completed => Self::Completed,
            RolloutState::RolledBack => Self::RolledBack,
            RolloutState::Aborted => Self::Aborted,
        }
    }
}

/// One wave: the share of the policy's devices that has the new version once it starts
/// (cumulative), and how many pull intervals it is held before the gate decides.
#[derive(Deserialize, ToSchema)]
#[schema(as = Wave)]
#[serde(deny_unknown_fields)]
pub struct WaveDto {
    /// 1–100, rising from wave to wave; the last wave is 100.
    #[schema(example = 25)]
    pub percent: u32,
    /// Pull intervals (the tenant's) the wave is held before it may advance (default 1).
    #[serde(default = "default_hold")]
    pub hold_pull_cycles: u32,
}

const fn default_hold() -> u32 {
    DEFAULT_HOLD_PULL_CYCLES
}

const fn default_min_reports() -> u32 {
    DEFAULT_MIN_REPORTS
}

impl From<WaveDto> for Wave {
    fn from(w: WaveDto) -> Self {
        Self {
            percent: w.percent,
            hold_pull_cycles: w.hold_pull_cycles,
        }
    }
}

/// When a wave is healthy enough to advance.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(as = Health)]
#[serde(deny_unknown_fields)]
pub struct HealthDto {
    /// Above this share of failed devices (reports of failed fields against the new config,
    /// plus devices that stopped pulling) among those heard from, the rollout rolls back.
    #[schema(example = 0.02)]
    pub max_failed_ratio: f64,
    /// Devices heard from before the gate decides: fewer when the wave has fewer devices
    /// that can answer (see `GET /api/v1/rollouts/{id}`).
    #[serde(default = "default_min_reports")]
    #[schema(example = 20)]
    pub min_reports: u32,
}

impl From<HealthDto> for Health {
    fn from(h: HealthDto) -> Self {
        Self {
            max_failed_ratio: h.max_failed_ratio,
            min_reports: h.min_reports,
        }
    }
}

impl From<Health> for HealthDto {
    fn from(h: Health) -> Self {
        Self {
            max_failed_ratio: h.max_failed_ratio,
            min_reports: h.min_reports,
        }
    }
}

/// What an operator asks of a rollout.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutAction {
    Pause,
    Resume,
    Promote,
    Abort,
}

impl From<RolloutAction> for Command {
    fn from(action: RolloutAction) -> Self {
        match action {
            RolloutAction::Pause => Self::Pause,
            RolloutAction::Resume => Self::Resume,
            RolloutAction::Promote => Self::Promote,
            RolloutAction::Abort => Self::Abort,
        }
    }
}

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
    pub waves: Vec<WaveDto>,
    pub health: HealthDto,
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
    /// Devices that pulled since the rollout started and then stopped pulling (stale or
    /// offline) without a report on it: counted as failed.
    pub stopped: u64,
    /// Devices that cannot answer: silent or never seen, and not seen since the rollout
    /// started. Not counted either way; the gate does not wait for them.
    pub absent: u64,
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
            absent: f.absent,
            failed_ratio: f.failed_ratio(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RolloutResponse {
    pub id: Uuid,
    pub policy_id: Uuid,
    pub draft_id: Uuid,
    pub state: RolloutStateDto,
    /// The version devices outside the waves are served.
    pub from_version: i32,
    /// The version the rollout publishes when it completes.
    pub to_version: i32,
    /// The current wave, from 1.
    pub wave: usize,
    pub waves: Vec<WaveResponse>,
    pub health: HealthDto,
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
            state: r.state.into(),
            from_version: r.base_version,
            to_version: r.base_version + 1,
            wave: r.wave + 1,
            waves,
            health: r.plan.health.into(),
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
        waves: body.waves.into_iter().map(Wave::from).collect(),
        health: body.health.into(),
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
    params(("rollout_id" = Uuid, Path), ("action" = inline(RolloutAction), Path)),
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
    path: web::Path<(Uuid, RolloutAction)>,
) -> Result<HttpResponse, ApiError> {
    let (id, action) = path.into_inner();
    let status = rollouts::command(&state, &caller.actor(), RolloutId(id), action.into()).await?;
    Ok(HttpResponse::Ok().json(RolloutResponse::from(status)))
}
