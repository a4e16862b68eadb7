//! "Who overrides field F?" and "who inherits field F?": the field audit's two questions as
//! pages, reached from the dashboard's field picker. A field that is not a catalogue path is a
//! search: the page lists the catalogue fields whose path or name contains the text.

use super::devices::{local_value, shown_value, when};
use super::page::{self, Layout, render};
use super::policies::{TreeRow, tree};
use crate::domain::catalog::Catalog;
use crate::domain::device::{FieldRecord, ServedSource, value_fingerprint};
use crate::domain::field_audit::{InheritedState, OverrideKind};
use crate::domain::policy::PolicyTree;
use crate::domain::{PolicyId, TenantId};
use crate::error::ApiError;
use crate::services::PageRequest;
use crate::services::effective::{self, Freshness};
use crate::services::field_audit::{self, NamedRecord};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

/// Which question a page answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    Overrides,
    Inherited,
}

impl Question {
    fn path(self) -> &'static str {
        match self {
            Question::Overrides => "/audit/overrides",
            Question::Inherited => "/audit/inherited",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Question::Overrides => "Who overrides",
            Question::Inherited => "Who inherits",
        }
    }

    /// The `state` filter's options: `(value, label)`.
    fn states(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Question::Overrides => &[("allowed", "allowed overrides"), ("violation", "violations")],
            Question::Inherited => &[("inherited", "applied"), ("not_reported", "not reported yet")],
        }
    }
}

/// The filters, all in the URL so a view can be shared.
#[derive(Deserialize, Default, Clone)]
pub struct FieldQuery {
    #[serde(default)]
    field: String,
    #[serde(default)]
    state: String,
    /// Only devices served the field from this policy (who inherits).
    #[serde(default)]
    policy: String,
    #[serde(default)]
    cursor: String,
}

impl FieldQuery {
    fn url(&self, question: Question, cursor: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                [
                    ("field", self.field.as_str()),
                    ("state", &self.state),
                    ("policy", &self.policy),
                    ("cursor", cursor),
                ]
                .into_iter()
                .filter(|(_, v)| !v.is_empty()),
            )
            .finish();
        format!("{}?{query}", question.path())
    }
}

/// The page of a question about `field`, without filters.
fn field_url(question: Question, field: &str) -> String {
    FieldQuery {
        field: field.to_owned(),
        ..FieldQuery::default()
    }
    .url(question, "")
}

/// A catalogue field offered by the picker.
pub struct FieldChoice {
    pub path: String,
    pub label: String,
}

/// Every catalogue field, for the picker's suggestions.
pub fn catalogue_fields() -> Vec<FieldChoice> {
    Catalog::get()
        .fields()
        .iter()
        .map(|f| FieldChoice {
            path: f.path.clone(),
            label: f.display_name.clone(),
        })
        .collect()
}

/// A catalogue field matching the searched text, linking to the question about it.
struct Match {
    path: String,
    label: String,
    href: String,
}

struct Row {
    device_id: Uuid,
    hostname: String,
    policy: String,
    value: String,
    state: &'static str,
    since: String,
    violation: bool,
}

struct StateChoice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "field_audit.html")]
struct FieldPage {
    layout: Layout,
    title: &'static str,
    action: &'static str,
    /// The other question about the same field.
    other_url: String,
    other_title: &'static str,
    query: FieldQuery,
    /// The field asked about, when the text names one.
    label: Option<String>,
    /// Catalogue fields matching the text, when it names none.
    matches: Vec<Match>,
    /// The picker's text and suggestions.
    picked_field: String,
    fields: Vec<FieldChoice>,
    states: Vec<StateChoice>,
    /// Policies to filter by (who inherits only).
    policies: Vec<TreeRow>,
    rows: Vec<Row>,
    next: Option<String>,
}

/// The policy a field was served from, as "Default · v3".
fn served_from(tree: &PolicyTree, record: &FieldRecord) -> String {
    match (
        record.served.source,
        record.served.policy_id,
        record.served.policy_version,
    ) {
        (ServedSource::Policy, Some(policy), Some(version)) => {
            let name = tree
                .get(PolicyId(policy))
                .map_or("(deleted policy)", |n| n.content.name.as_str());
            format!("{name} · v{version}")
        }
        (ServedSource::Device, _, _) => "this device".into(),
        _ => "—".into(),
    }
}

/// The inherited value, while the policy still holds the one the device was served.
fn inherited_value(tree: &PolicyTree, record: &FieldRecord) -> String {
    let value = record
        .served
        .policy_id
        .and_then(|p| tree.get(PolicyId(p)))
        .and_then(|node| node.content.values.get(&record.path))
        .filter(|v| record.served.fingerprint.as_deref() == Some(value_fingerprint(v).as_str()));
    match value {
        Some(v) => shown_value(Some(&v.masked())),
        None => "(an earlier value)".into(),
    }
}

fn row(question: Question, tree: &PolicyTree, named: NamedRecord) -> Row {
    let record = named.record;
    let reported = record.reported.as_ref();
    let (value, state, since) = match question {
        Question::Overrides => {
            let value = local_value(&record.path, reported);
            let state = if record.violation {
                "Violation"
            } else {
                "Overridden"
            };
            (value, state, reported.map_or(record.served_since, |r| r.since))
        }
        Question::Inherited => {
            let state = if reported.is_some() {
                "Inherited"
            } else {
                "Not reported yet"
            };
            let since = reported.map_or(record.served_since, |r| r.since);
            (inherited_value(tree, &record), state, since)
        }
    };
    Row {
        device_id: record.device_id.0,
        hostname: named.hostname,
        policy: served_from(tree, &record),
        value,
        state,
        since: when(Some(since)),
        violation: record.violation,
    }
}

/// The page of answers, and the URL of the next one.
async fn answers(
    state: &AppState,
    tenant: TenantId,
    question: Question,
    path: &str,
    query: &FieldQuery,
) -> Result<(Vec<NamedRecord>, Option<String>), ApiError> {
    let limit = PageRequest::DEFAULT_LIMIT;
    // Unknown filter values are ignored rather than refused: a shared link keeps working.
    match question {
        Question::Overrides => {
            let kind = match query.state.as_str() {
                "allowed" => Some(OverrideKind::Allowed),
                "violation" => Some(OverrideKind::Violation),
                _ => None,
            };
            let cursor = Some(query.cursor.as_str()).filter(|c| !c.is_empty());
            let page = field_audit::overrides(state, tenant, Some(path), kind, cursor, limit).await?;
            Ok((page.items, page.next_cursor))
        }
        Question::Inherited => {
            let wanted = match query.state.as_str() {
                "inherited" => Some(InheritedState::Inherited),
                "not_reported" => Some(InheritedState::NotReported),
                _ => None,
            };
            let policy = Uuid::parse_str(&query.policy).ok().map(PolicyId);
            let page = PageRequest {
                cursor: Uuid::parse_str(&query.cursor).ok(),
                limit,
            };
            let page = field_audit::inherited(state, tenant, path, policy, None, wanted, page).await?;
            Ok((page.items, page.next_cursor.map(|c| c.to_string())))
        }
    }
}

async fn field_page(
    state: &AppState,
    ui: &page::Ui,
    question: Question,
    query: FieldQuery,
) -> Result<HttpResponse, ApiError> {
    let tenant = ui.user.tenant_id;
    let catalog = Catalog::get();
    let text = query.field.trim().to_owned();
    let known = catalog.field(&text).map(|f| f.display_name.clone());
    let (rows, next, matches) = match &known {
        Some(_) => {
            let tree = effective::current(state, tenant, Freshness::Database).await?.view;
            let (items, next) = answers(state, tenant, question, &text, &query).await?;
            let rows = items.into_iter().map(|n| row(question, &tree, n)).collect();
            (rows, next.map(|c| query.url(question, &c)), Vec::new())
        }
        None => {
            let needle = text.to_lowercase();
            let matches = catalogue_fields()
                .into_iter()
                .filter(|f| {
                    f.path.to_lowercase().contains(&needle) || f.label.to_lowercase().contains(&needle)
                })
                .map(|f| Match {
                    href: field_url(question, &f.path),
                    path: f.path,
                    label: f.label,
                })
                .collect();
            (Vec::new(), None, matches)
        }
    };
    let policies = match question {
        Question::Inherited => tree(state, ui, PolicyId(Uuid::nil())).await?,
        Question::Overrides => Vec::new(),
    };
    let other = match question {
        Question::Overrides => Question::Inherited,
        Question::Inherited => Question::Overrides,
    };
    let states = question
        .states()
        .iter()
        .map(|&(value, label)| StateChoice {
            value,
            label,
            selected: value == query.state,
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &FieldPage {
            layout: ui.layout.clone(),
            title: question.title(),
            action: question.path(),
            other_url: field_url(other, &text),
            other_title: other.title(),
            label: known,
            matches,
            picked_field: query.field.clone(),
            fields: catalogue_fields(),
            states,
            policies,
            rows,
            next,
            query,
        },
    ))
}

async fn show(req: HttpRequest, state: &AppState, question: Question, query: FieldQuery) -> HttpResponse {
    let ui = match page::signed_in(&req, state, question.title(), "dashboard").await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    match field_page(state, &ui, question, query).await {
        Ok(response) => response,
        Err(error) => page::error_page(&ui.layout, &error),
    }
}

/// `/audit/overrides?field=…`: the devices overriding a field locally, violations flagged.
pub async fn overrides(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<FieldQuery>,
) -> HttpResponse {
    show(req, &state, Question::Overrides, query.into_inner()).await
}

/// `/audit/inherited?field=…`: the devices served a field from a policy and running it.
pub async fn inherited(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<FieldQuery>,
) -> HttpResponse {
    show(req, &state, Question::Inherited, query.into_inner()).await
}
