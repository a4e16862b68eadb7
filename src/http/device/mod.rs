//! The device protocol under `/device/v1`: register once, then pull and report. A contract
//! with device firmware: paths and semantics stay stable.

use crate::auth::DeviceAuth;
use crate::domain::billing::{Usage, VaultUsage};
use crate::domain::device::DeviceKind;
use crate::domain::device::RawReportedField;
use crate::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::operator::billing::VaultUsageDto;
use crate::http::operator::field_audit::{ReportedStateDto, ServedSourceDto};
use crate::http::problem::ProblemDetails;
use crate::http::request_context::RequestId;
use crate::services::pull::{self, Pulled};
use crate::services::registration::{self, Registration, RegistrationOutcome};
use crate::services::report::{self, Report};
use crate::state::AppState;
use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(register_device)
        .service(get_device_config)
        .service(post_device_report);
}

/// When the device should pull next, on every answer to a pull (a `304` has no body).
pub const NEXT_PULL_HEADER: HeaderName = HeaderName::from_static("x-gmp-next-pull-after");

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKindDto {
    Appliance,
    Vault,
}

impl From<DeviceKindDto> for DeviceKind {
    fn from(kind: DeviceKindDto) -> Self {
        match kind {
            DeviceKindDto::Appliance => DeviceKind::Appliance,
            DeviceKindDto::Vault => DeviceKind::Vault,
        }
    }
}

impl From<DeviceKind> for DeviceKindDto {
    fn from(kind: DeviceKind) -> Self {
        match kind {
            DeviceKind::Appliance => DeviceKindDto::Appliance,
            DeviceKind::Vault => DeviceKindDto::Vault,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "enrollment_token": "gmp_et_Q2xpZW50QS1lbnJvbGxtZW50LXRva2VuLWV4YW1wbGU",
    "kind": "appliance",
    "hardware_id": "SN-4C4C4544-0042",
    "hostname": "bdr-01.client-a.local",
    "software_version": "12.4.1"
}))]
pub struct RegisterRequest {
    /// From the operator who enrolled the device.
    pub enrollment_token: String,
    pub kind: DeviceKindDto,
    /// Stable hardware identity; registering it again needs an operator's approval.
    pub hardware_id: String,
    pub hostname: String,
    pub software_version: String,
}

/// Whether the credential works now.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationStatus {
    /// A new device: pull right away.
    Active,
    /// The hardware id is already registered: an operator must approve this registration in
    /// the GMP first. Until then the credential answers `403 registration_pending`.
    PendingApproval,
}

#[derive(Serialize, ToSchema)]
pub struct RegisterResponse {
    pub device_id: Uuid,
    /// The device's bearer credential for `/device/v1`. Shown only now; store it safely.
    pub credential: String,
    pub status: RegistrationStatus,
    pub pull_interval_seconds: u32,
    /// When to pull first: at once for a new device; after a wait when approval is pending.
    pub next_pull_after: DateTime<Utc>,
}

/// Register a device with an enrollment token (`201`). Registering a hardware id that is already
/// registered (a reinstalled appliance) answers `202`: the request waits for an operator's
/// approval, the device's current credential keeps working, and the returned credential works
/// only once approved. A decommissioned device's hardware id cannot register again (`409`).
#[utoipa::path(
    tag = "device protocol",
    request_body = RegisterRequest,
    responses(
        (status = 201, body = RegisterResponse, description = "A new device"),
        (status = 202, body = RegisterResponse, description = "A known hardware id: waiting for an operator's approval"),
        (status = 401, description = "Problem details (`urn:gmp:problem:<code>`) with code `invalid_enrollment_token`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Problem details (`urn:gmp:problem:<code>`) with code `conflict` or `device_decommissioned`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, response = ProblemDetails),
    )
)]
#[post("/register")]
pub async fn register_device(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.to_string());
    let registration = Registration {
        enrollment_token: body.enrollment_token,
        kind: body.kind.into(),
        hardware_id: body.hardware_id,
        hostname: body.hostname,
        software_version: body.software_version,
    };
    let registered = registration::register(&state, request_id, registration).await?;
    let (mut response, status) = match registered.outcome {
        RegistrationOutcome::Created => (HttpResponse::Created(), RegistrationStatus::Active),
        RegistrationOutcome::Pending => (HttpResponse::Accepted(), RegistrationStatus::PendingApproval),
    };
    Ok(response.json(RegisterResponse {
        device_id: registered.device.id.0,
        credential: registered.credential,
        status,
        pull_interval_seconds: registered.pull_interval_seconds,
        next_pull_after: registered.next_pull_after,
    }))
}

/// Where one setting comes from.
#[derive(Serialize, ToSchema)]
pub struct ProvenanceDto {
    pub source: ServedSourceDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
}

/// The device's effective configuration.
#[derive(Serialize, ToSchema)]
pub struct DeviceConfigResponse {
    pub device_id: Uuid,
    /// SHA-256 of the canonical effective config; also the `ETag`. Report it after applying.
    pub config_hash: String,
    /// Effective values by setting path. Secrets are in clear here, and only here.
    #[schema(value_type = Object)]
    pub settings: BTreeMap<String, Value>,
    pub provenance: BTreeMap<String, ProvenanceDto>,
    /// Fields the device must not change locally (unset ones must stay unset).
    pub locked: Vec<String>,
    /// Fields whose local value the device must drop in favour of `settings`.
    pub reassert: Vec<String>,
    /// Base64 HMAC-SHA256 key for the fingerprints of locally overridden secrets in reports.
    pub fingerprint_key: String,
    pub pull_interval_seconds: u32,
    pub next_pull_after: DateTime<Utc>,
    pub server_time: DateTime<Utc>,
}

/// True when an `If-None-Match` header names `hash` (or is `*`).
fn matches_etag(req: &HttpRequest, hash: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|tag| tag == "*" || tag == hash)
}

/// Pull the effective configuration. Send `If-None-Match` with the last `ETag`: `304` when
/// nothing changed. Also `304` while the current config is one the device reported as
/// failed, until it changes. Pulling far more often than `pull_interval_seconds` gets `429`
/// with `Retry-After`. A credential whose re-registration waits for an operator's approval gets
/// `403 registration_pending` with `Retry-After`.
#[utoipa::path(
    tag = "device protocol",
    security(("device_credential" = [])),
    params(("If-None-Match" = Option<String>, Header, description = "The ETag of the config the device has")),
    responses(
        (status = 200, body = DeviceConfigResponse, headers(("ETag" = String), ("X-GMP-Next-Pull-After" = String))),
        (status = 304, description = "Unchanged", headers(("ETag" = String), ("X-GMP-Next-Pull-After" = String))),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 429, response = ProblemDetails),
    )
)]
#[get("/config")]
pub async fn get_device_config(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: DeviceAuth,
) -> Result<HttpResponse, ApiError> {
    let pulled = pull::pull(&state, &caller.device, |hash| matches_etag(&req, hash)).await?;
    let (hash, next, body) = match pulled {
        Pulled::NotModified {
            hash,
            next_pull_after,
        } => (hash, next_pull_after, None),
        Pulled::Config {
            hash,
            next_pull_after,
            body,
        } => (hash, next_pull_after, Some(body)),
    };
    let mut response = match body {
        None => HttpResponse::NotModified(),
        Some(_) => HttpResponse::Ok(),
    };
    response
        .insert_header((header::ETAG, format!("\"{hash}\"")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((NEXT_PULL_HEADER, next.to_rfc3339()));
    Ok(match body {
        // The body is built once per config and only completed per device: it is sent as is.
        Some(body) => response.content_type("application/json").body(body),
        None => response.finish(),
    })
}

/// One field of a report.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportedFieldRequest {
    pub state: ReportedStateDto,
    /// The local value, for an overridden field that is not secret.
    pub value: Option<Value>,
    /// For an overridden secret: hex HMAC-SHA256 of the local value under `fingerprint_key`.
    pub fingerprint: Option<String>,
    /// Why a failed field could not be applied.
    pub error: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "config_hash": "9f2c3a0b5d4e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8",
    "software_version": "12.4.1",
    "fields": {
        "connectwise.site": {"state": "inherited"},
        "ticketing.events.failed_backup.service_board": {"state": "overridden", "value": {"id": 7, "name": "Local desk"}},
        "billing.enabled": {"state": "failed", "error": "agreement 12 not found"}
    },
    "billing": {"storage_gb": 120.5, "vaults": [{"vault": "vault-eu-1", "storage_gb": 80.25}, {"vault": "vault-eu-2", "storage_gb": 40.25}]}
}))]
pub struct ReportRequest {
    /// The `config_hash` of the config the device applied.
    pub config_hash: String,
    pub software_version: Option<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, ReportedFieldRequest>,
    /// Appliances only, optional: the storage billed to the ConnectWise addition. Recorded
    /// when it changes; a vault sending it is a `422 billing_not_for_vaults`.
    pub billing: Option<BillingUsageRequest>,
}

/// What an appliance bills: the storage in GB used on all vaults by all its protected
/// systems (a system replicated to several vaults counts once per vault).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillingUsageRequest {
    /// The total over all vaults in GB, 0 to 100 000 000, kept to the megabyte (3 decimals).
    pub storage_gb: f64,
    /// The same total by vault: at most 100, each vault once, adding up to `storage_gb`.
    pub vaults: Option<Vec<VaultUsageDto>>,
}

impl From<BillingUsageRequest> for Usage {
    fn from(b: BillingUsageRequest) -> Self {
        Self {
            storage_gb: b.storage_gb,
            vaults: b
                .vaults
                .map(|list| list.into_iter().map(VaultUsage::from).collect()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ReportResponse {
    /// False when this exact report was already recorded (nothing changed).
    pub recorded: bool,
    pub fields_changed: usize,
    /// Locked fields the device overrides locally.
    pub violations: Vec<String>,
}

/// Report what the device applied: per field `inherited`, `overridden` (with the local value,
/// or for secrets only a keyed fingerprint), `failed` (with the error) or `unsupported`. The
/// whole report is validated first; sending the same report twice changes nothing.
#[utoipa::path(
    tag = "device protocol",
    security(("device_credential" = [])),
    request_body = ReportRequest,
    responses(
        (status = 200, body = ReportResponse),
        (status = 401, response = ProblemDetails),
        (status = 403, response = ProblemDetails),
        (status = 422, response = ProblemDetails),
    )
)]
#[post("/report")]
pub async fn post_device_report(
    state: web::Data<AppState>,
    caller: DeviceAuth,
    body: ApiJson<ReportRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let fields = body
        .fields
        .into_iter()
        .map(|(path, f)| {
            let raw = RawReportedField {
                state: f.state.into(),
                value: f.value,
                fingerprint: f.fingerprint,
                error: f.error,
            };
            (path, raw)
        })
        .collect();
    let report = Report {
        config_hash: body.config_hash,
        software_version: body.software_version,
        hostname: body.hostname,
        fields,
        billing: body.billing.map(Usage::from),
    };
    let receipt = report::report(&state, caller.device.into_device(), report).await?;
    Ok(HttpResponse::Ok().json(ReportResponse {
        recorded: receipt.recorded,
        fields_changed: receipt.fields_changed,
        violations: receipt.violations,
    }))
}
