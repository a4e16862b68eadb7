//! A device's page: its identity, connectivity, assignment, field table (provenance, reported
//! state, violations, Adopt and Reassert), history timeline, and its device-scoped settings:
//! Service Ticket Company and Billing Integration.

use super::device_history::{Timeline, timeline};
use super::page::{self, Layout, Problem, Ui, field, redirect, render};
use super::policies::{TreeRow, fill, id_of, tree};
use super::policy_form::{Control, parse_reference, reference_value};
use crate::domain::catalog::Catalog;
use crate::domain::device::{ReportedKind, ReportedRecord};
use crate::domain::resolve::Source;
use crate::domain::sync::SyncState;
use crate::domain::{DeviceId, PolicyId, Role};
use crate::error::ApiError;
use crate::services::connectwise::{self, Lookup};
use crate::services::devices::{self, DeviceEdit, DeviceView};
use crate::services::field_audit::{self, FieldView};
use crate::services::references::{self, References};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

type Form = web::Form<Vec<(String, String)>>;

pub(super) fn sync_label(view: &DeviceView) -> &'static str {
    match view.sync {
        SyncState::Failed => "Failed",
        SyncState::InSync => "In sync",
        SyncState::Pending => "Pending",
    }
}

pub(super) fn when(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(
        || "never".to_owned(),
        |t| t.format("%-d %b %Y %H:%M UTC").to_string(),
    )
}

macro_rules! signed_in {
    ($req:expr, $state:expr) => {
        match page::signed_in(&$req, &$state, "Devices", "devices").await {
            Ok(ui) => ui,
            Err(response) => return response,
        }
    };
}

/// One row of the field table.
struct FieldRow {
    path: String,
    label: String,
    value: String,
    provenance: String,
    locked: bool,
    reported: String,
    local: String,
    violation: bool,
    /// The device overrides it locally: Adopt and Reassert apply.
    overridden: bool,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    layout: Layout,
    device_path: DeviceId,
    view: DeviceView,
    policies: Vec<TreeRow>,
    policy_name: String,
    sync: &'static str,
    last_seen: String,
    fields: Vec<FieldRow>,
    company: Control,
    billing_enabled: bool,
    billing: Vec<Control>,
    lookup_error: Option<String>,
    problem: Option<Problem>,
    saved: bool,
    /// What a save that went through left unchecked (ConnectWise unreachable, …).
    warnings: Vec<String>,
    history: Timeline,
    /// The URL of the timeline's next (older) page.
    older: Option<String>,
}

pub(super) fn shown_value(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "—".into(),
        Some(Value::Bool(b)) => if *b { "on" } else { "off" }.into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) if v.get("set").is_some() => "set (secret)".into(),
        Some(v) => v.get("name").and_then(Value::as_str).unwrap_or("set").to_owned(),
    }
}

/// What a device reported for a field, in words.
pub(super) fn reported_label(reported: &ReportedRecord) -> String {
    match reported.state {
        ReportedKind::Inherited => "In sync".into(),
        ReportedKind::Overridden => "Overridden locally".into(),
        ReportedKind::Failed => format!("Failed: {}", reported.error.as_deref().unwrap_or_default()),
        ReportedKind::Unsupported => "unsupported".into(),
    }
}

/// The local value a device reported for a field; a secret's is never shown, only that it
/// differs.
pub(super) fn local_value(path: &str, reported: Option<&ReportedRecord>) -> String {
    match reported.and_then(|r| r.local_value.as_ref()) {
        Some(_) if Catalog::get().is_secret(path) => "differs".into(),
        Some(value) => shown_value(Some(value)),
        None => String::new(),
    }
}

fn field_row(f: FieldView) -> FieldRow {
    let record = f.record.as_ref();
    let reported = record.and_then(|r| r.reported.as_ref());
    FieldRow {
        label: Catalog::get()
            .field(&f.path)
            .map(|d| d.display_name.clone())
            .unwrap_or_else(|| f.path.clone()),
        value: shown_value(f.value.as_ref()),
        provenance: match &f.source {
            Some(Source::Policy(p)) => format!("{} · v{}", p.name, p.version),
            Some(Source::Device) => "this device".into(),
            None => "—".into(),
        },
        locked: f.locked,
        reported: match (reported, record) {
            (None, Some(_)) => "Pending".into(),
            (None, None) => "—".into(),
            (Some(reported), _) => reported_label(reported),
        },
        local: local_value(&f.path, reported),
        violation: record.is_some_and(|r| r.violation),
        overridden: reported.is_some_and(|r| r.state == ReportedKind::Overridden),
        path: f.path,
    }
}

fn device_id(layout: &Layout, raw: &str) -> Result<DeviceId, HttpResponse> {
    Uuid::parse_str(raw)
        .map(DeviceId)
        .map_err(|_| page::error_page(layout, &ApiError::not_found("device")))
}

const BILLING_PATHS: [&str; 3] = ["billing.company", "billing.agreement", "billing.addition"];
const COMPANY_PATH: &str = "ticketing.service_ticket_company";

fn device_control(view: &DeviceView, path: &str, problem: Option<&Problem>) -> Control {
    let def = Catalog::get().field(path);
    let value = match view.device.device_values.get(path) {
        Some(crate::domain::policy::SettingValue::Plain(v)) => reference_value(v),
        _ => String::new(),
    };
    Control {
        path: path.to_owned(),
        html_id: path.replace('.', "-"),
        label: def.map(|d| d.display_name.clone()).unwrap_or_default(),
        help: def.map(|d| d.help.clone()).unwrap_or_default(),
        value,
        checked: false,
        badge: None,
        revert: false,
        fallback: String::new(),
        locked_above: false,
        locked_here: false,
        lock_name: String::new(),
        error: problem.and_then(|p| p.for_field(path)).map(str::to_owned),
        options: Vec::new(),
    }
}

/// The ConnectWise list a device-scoped select offers, through the device's policy's
/// credentials.
async fn options(state: &AppState, ui: &Ui, policy: PolicyId, lookup: Lookup) -> Result<Vec<Value>, String> {
    connectwise::lookup(state, ui.user.tenant_id, policy, lookup)
        .await
        .map(|items| items.iter().filter(|i| i["cancelled"] != true).cloned().collect())
        .map_err(|e| e.detail)
}

/// What the device page shows besides the device: the outcome of a change, and which page of
/// the timeline.
#[derive(Default)]
struct Shown {
    problem: Option<Problem>,
    saved: bool,
    warnings: Vec<String>,
    history: Option<Uuid>,
}

async fn device_page(
    state: &AppState,
    ui: &Ui,
    id: DeviceId,
    shown: Shown,
) -> Result<HttpResponse, ApiError> {
    let Shown {
        problem,
        saved,
        warnings,
        history,
    } = shown;
    let tenant = ui.user.tenant_id;
    let (view, fields) = field_audit::fields(state, tenant, id).await?;
    let policies = tree(state, ui, view.device.policy_id).await?;
    let history = timeline(state, tenant, id, history, &policies).await?;
    let older = history
        .older
        .map(|cursor| format!("/devices/{id}?history={cursor}#history-title"));
    let policy = view.device.policy_id;
    let mut company = device_control(&view, COMPANY_PATH, problem.as_ref());
    let mut billing: Vec<Control> = BILLING_PATHS
        .iter()
        .map(|p| device_control(&view, p, problem.as_ref()))
        .collect();
    let mut lookup_error = None;
    let live = ui.layout.can_edit();
    let companies = if live {
        options(state, ui, policy, Lookup::Companies { search: None })
            .await
            .map_err(|e| lookup_error = Some(e))
            .ok()
    } else {
        None
    };
    fill(&mut company, companies.as_deref());
    fill(&mut billing[0], companies.as_deref());
    let agreements = match (live, id_of(&billing[0].value).and_then(|c| c.parse().ok())) {
        (true, Some(company_id)) => options(state, ui, policy, Lookup::Agreements { company_id })
            .await
            .ok(),
        _ => None,
    };
    fill(&mut billing[1], agreements.as_deref());
    let additions = match (live, id_of(&billing[1].value).and_then(|a| a.parse().ok())) {
        (true, Some(agreement_id)) => options(state, ui, policy, Lookup::Additions { agreement_id })
            .await
            .ok(),
        _ => None,
    };
    fill(&mut billing[2], additions.as_deref());
    let billing_enabled = matches!(
        view.device.device_values.get("billing.enabled"),
        Some(crate::domain::policy::SettingValue::Plain(Value::Bool(true)))
    );
    let policy_name = policies
        .iter()
        .find(|p| p.id == policy)
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let status = problem
        .as_ref()
        .and_then(|p| StatusCode::from_u16(p.status).ok())
        .unwrap_or(StatusCode::OK);
    Ok(render(
        status,
        &DevicePage {
            layout: ui.layout.clone(),
            device_path: id,
            policy_name,
            sync: sync_label(&view),
            last_seen: when(view.device.last_seen_at),
            fields: fields.into_iter().map(field_row).collect(),
            view,
            policies,
            company,
            billing_enabled,
            billing,
            lookup_error,
            problem,
            saved,
            warnings,
            history,
            older,
        },
    ))
}

#[derive(Deserialize)]
pub struct ShowQuery {
    saved: Option<String>,
    /// The timeline's page: entries older than this one.
    history: Option<String>,
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> HttpResponse {
    let ui = signed_in!(req, state);
    let id = match device_id(&ui.layout, &path) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let shown = Shown {
        saved: query.saved.is_some(),
        // An unknown cursor shows the newest page rather than an error: links keep working.
        history: query.history.as_deref().and_then(|c| Uuid::parse_str(c).ok()),
        ..Shown::default()
    };
    match device_page(&state, &ui, id, shown).await {
        Ok(response) => response,
        Err(error) => page::error_page(&ui.layout, &error),
    }
}

async fn editing(
    req: &HttpRequest,
    state: &AppState,
    raw: &str,
    form: &[(String, String)],
) -> Result<(Ui, DeviceId), HttpResponse> {
    let ui = page::signed_in(req, state, "Devices", "devices").await?;
    page::check_csrf(&ui, req, form)?;
    ui.require(Role::Editor)?;
    let id = device_id(&ui.layout, raw)?;
    Ok((ui, id))
}

/// The page after a change: a redirect to the saved device, or the page itself when the save
/// went through with warnings (they would not survive a redirect) or was refused.
async fn answer(
    state: &AppState,
    ui: &Ui,
    id: DeviceId,
    outcome: Result<Vec<String>, ApiError>,
) -> HttpResponse {
    let shown = match outcome {
        Ok(warnings) if warnings.is_empty() => return redirect(&format!("/devices/{id}?saved=1")),
        Ok(warnings) => Shown {
            saved: true,
            warnings,
            ..Shown::default()
        },
        Err(error) => Shown {
            problem: Some(Problem::from(&error)),
            ..Shown::default()
        },
    };
    match device_page(state, ui, id, shown).await {
        Ok(response) => response,
        Err(error) => page::error_page(&ui.layout, &error),
    }
}

/// Saves the assigned policy, the Service Ticket Company and Billing Integration.
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
    let mut edit = DeviceEdit {
        policy_id: field(&form, "policy_id")
            .and_then(|p| Uuid::parse_str(p).ok())
            .map(PolicyId),
        ..DeviceEdit::default()
    };
    for path in std::iter::once(COMPANY_PATH).chain(BILLING_PATHS) {
        match field(&form, path).filter(|v| !v.is_empty()) {
            Some(raw) => {
                let value = parse_reference(raw).unwrap_or_else(|| Value::String(raw.to_owned()));
                edit.set.insert(path.to_owned(), value);
            }
            None => edit.unset.push(path.to_owned()),
        }
    }
    edit.set.insert(
        "billing.enabled".into(),
        Value::Bool(field(&form, "billing.enabled").is_some()),
    );
    // The same path as the API's PATCH: references checked against ConnectWise first.
    let outcome = references::update_device(
        &state,
        &ui.actor(),
        id,
        page::expected(&form),
        edit,
        References::Check,
    )
    .await
    .map(|(_, warnings)| warnings);
    answer(&state, &ui, id, outcome).await
}

/// Adopt (the device's local value becomes its device value) or Reassert (the device is asked
/// to stop overriding) one field.
pub async fn field_action(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: Form,
) -> HttpResponse {
    let form = form.into_inner();
    let (raw, action) = path.into_inner();
    let (ui, id) = match editing(&req, &state, &raw, &form).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let field_path = field(&form, "path").unwrap_or_default();
    let outcome = match action.as_str() {
        "adopt" => devices::adopt(&state, &ui.actor(), id, page::expected(&form), field_path).await,
        "reassert" => devices::reassert(&state, &ui.actor(), id, page::expected(&form), field_path).await,
        _ => return HttpResponse::NotFound().finish(),
    };
    answer(&state, &ui, id, outcome.map(|_| Vec::new())).await
}

#[derive(Template)]
#[template(path = "cascade.html")]
struct Cascade {
    controls: Vec<Control>,
    device_path: DeviceId,
}

/// Billing's cascade: a company's agreements, an agreement's additions (swapped in by htmx).
pub async fn cascade(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let ui = signed_in!(req, state);
    if ui.require(Role::Editor).is_err() {
        return HttpResponse::Forbidden().finish();
    }
    let id = match device_id(&ui.layout, &path) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let view = match devices::get(&state, ui.user.tenant_id, id).await {
        Ok(view) => view,
        Err(_) => return HttpResponse::NotFound().finish(),
    };
    let policy = view.device.policy_id;
    let parent = |path: &str| {
        field(&query, path)
            .and_then(id_of)
            .and_then(|i| i.parse::<i64>().ok())
    };
    let mut controls = Vec::new();
    let mut agreement = device_control(&view, "billing.agreement", None);
    agreement.value.clear();
    let mut addition = device_control(&view, "billing.addition", None);
    addition.value.clear();
    if field(&query, "billing.agreement").is_none() {
        // The company changed: new agreements, and no addition until one is chosen.
        let items = match parent("billing.company") {
            Some(company_id) => options(&state, &ui, policy, Lookup::Agreements { company_id }).await,
            None => Ok(Vec::new()),
        };
        if let Err(error) = &items {
            agreement.error = Some(error.clone());
        }
        fill(&mut agreement, items.ok().as_deref());
        controls.push(agreement);
        fill(&mut addition, Some(&[]));
    } else {
        let items = match parent("billing.agreement") {
            Some(agreement_id) => options(&state, &ui, policy, Lookup::Additions { agreement_id }).await,
            None => Ok(Vec::new()),
        };
        if let Err(error) = &items {
            addition.error = Some(error.clone());
        }
        fill(&mut addition, items.ok().as_deref());
    }
    controls.push(addition);
    render(
        StatusCode::OK,
        &Cascade {
            controls,
            device_path: id,
        },
    )
}
