//! The dashboard: per policy, how its devices stand (numbers first, then bars, each number a
//! link to the filtered device list), fleet connectivity, the field picker of "who overrides /
//! inherits field F", and recent changes.

use super::field_audit::{FieldChoice, catalogue_fields};
use super::page::{self, Layout, render};
use crate::domain::PolicyId;
use crate::domain::audit::Filter;
use crate::services::PageRequest;
use crate::services::audit;
use crate::services::policy_status::{self, PolicyCounts};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

/// One line of the table: the counts include the devices of descendant policies.
struct PolicyLine {
    id: PolicyId,
    name: String,
    counts: PolicyCounts,
    /// Devices assigned to the policy itself.
    direct: u64,
    current_version: i32,
    on_current: u64,
    on_older: u64,
    /// Devices per version they run, e.g. `v3: 2, v2: 1`.
    versions: String,
}

struct ChangeLine {
    at: String,
    who: String,
    action: String,
    /// A page of the changed thing, when the UI has one.
    link: Option<String>,
    target: String,
    fields: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    layout: Layout,
    policies: Vec<PolicyLine>,
    /// Every active device once.
    total: PolicyCounts,
    changes: Vec<ChangeLine>,
    action: String,
    /// The field picker of "who overrides / inherits field F".
    picked_field: String,
    fields: Vec<FieldChoice>,
}

#[derive(Deserialize)]
pub struct DashboardQuery {
    #[serde(default)]
    action: String,
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<DashboardQuery>,
) -> HttpResponse {
    let ui = match page::signed_in(&req, &state, "Dashboard", "dashboard").await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    let tenant = ui.user.tenant_id;
    let counts = match policy_status::dashboard(&state, tenant).await {
        Ok(counts) => counts,
        Err(error) => return page::error_page(&ui.layout, &error),
    };
    let filter = Filter {
        action: Some(query.action.trim().to_owned()).filter(|a| !a.is_empty()),
        ..Filter::default()
    };
    let recent = match audit::list(
        &state,
        tenant,
        &filter,
        PageRequest {
            cursor: None,
            limit: 20,
        },
    )
    .await
    {
        Ok(page) => page.items,
        Err(error) => return page::error_page(&ui.layout, &error),
    };
    let mut total = PolicyCounts::default();
    let policies = counts
        .into_iter()
        .map(|p| {
            total.sum(&p.direct);
            PolicyLine {
                id: p.id,
                name: p.name,
                counts: p.total,
                direct: p.direct.assigned,
                current_version: p.compliance.current_version,
                on_current: p.compliance.on_current,
                on_older: p.compliance.on_older,
                versions: p
                    .compliance
                    .versions
                    .iter()
                    .map(|(version, devices)| format!("v{version}: {devices}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })
        .collect();
    let changes = recent
        .into_iter()
        .map(|e| ChangeLine {
            at: e.created_at.format("%-d %b %H:%M UTC").to_string(),
            who: e.actor_label,
            link: match e.target_type.as_str() {
                "policy" => Some(format!("/policies/{}", e.target_id)),
                "device" => Some(format!("/devices/{}", e.target_id)),
                _ => None,
            },
            target: format!(
                "{} {}",
                e.target_type,
                e.target_id.chars().take(8).collect::<String>()
            ),
            fields: e
                .changes
                .iter()
                .map(|c| c.field.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            action: e.action,
        })
        .collect();
    render(
        StatusCode::OK,
        &Dashboard {
            layout: ui.layout,
            policies,
            total,
            changes,
            action: query.action.clone(),
            picked_field: String::new(),
            fields: catalogue_fields(),
        },
    )
}
