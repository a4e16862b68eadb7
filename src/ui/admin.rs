//! Admin pages, for tenant admins: enrollment tokens (created and shown once, revoked), the
//! tenant's operators and their roles, and how often the tenant's devices pull; for platform
//! admins also the tenants.

use super::page::{self, Layout, Problem, Ui, field, redirect, render};
use super::policies::{TreeRow, tree};
use crate::domain::{EnrollmentTokenId, Expected, OperatorId, PolicyId, Role};
use crate::error::ApiError;
use crate::services::enrollment::{self, NewToken};
use crate::services::operators::{self, NewOperatorInput, OperatorUpdate};
use crate::services::{PageRequest, tenants};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use uuid::Uuid;

type Form = web::Form<Vec<(String, String)>>;

struct TokenRow {
    id: EnrollmentTokenId,
    label: String,
    policy: String,
    uses: String,
    expires: String,
    state: &'static str,
}

struct TenantRow {
    name: String,
    created: String,
}

struct OperatorRow {
    id: OperatorId,
    email: String,
    name: String,
    role: Role,
    version: i32,
    is_me: bool,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    layout: Layout,
    tokens: Vec<TokenRow>,
    operators: Vec<OperatorRow>,
    policies: Vec<TreeRow>,
    pull_interval_minutes: u32,
    tenant_version: i32,
    /// Every tenant, for platform admins only.
    tenants: Option<Vec<TenantRow>>,
    /// A token just created: shown this once.
    new_token: Option<String>,
    saved: Option<&'static str>,
    problem: Option<Problem>,
}

const ROLES: [Role; 3] = [Role::Viewer, Role::Editor, Role::Admin];

async fn admin_page(
    state: &AppState,
    ui: &Ui,
    new_token: Option<String>,
    saved: Option<&'static str>,
    problem: Option<Problem>,
) -> Result<HttpResponse, ApiError> {
    let tenant = ui.user.tenant_id;
    let policies = tree(state, ui, PolicyId(Uuid::nil())).await?;
    let name_of = |id: Option<PolicyId>| match id {
        Some(id) => policies
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.name.clone())
            .unwrap_or_default(),
        None => policies.first().map(|p| p.name.clone()).unwrap_or_default(),
    };
    let page_of = PageRequest {
        cursor: None,
        limit: PageRequest::MAX_LIMIT,
    };
    let now = state.clock.now();
    let tokens = enrollment::list(state, tenant, page_of)
        .await?
        .items
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            label: t.label.clone(),
            policy: name_of(t.policy_id),
            uses: format!("{} of {}", t.uses, t.max_uses),
            expires: t.expires_at.format("%-d %b %Y %H:%M UTC").to_string(),
            state: t.unusable_because(now).unwrap_or("usable"),
        })
        .collect();
    let operators = operators::list(state, tenant, page_of)
        .await?
        .items
        .into_iter()
        .map(|o| OperatorRow {
            is_me: o.id == ui.user.operator_id,
            id: o.id,
            email: o.email,
            name: o.display_name,
            role: o.role,
            version: o.version,
        })
        .collect();
    let tenant = tenants::get(state, tenant).await?;
    let all_tenants = if ui.user.platform_admin {
        let page = tenants::list(state, page_of).await?;
        Some(
            page.items
                .into_iter()
                .map(|t| TenantRow {
                    name: t.name,
                    created: t.created_at.format("%-d %b %Y").to_string(),
                })
                .collect(),
        )
    } else {
        None
    };
    let status = problem
        .as_ref()
        .and_then(|p| StatusCode::from_u16(p.status).ok())
        .unwrap_or(StatusCode::OK);
    Ok(render(
        status,
        &AdminPage {
            layout: ui.layout.clone(),
            tokens,
            operators,
            policies,
            pull_interval_minutes: tenant.pull_interval_seconds / 60,
            tenant_version: tenant.version,
            tenants: all_tenants,
            new_token,
            saved,
            problem,
        },
    ))
}

async fn admin(req: &HttpRequest, state: &AppState) -> Result<Ui, HttpResponse> {
    let ui = page::signed_in(req, state, "Admin", "admin").await?;
    ui.require(Role::Admin)?;
    Ok(ui)
}

fn answer(ui: &Ui, outcome: Result<HttpResponse, ApiError>) -> HttpResponse {
    outcome.unwrap_or_else(|error| page::error_page(&ui.layout, &error))
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let ui = match admin(&req, &state).await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    let saved = field(&query, "saved").map(|_| "Saved.");
    answer(&ui, admin_page(&state, &ui, None, saved, None).await)
}

/// The admin page again after a refused change, saying why.
async fn refused(state: &AppState, ui: &Ui, error: ApiError) -> HttpResponse {
    answer(
        ui,
        admin_page(state, ui, None, None, Some(Problem::from(&error))).await,
    )
}

async fn changing(
    req: &HttpRequest,
    state: &AppState,
    form: &[(String, String)],
) -> Result<Ui, HttpResponse> {
    let ui = admin(req, state).await?;
    page::check_csrf(&ui, req, form)?;
    Ok(ui)
}

fn number<T: std::str::FromStr>(form: &[(String, String)], name: &str) -> Option<T> {
    field(form, name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .and_then(|v| v.parse().ok())
}

/// Creates an enrollment token and shows it this once (the page is never cached).
pub async fn create_token(req: HttpRequest, state: web::Data<AppState>, form: Form) -> HttpResponse {
    let ui = match changing(&req, &state, &form).await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    let input = NewToken {
        label: field(&form, "label")
            .map(str::to_owned)
            .filter(|l| !l.trim().is_empty()),
        expires_in_seconds: number::<i64>(&form, "expires_in_hours").map(|h| h.saturating_mul(3600)),
        max_uses: number(&form, "max_uses"),
        policy_id: field(&form, "policy_id")
            .and_then(|p| Uuid::parse_str(p).ok())
            .map(PolicyId),
    };
    match enrollment::create(&state, &ui.actor(), input).await {
        Ok((_, secret)) => answer(&ui, admin_page(&state, &ui, Some(secret), None, None).await),
        Err(error) => refused(&state, &ui, error).await,
    }
}

pub async fn revoke_token(req: HttpRequest, state: web::Data<AppState>, form: Form) -> HttpResponse {
    let ui = match changing(&req, &state, &form).await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    let Some(id) = field(&form, "id").and_then(|i| Uuid::parse_str(i).ok()) else {
        return refused(&state, &ui, ApiError::not_found("enrollment token")).await;
    };
    match enrollment::revoke(&state, &ui.actor(), EnrollmentTokenId(id)).await {
        Ok(()) => redirect("/admin?saved=1"),
        Err(error) => refused(&state, &ui, error).await,
    }
}

pub async fn create_operator(req: HttpRequest, state: web::Data<AppState>, form: Form) -> HttpResponse {
    let ui = match changing(&req, &state, &form).await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    let input = NewOperatorInput {
        email: field(&form, "email").unwrap_or_default().to_owned(),
        display_name: field(&form, "display_name")
            .map(str::to_owned)
            .filter(|n| !n.trim().is_empty()),
        role: field(&form, "role")
            .and_then(|r| r.parse().ok())
            .unwrap_or(Role::Viewer),
        password: field(&form, "password").unwrap_or_default().to_owned(),
    };
    match operators::create(&state, &ui.actor(), input, false).await {
        Ok(_) => redirect("/admin?saved=1"),
        Err(error) => refused(&state, &ui, error).await,
    }
}

pub async fn change_role(req: HttpRequest, state: web::Data<AppState>, form: Form) -> HttpResponse {
    let ui = match changing(&req, &state, &form).await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    let id = field(&form, "id")
        .and_then(|i| Uuid::parse_str(i).ok())
        .map(OperatorId);
    let role = field(&form, "role").and_then(|r| r.parse::<Role>().ok());
    let (Some(id), Some(role)) = (id, role) else {
        return refused(&state, &ui, ApiError::not_found("operator")).await;
    };
    let expected = number(&form, "version").map_or(Expected::Version(-1), Expected::Version);
    let update = OperatorUpdate {
        role: Some(role),
        ..OperatorUpdate::default()
    };
    match operators::update(&state, &ui.actor(), id, expected, update).await {
        Ok(_) => redirect("/admin?saved=1"),
        Err(error) => refused(&state, &ui, error).await,
    }
}

pub async fn pull_interval(req: HttpRequest, state: web::Data<AppState>, form: Form) -> HttpResponse {
    let ui = match changing(&req, &state, &form).await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    let expected = number(&form, "version").map_or(Expected::Version(-1), Expected::Version);
    // A number that does not parse is sent on as 0, so the service names the field.
    let seconds = number::<u32>(&form, "minutes").unwrap_or(0).saturating_mul(60);
    match tenants::set_pull_interval(&state, &ui.actor(), expected, seconds).await {
        Ok(_) => redirect("/admin?saved=1"),
        Err(error) => refused(&state, &ui, error).await,
    }
}

/// A new tenant (an MSP) with its first admin; platform admins only.
pub async fn create_tenant(req: HttpRequest, state: web::Data<AppState>, form: Form) -> HttpResponse {
    let ui = match changing(&req, &state, &form).await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    if !ui.user.platform_admin {
        return page::error_page(
            &ui.layout,
            &ApiError::forbidden("only platform admins may do this"),
        );
    }
    let admin = NewOperatorInput {
        email: field(&form, "admin_email").unwrap_or_default().to_owned(),
        display_name: None,
        role: Role::Admin,
        password: field(&form, "admin_password").unwrap_or_default().to_owned(),
    };
    let name = field(&form, "name").unwrap_or_default();
    match tenants::create(&state, &ui.actor(), name, admin).await {
        Ok(_) => redirect("/admin?saved=1"),
        Err(error) => refused(&state, &ui, error).await,
    }
}
