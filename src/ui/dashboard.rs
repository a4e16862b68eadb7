//! The dashboard: per policy, how its devices stand (numbers first, then bars, each number a
//! link to the filtered device list where the list has that filter), and recent changes.

use super::page::{self, Layout, render};
use crate::domain::PolicyId;
use crate::domain::audit::Filter;
use crate::services::audit;
use crate::services::{PageRequest, field_audit};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

struct PolicyLine {
    id: PolicyId,
    name: String,
    assigned: u64,
    in_sync: u64,
    pending: u64,
    failed: u64,
    overridden: u64,
    violations: u64,
    stale: u64,
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
    total: PolicyLine,
    changes: Vec<ChangeLine>,
    action: String,
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
    let counts = match field_audit::dashboard(&state, tenant).await {
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
    let mut total = PolicyLine {
        id: PolicyId(uuid::Uuid::nil()),
        name: "All devices".into(),
        assigned: 0,
        in_sync: 0,
        pending: 0,
        failed: 0,
        overridden: 0,
        violations: 0,
        stale: 0,
    };
    let policies = counts
        .into_iter()
        .map(|(id, name, c)| {
            total.assigned += c.assigned;
            total.in_sync += c.in_sync;
            total.pending += c.pending;
            total.failed += c.failed;
            total.overridden += c.overridden;
            total.violations += c.violations;
            total.stale += c.stale;
            PolicyLine {
                id,
                name,
                assigned: c.assigned,
                in_sync: c.in_sync,
                pending: c.pending,
                failed: c.failed,
                overridden: c.overridden,
                violations: c.violations,
                stale: c.stale,
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
        },
    )
}
