//! A policy's versions: who saved what and when, a side-by-side diff of any two versions, and
//! rollback (a new version with an old version's content).

use super::page::{self, Layout, Ui, field, redirect, render};
use crate::domain::diff::ChangeKind;
use crate::domain::{Expected, PolicyId, Role};
use crate::error::ApiError;
use crate::services::policies;
use crate::services::references::References;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

/// Versions listed at most, newest first.
const SHOWN: i32 = 50;

struct VersionRow {
    version: i32,
    at: String,
    comment: String,
}

struct DiffRow {
    field: String,
    kind: &'static str,
    before: String,
    after: String,
}

#[derive(Template)]
#[template(path = "versions.html")]
struct VersionsPage {
    layout: Layout,
    id: PolicyId,
    name: String,
    current: i32,
    versions: Vec<VersionRow>,
    /// `(from, to, rows)` when two versions are compared.
    diff: Option<(i32, i32, Vec<DiffRow>)>,
}

#[derive(Deserialize)]
pub struct VersionsQuery {
    from: Option<i32>,
    to: Option<i32>,
}

fn shown(value: Option<&Value>, secret: bool) -> String {
    match value {
        _ if secret => "(secret)".into(),
        None | Some(Value::Null) => "—".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "on" } else { "off" }.into(),
        Some(v) => v
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_owned),
    }
}

async fn versions_page(
    state: &AppState,
    ui: &Ui,
    id: PolicyId,
    query: &VersionsQuery,
) -> Result<HttpResponse, ApiError> {
    let tenant = ui.user.tenant_id;
    let detail = policies::get(state, tenant, id).await?;
    let current = detail.node.version;
    let after = (current - SHOWN).max(0);
    let (mut rows, _) = policies::list_versions(state, tenant, id, Some(after), SHOWN as u64).await?;
    rows.reverse();
    let versions = rows
        .into_iter()
        .map(|m| VersionRow {
            version: m.version,
            at: m.created_at.format("%-d %b %Y %H:%M UTC").to_string(),
            comment: m.comment.unwrap_or_default(),
        })
        .collect();
    let diff = if query.from.is_some() || query.to.is_some() {
        let (from, to, changes) = policies::diff_versions(state, tenant, id, query.from, query.to).await?;
        let rows = changes
            .into_iter()
            .map(|c| DiffRow {
                kind: match c.change {
                    ChangeKind::Added => "added",
                    ChangeKind::Removed => "removed",
                    ChangeKind::Changed => "changed",
                },
                before: shown(c.before.as_ref(), c.secret && c.change != ChangeKind::Added),
                after: shown(c.after.as_ref(), c.secret && c.change != ChangeKind::Removed),
                field: c.field,
            })
            .collect();
        Some((from, to, rows))
    } else {
        None
    };
    Ok(render(
        StatusCode::OK,
        &VersionsPage {
            layout: ui.layout.clone(),
            id,
            name: detail.node.content.name,
            current,
            versions,
            diff,
        },
    ))
}

fn policy_id(ui: &Ui, raw: &str) -> Result<PolicyId, HttpResponse> {
    Uuid::parse_str(raw)
        .map(PolicyId)
        .map_err(|_| page::error_page(&ui.layout, &ApiError::not_found("policy")))
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<VersionsQuery>,
) -> HttpResponse {
    let ui = match page::signed_in(&req, &state, "Versions", "policies").await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    let id = match policy_id(&ui, &path) {
        Ok(id) => id,
        Err(response) => return response,
    };
    versions_page(&state, &ui, id, &query)
        .await
        .unwrap_or_else(|error| page::error_page(&ui.layout, &error))
}

/// Rollback: a new version with the content of version `to`, if the policy is still at the
/// version the page showed.
pub async fn rollback(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let ui = match page::signed_in(&req, &state, "Versions", "policies").await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    if let Err(refused) = page::check_csrf(&ui, &req, &form).and_then(|()| ui.require(Role::Editor)) {
        return refused;
    }
    let id = match policy_id(&ui, &path) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let number = |name: &str| field(&form, name).and_then(|v| v.parse::<i32>().ok());
    let expected = number("version").map_or(Expected::Version(-1), Expected::Version);
    let Some(to) = number("to") else {
        return page::error_page(&ui.layout, &ApiError::not_found("policy version"));
    };
    match policies::rollback(&state, &ui.actor(), id, expected, to, None, References::Check).await {
        Ok(saved) => redirect(&format!("/policies/{id}?saved={}", saved.detail.node.version)),
        Err(error) => page::error_page(&ui.layout, &error),
    }
}
