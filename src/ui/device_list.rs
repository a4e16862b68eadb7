//! The device list: search by hostname and filters (kind, policy, connectivity, in sync /
//! pending / failed, overrides, violations), all in the URL, paginated with the API's cursors.

use super::devices::{sync_label, when};
use super::page::{self, Layout, Ui, render};
use super::policies::{TreeRow, tree};
use crate::db::repo::connectivity::ConnectivityFilter;
use crate::db::repo::devices::DeviceFilter;
use crate::domain::device::{Connectivity, DeviceKind, Lifecycle};
use crate::domain::sync::SyncState;
use crate::domain::{DeviceId, PolicyId};
use crate::error::ApiError;
use crate::services::PageRequest;
use crate::services::devices;
use crate::services::policy_status;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

/// The list's filters, all in the URL so a view can be shared.
#[derive(Deserialize, Default, Clone)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    policy: String,
    /// `yes`: only devices assigned to the policy itself, not to the policies under it.
    #[serde(default)]
    direct: String,
    #[serde(default)]
    overrides: String,
    #[serde(default)]
    failures: String,
    #[serde(default)]
    violations: String,
    /// `online`, `stale`, `offline`, `new`, or `stale_or_offline` (the dashboard's column).
    #[serde(default)]
    connectivity: String,
    /// `in_sync`, `pending` or `failed`.
    #[serde(default)]
    sync: String,
    #[serde(default)]
    cursor: String,
}

/// The connectivity states a `connectivity` value of the list asks for.
fn connectivity_states(raw: &str) -> Option<Vec<Connectivity>> {
    Some(match raw {
        "stale_or_offline" => vec![Connectivity::Stale, Connectivity::Offline],
        "new" => vec![Connectivity::New],
        "online" => vec![Connectivity::Online],
        "stale" => vec![Connectivity::Stale],
        "offline" => vec![Connectivity::Offline],
        _ => return None,
    })
}

/// An option of a filter's select.
struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

fn choices(options: &[(&'static str, &'static str)], current: &str) -> Vec<Choice> {
    options
        .iter()
        .map(|&(value, label)| Choice {
            value,
            label,
            selected: value == current,
        })
        .collect()
}

const CONNECTIVITY_CHOICES: [(&str, &str); 5] = [
    ("online", "online"),
    ("stale", "stale"),
    ("offline", "offline"),
    ("stale_or_offline", "stale or offline"),
    ("new", "never seen"),
];
const SYNC_CHOICES: [(&str, &str); 3] = [
    ("in_sync", "in sync"),
    ("pending", "pending"),
    ("failed", "failed"),
];

fn sync_state(raw: &str) -> Option<SyncState> {
    match raw {
        "in_sync" => Some(SyncState::InSync),
        "pending" => Some(SyncState::Pending),
        "failed" => Some(SyncState::Failed),
        _ => None,
    }
}

struct Row {
    id: DeviceId,
    hostname: String,
    kind: &'static str,
    policy: String,
    connectivity: &'static str,
    sync: &'static str,
    last_seen: String,
}

#[derive(Template)]
#[template(path = "devices.html")]
struct ListPage {
    layout: Layout,
    query: ListQuery,
    policies: Vec<TreeRow>,
    connectivity: Vec<Choice>,
    sync: Vec<Choice>,
    rows: Vec<Row>,
    /// The URL of the next page, filters kept.
    next: Option<String>,
}

fn flag(raw: &str) -> Option<bool> {
    match raw {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

fn query_string(query: &ListQuery) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            [
                ("q", &query.q),
                ("kind", &query.kind),
                ("policy", &query.policy),
                ("direct", &query.direct),
                ("overrides", &query.overrides),
                ("failures", &query.failures),
                ("violations", &query.violations),
                ("connectivity", &query.connectivity),
                ("sync", &query.sync),
                ("cursor", &query.cursor),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty()),
        )
        .finish()
}

pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    let ui = match page::signed_in(&req, &state, "Devices", "devices").await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    let query = query.into_inner();
    match list_page(&state, ui.layout.clone(), &ui, query).await {
        Ok(response) => response,
        Err(error) => page::error_page(&ui.layout, &error),
    }
}

async fn list_page(
    state: &AppState,
    layout: Layout,
    ui: &Ui,
    query: ListQuery,
) -> Result<HttpResponse, ApiError> {
    let tenant = ui.user.tenant_id;
    let policies = tree(state, ui, PolicyId(Uuid::nil())).await?;
    // Unknown filter values are ignored rather than refused: a shared link keeps working.
    // A policy's devices include those of the policies under it, as on the dashboard.
    let policy_ids = match (Uuid::parse_str(&query.policy), query.direct.as_str()) {
        (Ok(policy), "yes") => Some(vec![PolicyId(policy)]),
        (Ok(policy), _) => Some(policy_status::subtree(state, tenant, PolicyId(policy)).await?),
        (Err(_), _) => None,
    };
    let sync = sync_state(&query.sync);
    let connectivity = connectivity_states(&query.connectivity);
    // SQL narrows the candidates; the sync state against the current config, and connectivity
    // with this replica's unwritten check-ins, are decided on each device's view.
    let filter = DeviceFilter {
        kind: query.kind.parse::<DeviceKind>().ok(),
        lifecycle: Some(Lifecycle::Active),
        policy_ids,
        has_overrides: flag(&query.overrides),
        has_failures: match sync {
            Some(SyncState::Failed) => Some(true),
            Some(_) => Some(false),
            None => flag(&query.failures),
        },
        has_violations: match sync {
            Some(SyncState::InSync) => Some(false),
            _ => flag(&query.violations),
        },
        connectivity: connectivity.clone().map(|states| ConnectivityFilter {
            states,
            now: state.clock.now(),
            thresholds: state.config.thresholds(),
        }),
        hostname: Some(query.q.trim().to_owned()).filter(|q| !q.is_empty()),
        ..DeviceFilter::default()
    };
    let page = devices::list_matching(
        state,
        tenant,
        filter,
        PageRequest {
            cursor: Uuid::parse_str(&query.cursor).ok(),
            limit: PageRequest::DEFAULT_LIMIT,
        },
        |v| {
            sync.is_none_or(|s| v.sync == s)
                && connectivity.as_ref().is_none_or(|c| c.contains(&v.connectivity))
        },
    )
    .await?;
    let name_of = |id: PolicyId| {
        policies
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.name.clone())
            .unwrap_or_default()
    };
    let rows = page
        .items
        .iter()
        .map(|v| Row {
            id: v.device.id,
            hostname: v.device.hostname.clone(),
            kind: v.device.kind.as_str(),
            policy: name_of(v.device.policy_id),
            connectivity: v.connectivity.as_str(),
            sync: sync_label(v),
            last_seen: when(v.device.last_seen_at),
        })
        .collect();
    let next = page.next_cursor.map(|cursor| {
        let next = ListQuery {
            cursor: cursor.to_string(),
            ..query.clone()
        };
        format!("/devices?{}", query_string(&next))
    });
    Ok(render(
        StatusCode::OK,
        &ListPage {
            layout,
            connectivity: choices(&CONNECTIVITY_CHOICES, &query.connectivity),
            sync: choices(&SYNC_CHOICES, &query.sync),
            query,
            policies,
            rows,
            next,
        },
    ))
}
