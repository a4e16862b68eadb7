//! Sign-in and sign-out pages.

use super::page::{self, CSRF_FIELD, field, redirect, render};
use super::session::{self, SESSION_COOKIE, cookie, same_token, set_cookie};
use crate::auth::token;
use crate::http::client_address::client_address;
use crate::services::{auth, ui_sessions};
use crate::state::AppState;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

/// The sign-in form's own CSRF token: before a session exists, a random value in a cookie that
/// the form must repeat (a cross-site page can neither read the cookie nor send it).
const LOGIN_COOKIE: &str = "gmp_login";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    email: &'a str,
    error: Option<String>,
}

fn tls(state: &AppState) -> bool {
    state.config.tls_cert_file.is_some()
}

/// `/`: the dashboard, or the sign-in page when signed out.
pub async fn root(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if has_session(&req, &state).await {
        redirect("/dashboard")
    } else {
        redirect("/login")
    }
}

/// Whether the request carries a live session (a failed check counts as none: sign in again).
async fn has_session(req: &HttpRequest, state: &AppState) -> bool {
    matches!(session::current(req, state).await, Ok(Some(_)))
}

fn login_page(state: &AppState, status: StatusCode, email: &str, error: Option<String>) -> HttpResponse {
    let csrf = token::generate("");
    let mut response = render(
        status,
        &LoginPage {
            csrf: &csrf,
            email,
            error,
        },
    );
    if let Ok(value) = header::HeaderValue::from_str(&set_cookie(LOGIN_COOKIE, &csrf, tls(state), Some(3600)))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn login_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if has_session(&req, &state).await {
        return redirect("/dashboard");
    }
    login_page(&state, StatusCode::OK, "", None)
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let form = form.into_inner();
    let expected = cookie(&req, LOGIN_COOKIE).unwrap_or_default();
    let sent = field(&form, CSRF_FIELD).unwrap_or_default();
    if expected.is_empty() || !same_token(expected, sent) {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            "",
            Some("The sign-in form expired; please sign in again.".into()),
        );
    }
    let email = field(&form, "email").unwrap_or_default();
    let password = field(&form, "password").unwrap_or_default();
    let address = client_address(&req, &state.config.trusted_proxies);
    let started = match auth::authenticate(&state, email, password, address).await {
        Ok(operator) => ui_sessions::start(&state, &operator).await,
        Err(error) => Err(error),
    };
    match started {
        Ok(id) => {
            let mut response = redirect("/dashboard");
            let cookies = [
                set_cookie(SESSION_COOKIE, &id, tls(&state), None),
                set_cookie(LOGIN_COOKIE, "", tls(&state), Some(0)),
            ];
            for value in cookies {
                if let Ok(value) = header::HeaderValue::from_str(&value) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Err(error) => {
            let status = StatusCode::from_u16(error.code.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            login_page(&state, status, email, Some(error.detail))
        }
    }
}

/// Ends the session (its row is deleted, for every replica) and clears the cookie.
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let ui = match page::signed_in(&req, &state, "Sign out", "").await {
        Ok(ui) => ui,
        Err(response) => return response,
    };
    if let Err(refused) = page::check_csrf(&ui, &req, &form) {
        return refused;
    }
    if let Some(id) = cookie(&req, SESSION_COOKIE)
        && let Err(error) = ui_sessions::end(&state, id).await
    {
        return page::error_page(&ui.layout, &error);
    }
    let mut response = redirect("/login");
    if let Ok(value) = header::HeaderValue::from_str(&set_cookie(SESSION_COOKIE, "", tls(&state), Some(0))) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
