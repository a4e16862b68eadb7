//! A device's history timeline, on its page: what it was served and what it reported, field by
//! field, newest first, from the field history (the API's `/devices/{id}/history`), a page at
//! a time with the history's cursors.

use super::devices::{local_value, reported_label, when};
use super::policies::TreeRow;
use crate::domain::catalog::Catalog;
use crate::domain::device::{ReportedKind, ServedSource};
use crate::domain::field_audit::{HistoryEntry, HistoryEvent};
use crate::domain::{DeviceId, TenantId};
use crate::error::ApiError;
use crate::services::PageRequest;
use crate::services::field_audit;
use crate::state::AppState;
use uuid::Uuid;

/// Entries per page of the timeline.
const PER_PAGE: u64 = 25;

/// One change of one field.
pub struct HistoryRow {
    pub at: String,
    pub label: String,
    pub path: String,
    /// `Served` or `Reported`.
    pub event: &'static str,
    pub detail: String,
    pub violation: bool,
}

/// One page of the timeline, and the cursor of the next (older) one.
pub struct Timeline {
    pub rows: Vec<HistoryRow>,
    pub older: Option<Uuid>,
}

fn row(entry: HistoryEntry, policies: &[TreeRow]) -> HistoryRow {
    let record = &entry.record;
    let (event, detail) = match (entry.event, record.reported.as_ref()) {
        (HistoryEvent::Reported, Some(reported)) => {
            let local = local_value(&record.path, Some(reported));
            let detail = if local.is_empty() {
                reported_label(reported)
            } else {
                format!("{} ({local})", reported_label(reported))
            };
            ("Reported", detail)
        }
        (HistoryEvent::Reported, None) => ("Reported", "nothing".to_owned()),
        _ => {
            let from = match (record.served.source, record.served.policy_id) {
                (ServedSource::Policy, Some(policy)) => {
                    let name = policies
                        .iter()
                        .find(|p| p.id.0 == policy)
                        .map_or("(deleted policy)", |p| p.name.as_str());
                    format!(
                        "from {name} · v{}",
                        record.served.policy_version.unwrap_or_default()
                    )
                }
                (ServedSource::Device, _) => "this device's own value".to_owned(),
                _ => "unset".to_owned(),
            };
            let lock = if entry.locked == Some(true) {
                " · locked"
            } else {
                ""
            };
            ("Served", format!("{from}{lock}"))
        }
    };
    let violation = entry.locked == Some(true)
        && record
            .reported
            .as_ref()
            .is_some_and(|r| r.state == ReportedKind::Overridden);
    HistoryRow {
        at: when(Some(entry.recorded_at)),
        label: Catalog::get()
            .field(&record.path)
            .map_or_else(|| record.path.clone(), |d| d.display_name.clone()),
        path: record.path.clone(),
        event,
        detail,
        violation,
    }
}

/// The page of the device's timeline after `cursor` (newest first).
pub async fn timeline(
    state: &AppState,
    tenant: TenantId,
    id: DeviceId,
    cursor: Option<Uuid>,
    policies: &[TreeRow],
) -> Result<Timeline, ApiError> {
    let page = PageRequest {
        cursor,
        limit: PER_PAGE,
    };
    let page = field_audit::history(state, tenant, id, None, page).await?;
    Ok(Timeline {
        rows: page.items.into_iter().map(|e| row(e, policies)).collect(),
        older: page.next_cursor,
    })
}
