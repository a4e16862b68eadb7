//! The web UI's session cookie. The sessions themselves live in the database
//! (`services::ui_sessions`), so any replica serves any browser: the cookie holds only a random
//! session id (`HttpOnly`, `SameSite=Strict`, `Secure` with TLS), stored server-side as its
//! SHA-256.

pub use crate::services::ui_sessions::SignedIn;

use crate::error::ApiError;
use crate::services::ui_sessions;
use crate::state::AppState;
use actix_web::HttpRequest;

pub const SESSION_COOKIE: &str = "gmp_session";

/// The operator of the request's session cookie; `None` without a live session.
pub async fn current(req: &HttpRequest, state: &AppState) -> Result<Option<SignedIn>, ApiError> {
    match cookie(req, SESSION_COOKIE) {
        Some(id) => ui_sessions::check(state, id).await,
        None => Ok(None),
    }
}

/// A cookie value from the request's `Cookie` headers.
pub fn cookie<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for a host-only, whole-site cookie scripts cannot read.
pub fn set_cookie(name: &str, value: &str, tls: bool, max_age: Option<u64>) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(seconds) = max_age {
        cookie.push_str(&format!("; Max-Age={seconds}"));
    }
    if tls {
        cookie.push_str("; Secure");
    }
    cookie
}

/// Whether two tokens are equal, in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_strict_and_secure_with_tls() {
        let plain = set_cookie("a", "b", false, None);
        assert_eq!(plain, "a=b; Path=/; HttpOnly; SameSite=Strict");
        let tls = set_cookie("a", "", true, Some(0));
        assert!(tls.ends_with("; Max-Age=0; Secure"), "{tls}");
    }

    #[test]
    fn token_comparison() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
        assert!(!same_token("", "a"));
    }
}
