//! Devices: the searchable, filtered, paginated list, and a device's page with its identity,
//! connectivity, assignment, field table (provenance, reported state, violations, Adopt and
//! Reassert) and its device-scoped settings: Service Ticket Company and Billing Integration.

use super::page::{self, Layout, Problem, Ui, field, redirect, render};
use super::policies::{TreeRow, fill, id_of, tree};
use super::policy_form::{Control, parse_reference, reference_value};
use crate::db::repo::devices::DeviceFilter;
use crate::domain::catalog::Catalog;
use crate::domain::device::{DeviceKind, Lifecycle};
use crate::domain::resolve::Source;
use crate::domain::sync::SyncState;
use crate::domain::{DeviceId, Expected, PolicyId, Role};
use crate::error::ApiError;
use crate::services::PageRequest;
use crate::services::connectwise::{self, Lookup};
use crate::services::devices::{self, DeviceEdit, DeviceView};
use crate::services::field_audit::{self, FieldView};
use crate::services::policy_status;
use crate::services::references::{self, References};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

type Form = web::Form<Vec<(String, String)>>;

/// The list's filters, all in the URL so a view can be shared.
#[derive(Deserialize, Default, Clone)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    policy: String,
    #[serde(default)]
    overrides: String,
    #[serde(default)]
    failures: String,
    #[serde(default)]
    cursor: String,
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
    rows: Vec<Row>,
    /// The URL of the next page, filters kept.
    next: Option<String>,
}

fn sync_label(view: &DeviceView) -> &'static str {
    match view.sync {
        SyncState::Failed => "Failed",
        SyncState::InSync => "In sync",
        SyncState::Pending => "Pending",
    }
}

fn when(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(
        || "never".to_owned(),
        |t| t.format("%-d %b %Y %H:%M UTC").to_string(),
    )
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
                ("overrides", &query.overrides),
                ("failures", &query.failures),
                ("cursor", &query.cursor),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty()),
        )
        .finish()
}

macro_rules! signed_in {
    ($req:expr, $state:expr) => {
        match page::signed_in(&$req, &$state, "Devices", "devices").await {
            Ok(ui) => ui,
            Err(response) => return response,
        }
    };
}

pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    let ui = signed_in!(req, state);
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
    let policy_ids = match Uuid::parse_str(&query.policy) {
        Ok(policy) => Some(policy_status::subtree(state, tenant, PolicyId(policy)).await?),
        Err(_) => None,
    };
    let filter = DeviceFilter {
        kind: query.kind.parse::<DeviceKind>().ok(),
        lifecycle: Some(Lifecycle::Active),
        policy_ids,
        has_overrides: flag(&query.overrides),
        has_failures: flag(&query.failures),
        hostname: Some(query.q.trim().to_owned()).filter(|q| !q.is_empty()),
        ..DeviceFilter::default()
    };
    let page = devices::list(
        state,
        tenant,
        filter,
        PageRequest {
            cursor: Uuid::parse_str(&query.cursor).ok(),
            limit: PageRequest::DEFAULT_LIMIT,
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
            query,
            policies,
            rows,
            next,
        },
    ))
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
}

fn shown_value(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "—".into(),
        Some(Value::Bool(b)) => if *b { "on" } else { "off" }.into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) if v.get("set").is_some() => "set (secret)".into(),
        Some(v) => v.get("name").and_then(Value::as_str).unwrap_or("set").to_owned(),
    }
}

fn field_row(f: FieldView) -> FieldRow {
    let record = f.record.as_ref();
    let reported = record.and_then(|r| r.reported.as_ref());
    let state = reported.map(|r| r.state.as_str()).unwrap_or_default();
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
        reported: match (state, record) {
            ("", Some(_)) => "Pending".into(),
            ("", None) => "—".into(),
            ("inherited", _) => "In sync".into(),
            ("overridden", _) => "Overridden locally".into(),
            ("failed", _) => format!(
                "Failed: {}",
                reported.and_then(|r| r.error.clone()).unwrap_or_default()
            ),
            (other, _) => other.to_owned(),
        },
        local: reported
            .and_then(|r| r.local_value.as_ref())
            .map(|v| {
                if Catalog::get().is_secret(&f.path) {
                    "differs".into()
                } else {
                    shown_value(Some(v))
                }
            })
            .unwrap_or_default(),
        violation: record.is_some_and(|r| r.violation),
        overridden: state == "overridden",
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

async fn device_page(
    state: &AppState,
    ui: &Ui,
    id: DeviceId,
    problem: Option<Problem>,
    saved: bool,
) -> Result<HttpResponse, ApiError> {
    let tenant = ui.user.tenant_id;
    let (view, fields) = field_audit::fields(state, tenant, id).await?;
    let policies = tree(state, ui, view.device.policy_id).await?;
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
        },
    ))
}

#[derive(Deserialize)]
pub struct ShowQuery {
    saved: Option<String>,
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
    match device_page(&state, &ui, id, None, query.saved.is_some()).await {
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

fn expected(form: &[(String, String)]) -> Expected {
    field(form, "version")
        .and_then(|v| v.parse().ok())
        .map_or(Expected::Version(-1), Expected::Version)
}

async fn answer(
    state: &AppState,
    ui: &Ui,
    id: DeviceId,
    outcome: Result<DeviceView, ApiError>,
) -> HttpResponse {
    match outcome {
        Ok(_) => redirect(&format!("/devices/{id}?saved=1")),
        Err(error) => match device_page(state, ui, id, Some(Problem::from(&error)), false).await {
            Ok(response) => response,
            Err(error) => page::error_page(&ui.layout, &error),
        },
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
    let outcome =
        references::update_device(&state, &ui.actor(), id, expected(&form), edit, References::Check)
            .await
            .map(|(view, _warnings)| view);
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
        "adopt" => devices::adopt(&state, &ui.actor(), id, expected(&form), field_path).await,
        "reassert" => devices::reassert(&state, &ui.actor(), id, expected(&form), field_path).await,
        _ => return HttpResponse::NotFound().finish(),
    };
    answer(&state, &ui, id, outcome).await
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
