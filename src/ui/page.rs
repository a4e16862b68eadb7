//! What every UI page shares: the signed-in check, the CSRF check, the layout, the headers and
//! how a service error is shown.

use super::session::{self, SignedIn, same_token};
use crate::domain::audit::Actor;
use crate::domain::{Expected, Role};
use crate::error::ApiError;
use crate::http::request_context::RequestId;
use crate::state::AppState;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use askama::Template;

/// Scripts only from this server (no inline script, no `eval`), styles only from the CSS file
/// (htmx is told not to inject its indicator styles), nothing framed, forms only posted here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The header an htmx request carries the CSRF token in (set once on `<body>`).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field a plain form carries it in.
pub const CSRF_FIELD: &str = "csrf";

/// The frame around every signed-in page: navigation, tenant, operator, sign-out.
#[derive(Clone)]
pub struct Layout {
    pub title: String,
    /// Which navigation entry is current.
    pub section: &'static str,
    pub tenant_name: String,
    pub email: String,
    pub role: Role,
    pub csrf: String,
}

impl Layout {
    pub fn is_admin(&self) -> bool {
        self.role.includes(Role::Admin)
    }

    pub fn can_edit(&self) -> bool {
        self.role.includes(Role::Editor)
    }
}

/// A signed-in request: who, and the layout of their pages.
pub struct Ui {
    pub user: SignedIn,
    pub layout: Layout,
    request_id: Option<String>,
}

impl Ui {
    /// The operator as the actor of a change, for services and the change log.
    pub fn actor(&self) -> Actor {
        Actor {
            tenant_id: self.user.tenant_id,
            operator_id: Some(self.user.operator_id),
            device_id: None,
            request_id: self.request_id.clone(),
            platform_admin: self.user.platform_admin,
        }
    }

    /// `Err` with a 403 page unless the operator has `role`.
    pub fn require(&self, role: Role) -> Result<(), HttpResponse> {
        if self.user.role.includes(role) {
            return Ok(());
        }
        Err(error_page(
            &self.layout,
            &ApiError::forbidden(format!("this needs the {role} role; you are {}", self.user.role)),
        ))
    }
}

/// The signed-in operator, or the response sending them to `/login`.
pub async fn signed_in(
    req: &HttpRequest,
    state: &AppState,
    title: &str,
    section: &'static str,
) -> Result<Ui, HttpResponse> {
    let user = match session::current(req, state).await {
        Ok(Some(user)) => user,
        Ok(None) => return Err(to_login(req)),
        Err(error) => {
            tracing::error!(%error, "the UI session could not be checked");
            let status = StatusCode::from_u16(error.code.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Err(html(
                status,
                "<!doctype html><title>Unavailable</title><p>The server could not check your sign-in. \
                 <a href=\"/\">Try again</a> in a moment.</p>"
                    .to_owned(),
            ));
        }
    };
    let layout = Layout {
        title: title.to_owned(),
        section,
        tenant_name: user.tenant_name.clone(),
        email: user.email.clone(),
        role: user.role,
        csrf: user.csrf.clone(),
    };
    Ok(Ui {
        user,
        layout,
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.to_string()),
    })
}

/// Sends the browser to the sign-in page; an htmx request is told to load it as a whole page.
fn to_login(req: &HttpRequest) -> HttpResponse {
    if req.headers().contains_key("hx-request") {
        HttpResponse::Unauthorized()
            .insert_header(("HX-Redirect", "/login"))
            .finish()
    } else {
        redirect("/login")
    }
}

/// Refuses a state-changing request without this session's CSRF token, from the form field or
/// the htmx header.
pub fn check_csrf(ui: &Ui, req: &HttpRequest, form: &[(String, String)]) -> Result<(), HttpResponse> {
    let sent = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| field(form, CSRF_FIELD));
    match sent {
        Some(token) if same_token(token, &ui.user.csrf) => Ok(()),
        _ => {
            tracing::info!("UI request without a valid CSRF token refused");
            Err(html(
                StatusCode::FORBIDDEN,
                "<!doctype html><title>Refused</title><p>This form expired or did not come from this site. \
                 <a href=\"/\">Reload the page</a> and try again.</p>"
                    .to_owned(),
            ))
        }
    }
}

/// The version the form was read at: a save against a newer one is refused with `412`.
pub fn expected(form: &[(String, String)]) -> Expected {
    field(form, "version")
        .and_then(|v| v.parse().ok())
        .map_or(Expected::Version(-1), Expected::Version)
}

/// The first value of a form field.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// An HTML answer with the UI's headers: the CSP, no caching of tenant data, no framing.
pub fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(body)
}

pub fn render(status: StatusCode, template: &impl Template) -> HttpResponse {
    match template.render() {
        Ok(body) => html(status, body),
        Err(error) => {
            tracing::error!(%error, "a UI template failed to render");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><p>The page could not be shown.</p>".into(),
            )
        }
    }
}

/// A service error as the page shows it: the API's problem details.
pub struct Problem {
    pub status: u16,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// `(field, message)` pairs.
    pub errors: Vec<(String, String)>,
}

impl From<&ApiError> for Problem {
    fn from(error: &ApiError) -> Self {
        Self {
            status: error.code.status(),
            code: error.code.as_str(),
            title: error.code.title(),
            detail: error.detail.clone(),
            errors: error
                .errors
                .iter()
                .map(|e| (e.field.clone(), e.message.clone()))
                .collect(),
        }
    }
}

impl Problem {
    /// The message of one field, for showing it under its control.
    pub fn for_field(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f == field || f.strip_prefix("set.") == Some(field))
            .map(|(_, m)| m.as_str())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: &'a Layout,
    problem: Problem,
}

/// A whole page saying what went wrong (not found, forbidden, …).
pub fn error_page(layout: &Layout, error: &ApiError) -> HttpResponse {
    let problem = Problem::from(error);
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    render(status, &ErrorPage { layout, problem })
}
