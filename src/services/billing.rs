//! Billing usage: the storage appliances report for their ConnectWise additions, and the
//! per-addition totals an MSP bills from (what each addition's quantity should be).

use super::{Page, PageRequest};
use crate::db::repo::billing_usage;
use crate::db::repo::devices::{self, DeviceFilter};
use crate::domain::billing::{self, BillingTarget, Usage, UsageRecord};
use crate::domain::device::{Device, DeviceKind, Lifecycle};
use crate::domain::validation::Validator;
use crate::domain::{DeviceId, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use std::collections::BTreeMap;

/// The usage a report carries, checked: `None` (with the errors in `v`) when it is invalid or
/// the device is a vault.
pub(super) fn checked_usage(v: &mut Validator, kind: DeviceKind, raw: &Usage) -> Option<Usage> {
    if let Some(refused) = billing::usage_refused(kind) {
        v.push(refused);
        return None;
    }
    match billing::validate_usage(raw) {
        Ok(usage) => Some(usage),
        Err(errors) => {
            errors.into_iter().for_each(|e| v.push(e));
            None
        }
    }
}

/// Records a reported usage when it differs from the device's latest: the history holds
/// changes, not every report (a device reports every few hours, its storage changes slowly).
pub(super) async fn record_usage(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    device: DeviceId,
    usage: &Usage,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let latest = billing_usage::latest(conn, tenant, device).await?;
    if latest.is_none_or(|r| &r.usage != usage) {
        billing_usage::record(conn, tenant, device, usage, now).await?;
    }
    Ok(())
}

/// An appliance billed to an addition, with its latest usage if it reported one.
#[derive(Debug, Clone)]
pub struct BilledDevice {
    pub device_id: DeviceId,
    pub hostname: String,
    pub usage: Option<UsageRecord>,
}

/// One ConnectWise addition and the appliances billed to it.
#[derive(Debug, Clone)]
pub struct AdditionUsage {
    /// The company, agreement and addition, named as on the first of its devices.
    pub target: BillingTarget,
    /// Every appliance billing this addition, in device order.
    pub devices: Vec<BilledDevice>,
    /// The sum of the reported usage: the addition's quantity.
    pub total_gb: f64,
}

/// The billing of a tenant's active appliances.
#[derive(Debug, Clone)]
pub struct BillingSummary {
    pub additions: Vec<AdditionUsage>,
    pub total_gb: f64,
}

/// How many devices are read at once.
const DEVICE_PAGE: u64 = 1000;

/// Groups the tenant's active appliances with billing enabled by company, agreement and
/// addition (only `company` when given), with their latest usage and the totals.
pub async fn summary(
    state: &AppState,
    tenant: TenantId,
    company: Option<i64>,
) -> Result<BillingSummary, ApiError> {
    let filter = DeviceFilter {
        kind: Some(DeviceKind::Appliance),
        lifecycle: Some(Lifecycle::Active),
        ..DeviceFilter::default()
    };
    let mut latest = billing_usage::latest_for_tenant(&state.db, tenant).await?;
    let mut groups: BTreeMap<(i64, i64, i64), AdditionUsage> = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page: Vec<Device> = devices::list(&state.db, tenant, &filter, cursor, Some(DEVICE_PAGE)).await?;
        cursor = page.last().map(|d| d.id.0);
        let full = page.len() as u64 == DEVICE_PAGE;
        for device in page {
            let Some(target) = billing::billing_target(&device.device_values) else {
                continue;
            };
            if company.is_some_and(|id| id != target.company.id) {
                continue;
            }
            let group = groups.entry(target.key()).or_insert_with(|| AdditionUsage {
                target,
                devices: Vec::new(),
                total_gb: 0.0,
            });
            group.devices.push(BilledDevice {
                usage: latest.remove(&device.id),
                device_id: device.id,
                hostname: device.hostname,
            });
        }
        if !full {
            break;
        }
    }
    let mut additions: Vec<AdditionUsage> = groups.into_values().collect();
    for group in &mut additions {
        let sum: f64 = group
            .devices
            .iter()
            .filter_map(|d| d.usage.as_ref())
            .map(|u| u.usage.storage_gb)
            .sum();
        group.total_gb = billing::round_gb(sum);
    }
    let total_gb = billing::round_gb(additions.iter().map(|a| a.total_gb).sum());
    Ok(BillingSummary { additions, total_gb })
}

/// A device's latest usage and a page of its history (newest first).
#[derive(Debug)]
pub struct DeviceUsage {
    pub latest: Option<UsageRecord>,
    pub history: Page<UsageRecord>,
}

pub async fn device_usage(
    state: &AppState,
    tenant: TenantId,
    id: DeviceId,
    page: PageRequest,
) -> Result<DeviceUsage, ApiError> {
    devices::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let latest = billing_usage::latest(&state.db, tenant, id).await?;
    let rows = billing_usage::history(&state.db, tenant, id, page.cursor, page.fetch_limit()).await?;
    let history = page.page(rows, |(entry, _)| *entry);
    Ok(DeviceUsage {
        latest,
        history: Page {
            items: history.items.into_iter().map(|(_, record)| record).collect(),
            next_cursor: history.next_cursor,
        },
    })
}
