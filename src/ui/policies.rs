//! The Policy Settings tab: the policy tree beside the selected policy's ConnectWise and
//! Ticketing Settings, saved with `If-Match` semantics (the version the form was read at).

use super::page::{self, Layout, Problem, Ui, field, redirect, render};
use super::policy_form::{self, CREDENTIAL_PATHS, Control, EventRow, Inputs, Opt, SECRET_PATH};
use crate::domain::policy::SettingValue;
use crate::domain::{PolicyId, Role};
use crate::error::{ApiError, Code};
use crate::services::connectwise::{self, CredentialSource, Lookup, RawCredentials, Tested};
use crate::services::policies::{self, PolicyEdit};
use crate::services::references::References;
use crate::services::{Page, PageRequest};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use uuid::Uuid;

type Form = web::Form<Vec<(String, String)>>;

/// One line of the policy tree.
pub(super) struct TreeRow {
    pub id: PolicyId,
    pub name: String,
    pub depth: usize,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "policies.html")]
struct PolicyPage {
    layout: Layout,
    tree: Vec<TreeRow>,
    id: PolicyId,
    name: String,
    version: i32,
    updated_at: String,
    is_root: bool,
    saved: Option<i32>,
    warnings: Vec<String>,
    problem: Option<Problem>,
    /// The save lost a race (`412`): the version the form was read at.
    conflict: Option<i32>,
    credentials: Vec<Control>,
    secret: Control,
    secret_changed: Option<String>,
    events: Vec<EventRow>,
    /// Why the dropdowns could not be filled from ConnectWise.
    lookup_error: Option<String>,
}

#[derive(Template)]
#[template(path = "status_cells.html")]
struct StatusCells<'a> {
    row: &'a EventRow,
    oob: bool,
}

#[derive(Template)]
#[template(path = "test_result.html")]
struct TestResult {
    ok: bool,
    message: String,
    errors: Vec<(String, String)>,
}

fn not_found(layout: &Layout) -> HttpResponse {
    page::error_page(layout, &ApiError::not_found("policy"))
}

fn policy_id(layout: &Layout, raw: &str) -> Result<PolicyId, HttpResponse> {
    Uuid::parse_str(raw).map(PolicyId).map_err(|_| not_found(layout))
}

/// Every policy of the tenant, root first, each followed by its children by name.
pub(super) async fn tree(state: &AppState, ui: &Ui, selected: PolicyId) -> Result<Vec<TreeRow>, ApiError> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let Page { items, next_cursor } = policies::list(
            state,
            ui.user.tenant_id,
            PageRequest {
                cursor,
                limit: PageRequest::MAX_LIMIT,
            },
        )
        .await?;
        all.extend(items);
        match next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    all.sort_by_key(|p| p.name.to_lowercase());
    let mut rows = Vec::with_capacity(all.len());
    // Depth-first without recursion: children of a node are pushed in reverse name order.
    let mut pending: Vec<(PolicyId, usize)> = all
        .iter()
        .filter(|p| p.parent_id.is_none())
        .rev()
        .map(|p| (p.id, 0))
        .collect();
    while let Some((id, depth)) = pending.pop() {
        let Some(policy) = all.iter().find(|p| p.id == id) else {
            continue;
        };
        rows.push(TreeRow {
            id,
            name: policy.name.clone(),
            depth,
            selected: id == selected,
        });
        pending.extend(
            all.iter()
                .filter(|p| p.parent_id == Some(id))
                .rev()
                .map(|p| (p.id, depth + 1)),
        );
    }
    Ok(rows)
}

fn option_text(item: &Value) -> String {
    let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
    if item.get("closed") == Some(&Value::Bool(true)) {
        format!("{name} (closed)")
    } else {
        name.to_owned()
    }
}

/// Fills a select from lookup `items`, keeping a stored value ConnectWise no longer lists
/// (marked, not silently blanked).
pub(super) fn fill(control: &mut Control, items: Option<&[Value]>) {
    let mut options = vec![Opt {
        value: String::new(),
        text: "— none —".into(),
        selected: control.value.is_empty(),
    }];
    let mut found = control.value.is_empty();
    for item in items.unwrap_or_default() {
        let value = policy_form::reference_value(item);
        let selected = !value.is_empty() && id_of(&value) == id_of(&control.value);
        found |= selected;
        options.push(Opt {
            value: if selected { control.value.clone() } else { value },
            text: option_text(item),
            selected,
        });
    }
    if !found {
        let name = control.value.split_once(':').map(|(_, n)| n).unwrap_or_default();
        let text = match items {
            Some(_) => format!("{name} (not found in ConnectWise)"),
            None => name.to_owned(),
        };
        options.push(Opt {
            value: control.value.clone(),
            text,
            selected: true,
        });
    }
    control.options = options;
}

pub(super) fn id_of(value: &str) -> Option<&str> {
    value.split_once(':').map(|(id, _)| id)
}

/// Fills the status selects of a row from the statuses of its chosen board.
async fn fill_statuses(
    state: &AppState,
    ui: &Ui,
    id: PolicyId,
    row: &mut EventRow,
    live: bool,
) -> Option<String> {
    let board = id_of(&row.board.value).and_then(|b| b.parse::<i64>().ok());
    let (items, error) = match (live, board) {
        (true, Some(board_id)) => {
            match connectwise::lookup(state, ui.user.tenant_id, id, Lookup::Statuses { board_id }).await {
                Ok(items) => (
                    Some(
                        items
                            .iter()
                            .filter(|s| s["inactive"] != true)
                            .cloned()
                            .collect::<Vec<_>>(),
                    ),
                    None,
                ),
                Err(error) => (None, Some(error.detail)),
            }
        }
        _ => (None, None),
    };
    fill(&mut row.new_status, items.as_deref());
    fill(&mut row.closed_status, items.as_deref());
    error
}

pub struct Shown {
    pub problem: Option<Problem>,
    pub submitted: Option<Vec<(String, String)>>,
    pub saved: Option<i32>,
    /// What a save that went through left unchecked (ConnectWise unreachable, …).
    pub warnings: Vec<String>,
    pub status: StatusCode,
}

async fn page(state: &AppState, ui: Ui, id: PolicyId, shown: Shown) -> Result<HttpResponse, ApiError> {
    let tenant = ui.user.tenant_id;
    let detail = policies::get(state, tenant, id).await?;
    let (node, resolution) = policies::resolved(state, tenant, id).await?;
    let parent = match node.parent_id {
        Some(parent) => Some(policies::resolved(state, tenant, parent).await?.1),
        None => None,
    };
    let inputs = Inputs {
        node: &node,
        resolution: &resolution,
        parent: parent.as_ref(),
        problem: shown.problem.as_ref(),
        submitted: shown.submitted.as_deref(),
    };
    let credentials: Vec<Control> = CREDENTIAL_PATHS.iter().map(|p| inputs.control(p)).collect();
    let mut secret = inputs.control(SECRET_PATH);
    secret.value.clear();
    let mut events = inputs.event_rows();
    let secret_changed = inputs.secret_changed();
    // Dropdowns are filled live for those who may change them (as the lookup API allows);
    // viewers see the stored choices only.
    let live = ui.layout.can_edit() && resolution.contains_key("connectwise.site");
    let mut lookup_error = None;
    let boards = if live {
        match connectwise::lookup(state, tenant, id, Lookup::Boards).await {
            Ok(items) => Some(
                items
                    .iter()
                    .filter(|b| b["inactive"] != true && b["project"] != true)
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            Err(error) => {
                lookup_error = Some(format!("ConnectWise lists could not be loaded: {}", error.detail));
                None
            }
        }
    } else {
        None
    };
    if ui.layout.can_edit() && !resolution.contains_key("connectwise.site") {
        lookup_error =
            Some("Enter and save the ConnectWise credentials to fill the boards and statuses.".into());
    }
    if boards.is_some() {
        // Warm the lookup cache for every chosen board at once; the rows then read from it.
        let chosen: BTreeSet<i64> = events
            .iter()
            .filter_map(|r| id_of(&r.board.value)?.parse().ok())
            .collect();
        join_all(
            chosen
                .into_iter()
                .map(|board_id| connectwise::lookup(state, tenant, id, Lookup::Statuses { board_id })),
        )
        .await;
    }
    let mut statuses_failed = false;
    for row in &mut events {
        fill(&mut row.board, boards.as_deref());
        // After one failure the others would fail (and wait) alike: stored values only.
        let live = boards.is_some() && !statuses_failed;
        if let Some(error) = fill_statuses(state, &ui, id, row, live).await {
            statuses_failed = true;
            lookup_error.get_or_insert(format!("ConnectWise statuses could not be loaded: {error}"));
        }
    }
    let lost_race = shown
        .problem
        .as_ref()
        .is_some_and(|p| p.code == Code::PreconditionFailed.as_str());
    let conflict = shown
        .submitted
        .as_deref()
        .filter(|_| lost_race)
        .map(|form| field(form, "version").and_then(|v| v.parse().ok()).unwrap_or(0));
    let page = PolicyPage {
        tree: tree(state, &ui, id).await?,
        id,
        name: node.content.name.clone(),
        version: detail.node.version,
        updated_at: detail.updated_at.format("%-d %b %Y %H:%M UTC").to_string(),
        is_root: node.parent_id.is_none(),
        saved: shown.saved,
        warnings: shown.warnings,
        problem: shown.problem,
        conflict,
        credentials,
        secret,
        secret_changed,
        events,
        lookup_error,
        layout: ui.layout,
    };
    Ok(render(shown.status, &page))
}

macro_rules! signed_in {
    ($req:expr, $state:expr) => {
        match page::signed_in(&$req, &$state, "Policy Settings", "policies").await {
            Ok(ui) => ui,
            Err(response) => return response,
        }
    };
}

/// `/policies`: the tenant's root policy.
pub async fn first(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let ui = signed_in!(req, state);
    match tree(&state, &ui, PolicyId(Uuid::nil())).await {
        Ok(rows) => match rows.first() {
            Some(root) => redirect(&format!("/policies/{}", root.id)),
            None => not_found(&ui.layout),
        },
        Err(error) => page::error_page(&ui.layout, &error),
    }
}

#[derive(Deserialize)]
pub struct ShowQuery {
    saved: Option<i32>,
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> HttpResponse {
    let ui = signed_in!(req, state);
    let id = match policy_id(&ui.layout, &path) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let shown = Shown {
        problem: None,
        submitted: None,
        saved: query.saved,
        warnings: Vec::new(),
        status: StatusCode::OK,
    };
    shown_or_error(&state, ui, id, shown).await
}

async fn shown_or_error(state: &AppState, ui: Ui, id: PolicyId, shown: Shown) -> HttpResponse {
    // Keep what the error page needs before `page` takes the layout.
    let fallback = ui.layout.clone();
    match page(state, ui, id, shown).await {
        Ok(response) => response,
        Err(error) => page::error_page(&fallback, &error),
    }
}

/// Signed in, an editor, a valid CSRF token and a policy id: the preamble of every change.
async fn editing(
    req: &HttpRequest,
    state: &AppState,
    raw: &str,
    form: &[(String, String)],
) -> Result<(Ui, PolicyId), HttpResponse> {
    let ui = page::signed_in(req, state, "Policy Settings", "policies").await?;
    page::check_csrf(&ui, req, form)?;
    ui.require(Role::Editor)?;
    let id = policy_id(&ui.layout, raw)?;
    Ok((ui, id))
}

async fn apply(
    state: &AppState,
    ui: Ui,
    id: PolicyId,
    form: Vec<(String, String)>,
    edit: PolicyEdit,
) -> HttpResponse {
    match policies::update(
        state,
        &ui.actor(),
        id,
        page::expected(&form),
        edit,
        References::Check,
    )
    .await
    {
        Ok(saved) if saved.warnings.is_empty() => {
            redirect(&format!("/policies/{id}?saved={}", saved.detail.node.version))
        }
        // Shown at once: the warnings would not survive a redirect.
        Ok(saved) => {
            let shown = Shown {
                problem: None,
                submitted: None,
                saved: Some(saved.detail.node.version),
                warnings: saved.warnings,
                status: StatusCode::OK,
            };
            shown_or_error(state, ui, id, shown).await
        }
        Err(error) => {
            let status =
                StatusCode::from_u16(error.code.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            let shown = Shown {
                problem: Some(Problem::from(&error)),
                submitted: Some(form),
                saved: None,
                warnings: Vec::new(),
                status,
            };
            shown_or_error(state, ui, id, shown).await
        }
    }
}

/// Save Configuration and Credentials.
pub async fn save(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let form = form.into_inner();
    let (ui, id) = match editing(&req, &state, &path, &form).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let (node, resolution) = match policies::resolved(&state, ui.user.tenant_id, id).await {
        Ok(found) => found,
        Err(error) => return page::error_page(&ui.layout, &error),
    };
    let edit = policy_form::edit_from_form(&node, &resolution, &form);
    apply(&state, ui, id, form, edit).await
}

/// Revert: remove this policy's own value of one field, so it inherits again.
pub async fn revert(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let form = form.into_inner();
    let (ui, id) = match editing(&req, &state, &path, &form).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let edit = PolicyEdit {
        unset: field(&form, "path").map(str::to_owned).into_iter().collect(),
        comment: Some("reverted to the inherited value".into()),
        ..PolicyEdit::default()
    };
    // The page's other fields are not part of a revert: show the stored values after it.
    let version_only: Vec<(String, String)> = form.into_iter().filter(|(k, _)| k == "version").collect();
    apply(&state, ui, id, version_only, edit).await
}

/// Test Connection: with the typed credentials when a new API Secret was typed, else with the
/// policy's stored ones (the secret never goes back to the browser).
pub async fn test_connection(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let form = form.into_inner();
    let (ui, id) = match editing(&req, &state, &path, &form).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let typed = |path: &str| field(&form, path).unwrap_or_default().trim().to_owned();
    let source = match typed(SECRET_PATH) {
        secret if !secret.is_empty() => CredentialSource::Given(RawCredentials {
            site: typed("connectwise.site"),
            company_id: typed("connectwise.company_id"),
            public_key: typed("connectwise.public_key"),
            private_key: secret,
        }),
        _ => {
            // Typed values that differ from the stored ones cannot be tested with the stored
            // secret: it may only ever go to the site it was entered for.
            let changed = match policies::resolved(&state, ui.user.tenant_id, id).await {
                Ok((_, resolution)) => CREDENTIAL_PATHS.iter().any(|p| {
                    let stored = match resolution.get(*p).and_then(|r| r.value.as_ref()) {
                        Some(SettingValue::Plain(Value::String(s))) => s.as_str(),
                        _ => "",
                    };
                    stored != typed(p)
                }),
                Err(error) => return test_answer(false, error.detail.clone(), &error),
            };
            if changed {
                let error = ApiError::new(
                    Code::ValidationFailed,
                    "changed credentials are tested with their API Secret",
                );
                return test_answer(
                    false,
                    "You changed the credentials: type the API Secret (Replace) to test them.".into(),
                    &error,
                );
            }
            CredentialSource::Policy(id)
        }
    };
    match connectwise::test_connection(&state, ui.user.tenant_id, source).await {
        Ok(Tested::Ok {
            version,
            is_cloud,
            latency_ms,
        }) => {
            let place = if is_cloud { "cloud" } else { "on-premises" };
            let message = format!("Connected: ConnectWise {version} ({place}), answered in {latency_ms} ms.");
            render(
                StatusCode::OK,
                &TestResult {
                    ok: true,
                    message,
                    errors: Vec::new(),
                },
            )
        }
        Ok(Tested::Failed { reason, detail }) => render(
            StatusCode::OK,
            &TestResult {
                ok: false,
                message: format!("Connection failed ({reason}): {detail}"),
                errors: Vec::new(),
            },
        ),
        Err(error) => test_answer(false, error.detail.clone(), &error),
    }
}

fn test_answer(ok: bool, message: String, error: &ApiError) -> HttpResponse {
    let errors = Problem::from(error).errors;
    render(StatusCode::OK, &TestResult { ok, message, errors })
}

#[derive(Deserialize)]
pub struct StatusQuery {
    event: String,
}

/// The New and Closed status selects of one event class, for the board just chosen
/// (swapped in by htmx, out of band).
pub async fn statuses(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<StatusQuery>,
    form: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let ui = signed_in!(req, state);
    if ui.require(Role::Editor).is_err() {
        return HttpResponse::Forbidden().finish();
    }
    let id = match policy_id(&ui.layout, &path) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let Some(key) = crate::domain::catalog::EVENT_CLASSES
        .iter()
        .map(|c| c.key)
        .find(|k| *k == query.event)
    else {
        return HttpResponse::NotFound().finish();
    };
    let (node, resolution) = match policies::resolved(&state, ui.user.tenant_id, id).await {
        Ok(found) => found,
        Err(_) => return HttpResponse::NotFound().finish(),
    };
    let inputs = Inputs {
        node: &node,
        resolution: &resolution,
        parent: None,
        problem: None,
        submitted: None,
    };
    let Some(mut row) = inputs.event_rows().into_iter().find(|r| r.key == key) else {
        return HttpResponse::NotFound().finish();
    };
    row.board.value = field(&form, &row.board.path).unwrap_or_default().to_owned();
    // The chosen board changed: the stored statuses belong to the old one.
    row.new_status.value.clear();
    row.closed_status.value.clear();
    let error = fill_statuses(&state, &ui, id, &mut row, true).await;
    if let Some(error) = error {
        row.new_status.error = Some(error);
    }
    render(StatusCode::OK, &StatusCells { row: &row, oob: true })
}
