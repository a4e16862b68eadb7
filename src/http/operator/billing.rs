//! Billing: the storage appliances report for their ConnectWise additions, totalled per
//! company, agreement and addition, and each device's usage history.

use crate::auth::Operator;
use crate::domain::billing::{BillingTarget, Reference, UsageRecord, VaultUsage};
use crate::domain::{DeviceId, FieldError};
use crate::error::{ApiError, Code};
use crate::http::problem::ProblemDetails;
use crate::http::types::PageQuery;
use crate::services::billing::{self, AdditionUsage};
use crate::state::AppState;
use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Storage on one vault.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultUsageDto {
    /// The vault's name or id, as the appliance knows it (1–200 characters, each vault once).
    #[schema(example = "vault-eu-1")]
    pub vault: String,
    /// GB, 0 to 100 000 000, kept to the megabyte (3 decimals).
    #[schema(example = 80.25)]
    pub storage_gb: f64,
}

impl From<VaultUsageDto> for VaultUsage {
    fn from(v: VaultUsageDto) -> Self {
        Self {
            vault: v.vault,
            storage_gb: v.storage_gb,
        }
    }
}

impl From<VaultUsage> for VaultUsageDto {
    fn from(v: VaultUsage) -> Self {
        Self {
            vault: v.vault,
            storage_gb: v.storage_gb,
        }
    }
}

/// A usage as recorded.
#[derive(Serialize, ToSchema)]
pub struct UsageResponse {
    /// The total over all vaults: what the addition's quantity should be for this device.
    pub storage_gb: f64,
    /// The same total by vault, when the device sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vaults: Option<Vec<VaultUsageDto>>,
    /// When the device reported this figure (it is recorded again only when it changes).
    pub reported_at: DateTime<Utc>,
}

impl From<UsageRecord> for UsageResponse {
    fn from(r: UsageRecord) -> Self {
        Self {
            storage_gb: r.usage.storage_gb,
            vaults: r
                .usage
                .vaults
                .map(|v| v.into_iter().map(VaultUsageDto::from).collect()),
            reported_at: r.at,
        }
    }
}

/// A ConnectWise record: its id and the name picked for it.
#[derive(Serialize, ToSchema)]
pub struct ReferenceResponse {
    pub id: i64,
    pub name: String,
}

impl From<Reference> for ReferenceResponse {
    fn from(r: Reference) -> Self {
        Self {
            id: r.id,
            name: r.name,
        }
    }
}

/// An appliance billed to an addition.
#[derive(Serialize, ToSchema)]
pub struct BilledDeviceResponse {
    pub device_id: Uuid,
    pub hostname: String,
    /// Its latest usage.
    pub usage: UsageResponse,
}

/// An appliance billed to an addition that has not reported its usage.
#[derive(Serialize, ToSchema)]
pub struct UnreportedDeviceResponse {
    pub device_id: Uuid,
    pub hostname: String,
}

/// One ConnectWise addition and the appliances billed to it.
#[derive(Serialize, ToSchema)]
pub struct AdditionUsageResponse {
    pub company: ReferenceResponse,
    pub agreement: ReferenceResponse,
    pub addition: ReferenceResponse,
    /// The sum of its devices' latest usage in GB: what the addition's quantity should be.
    pub total_gb: f64,
    /// Devices that reported usage, with it.
    pub devices: Vec<BilledDeviceResponse>,
    /// Devices with billing enabled for this addition that have not reported usage yet.
    pub not_reported: Vec<UnreportedDeviceResponse>,
}

impl From<AdditionUsage> for AdditionUsageResponse {
    fn from(a: AdditionUsage) -> Self {
        let BillingTarget {
            company,
            agreement,
            addition,
        } = a.target;
        let mut devices = Vec::new();
        let mut not_reported = Vec::new();
        for device in a.devices {
            match device.usage {
                Some(usage) => devices.push(BilledDeviceResponse {
                    device_id: device.device_id.0,
                    hostname: device.hostname,
                    usage: usage.into(),
                }),
                None => not_reported.push(UnreportedDeviceResponse {
                    device_id: device.device_id.0,
                    hostname: device.hostname,
                }),
            }
        }
        Self {
            company: company.into(),
            agreement: agreement.into(),
            addition: addition.into(),
            total_gb: a.total_gb,
            devices,
            not_reported,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BillingResponse {
    /// Per company, agreement and addition (in id order).
    pub additions: Vec<AdditionUsageResponse>,
    /// The sum over all additions, in GB.
    pub total_gb: f64,
    /// How many appliances with billing enabled have not reported usage.
    pub not_reported_count: usize,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BillingQuery {
    /// Only this ConnectWise company (its id, 1 to 2147483647).
    #[param(minimum = 1, maximum = 2147483647)]
    pub company_id: Option<i64>,
}

/// Billing usage per ConnectWise company, agreement and addition: the active appliances with
/// billing enabled for each addition, their latest reported storage, and the total in GB —
/// what the addition's quantity should be. Appliances that have not reported usage are listed
/// under `not_reported` and count for nothing in the total.
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(BillingQuery),
    responses(
        (status = 200, body = BillingResponse),
        (status = 400, response = ProblemDetails),
        (status = 401, response = ProblemDetails),
    )
)]
#[get("/billing")]
pub async fn get_billing(
    state: web::Data<AppState>,
    caller: Operator,
    query: web::Query<BillingQuery>,
) -> Result<HttpResponse, ApiError> {
    let company = query.company_id;
    // ConnectWise ids are positive 32-bit integers, as in every `{id, name}` reference.
    if company.is_some_and(|id| !(1..=i64::from(i32::MAX)).contains(&id)) {
        let mut error = ApiError::new(Code::InvalidQuery, "company_id must be a ConnectWise id");
        error.errors.push(FieldError::new(
            "company_id",
            "out_of_range",
            format!("must be between 1 and {}", i32::MAX),
        ));
        return Err(error);
    }
    let summary = billing::summary(&state, caller.tenant_id, company).await?;
    let additions: Vec<AdditionUsageResponse> = summary
        .additions
        .into_iter()
        .map(AdditionUsageResponse::from)
        .collect();
    Ok(HttpResponse::Ok().json(BillingResponse {
        not_reported_count: additions.iter().map(|a| a.not_reported.len()).sum(),
        total_gb: summary.total_gb,
        additions,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct DeviceUsageResponse {
    pub device_id: Uuid,
    /// The usage the device last reported; absent if it never did.
    pub latest: Option<UsageResponse>,
    /// Every change of its usage, newest first.
    pub history: Vec<UsageResponse>,
    /// Cursor of the next page of `history`; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// A device's billing usage: the latest it reported and the history of its changes (newest
/// first, cursor-paginated; kept for the retention period).
#[utoipa::path(
    tag = "devices",
    security(("operator_jwt" = [])),
    params(("device_id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, body = DeviceUsageResponse),
        (status = 400, response = ProblemDetails),
        (status = 401, response = ProblemDetails),
        (status = 404, response = ProblemDetails),
    )
)]
#[get("/devices/{device_id}/billing-usage")]
pub async fn get_device_billing_usage(
    state: web::Data<AppState>,
    caller: Operator,
    path: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.to_request()?;
    let id = DeviceId(*path);
    let usage = billing::device_usage(&state, caller.tenant_id, id, page).await?;
    Ok(HttpResponse::Ok().json(DeviceUsageResponse {
        device_id: id.0,
        latest: usage.latest.map(UsageResponse::from),
        history: usage.history.items.into_iter().map(UsageResponse::from).collect(),
        next_cursor: usage.history.next_cursor,
    }))
}
