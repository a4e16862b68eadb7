//! Import Settings and Export Settings, at the bottom of the ConnectWise Settings: a policy as a
//! file to download (its secrets encrypted under a passphrase, for admins) and a file to upload,
//! shown as a dry-run diff before it is applied.

use super::page::{self, Layout, Ui, field, redirect, render};
use crate::domain::diff::ChangeKind;
use crate::domain::{Expected, PolicyId, Role};
use crate::error::{ApiError, Code};
use crate::services::policies::{self, ImportInput};
use crate::services::references::References;
use crate::state::AppState;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde_json::Value;
use uuid::Uuid;

/// Exported documents are a few kilobytes; this leaves room without inviting abuse.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

type Form = web::Form<Vec<(String, String)>>;

struct ChangeRow {
    field: String,
    kind: &'static str,
    before: String,
    after: String,
}

#[derive(Template)]
#[template(path = "import.html")]
struct ImportPage {
    layout: Layout,
    id: PolicyId,
    name: String,
    version: i32,
    document: String,
    /// The document carries encrypted secrets: the passphrase is asked again to apply (it is
    /// never written into a page).
    has_secrets: bool,
    comment: String,
    changes: Vec<ChangeRow>,
}

fn shown(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "—".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "on" } else { "off" }.into(),
        Some(v) => v
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_owned),
    }
}

async fn changing(
    req: &HttpRequest,
    state: &AppState,
    raw: &str,
    form: &[(String, String)],
    role: Role,
) -> Result<(Ui, PolicyId), HttpResponse> {
    let ui = page::signed_in(req, state, "Import and export", "policies").await?;
    page::check_csrf(&ui, req, form)?;
    ui.require(role)?;
    let id = Uuid::parse_str(raw)
        .map(PolicyId)
        .map_err(|_| page::error_page(&ui.layout, &ApiError::not_found("policy")))?;
    Ok((ui, id))
}

fn has_secrets(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|d| d.get("secrets").is_some_and(|s| !s.is_null()))
}

/// Export Settings: the policy's own values and locks as a file; with a passphrase (admins
/// only) its secrets too, encrypted.
pub async fn export(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let passphrase = field(&form, "passphrase").filter(|p| !p.is_empty());
    let role = if passphrase.is_some() {
        Role::Admin
    } else {
        Role::Viewer
    };
    let (ui, id) = match changing(&req, &state, &path, &form, role).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match policies::export(&state, &ui.actor(), id, passphrase).await {
        Ok(document) => {
            let name: String = document
                .policy
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let filename = format!("{name}-v{}.gmp-policy.json", document.policy.version);
            HttpResponse::Ok()
                .content_type("application/json")
                .insert_header((
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{filename}\""),
                ))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(&document)
        }
        Err(error) => page::error_page(&ui.layout, &error),
    }
}

/// Import Settings: without `apply`, a dry run showing what would change; with it (and the
/// version the dry run was made against), one new version.
pub async fn import(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let (ui, id) = match changing(&req, &state, &path, &form, Role::Editor).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let text = field(&form, "document").unwrap_or_default();
    let document: Value = match serde_json::from_str(text) {
        Ok(document) => document,
        Err(error) => {
            let error = ApiError::new(
                Code::MalformedJson,
                format!("the file is not a GMP policy document: {error}"),
            );
            return page::error_page(&ui.layout, &error);
        }
    };
    let passphrase = field(&form, "passphrase")
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let comment = field(&form, "comment")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let apply = field(&form, "apply").is_some();
    let expected = apply.then(|| {
        field(&form, "version")
            .and_then(|v| v.parse().ok())
            .map_or(Expected::Version(-1), Expected::Version)
    });
    let outcome = policies::import(
        &state,
        &ui.actor(),
        id,
        expected,
        ImportInput {
            document,
            passphrase,
            comment: comment.clone(),
            references: References::Check,
        },
    )
    .await;
    match outcome {
        Ok(outcome) => match outcome.policy {
            Some(detail) => redirect(&format!("/policies/{id}?saved={}", detail.node.version)),
            None => {
                let detail = match policies::get(&state, ui.user.tenant_id, id).await {
                    Ok(detail) => detail,
                    Err(error) => return page::error_page(&ui.layout, &error),
                };
                let changes = outcome
                    .changes
                    .into_iter()
                    .map(|c| ChangeRow {
                        kind: match c.change {
                            ChangeKind::Added => "added",
                            ChangeKind::Removed => "removed",
                            ChangeKind::Changed => "changed",
                        },
                        before: if c.secret {
                            "(secret)".into()
                        } else {
                            shown(c.before.as_ref())
                        },
                        after: if c.secret {
                            "(secret)".into()
                        } else {
                            shown(c.after.as_ref())
                        },
                        field: c.field,
                    })
                    .collect();
                render(
                    StatusCode::OK,
                    &ImportPage {
                        layout: ui.layout.clone(),
                        id,
                        name: detail.node.content.name,
                        version: detail.node.version,
                        document: text.to_owned(),
                        has_secrets: has_secrets(text),
                        comment: comment.unwrap_or_default(),
                        changes,
                    },
                )
            }
        },
        Err(error) => page::error_page(&ui.layout, &error),
    }
}
