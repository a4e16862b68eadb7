//! Browser sessions of the web UI, backed by the same sign-in as the JSON API.
//!
//! Signing in runs `services::auth::login`; the access and refresh tokens it returns stay on the
//! server, in this replica's memory, under a random session id that is the only thing the
//! browser holds (an `HttpOnly`, `SameSite=Strict` cookie, `Secure` with TLS). Every request
//! checks the access token exactly like the API does — signature, expiry and the operator's
//! session epoch — and, when it has expired or its epoch moved on, renews it with the refresh
//! token, like an API client would. So a password or role change, an operator's deletion or a
//! refresh-token revocation ends the UI session too, and signing out revokes the sign-in's
//! refresh-token family. Keeping tokens server-side means the browser never sees a bearer token
//! and a stolen cookie cannot be replayed after sign-out.
//!
//! Sessions live in memory: a restart signs everyone out, and behind a load balancer with
//! several replicas the UI needs sticky sessions (the JSON API does not).

use crate::auth::token;
use crate::domain::{OperatorId, Role, TenantId};
use crate::services::auth::{self, TokenPair};
use crate::state::AppState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "gmp_session";
/// Sessions kept at most per replica; past that, the least recently used one is dropped.
const CAPACITY: usize = 10_000;
/// A session unused this long ends, whatever the refresh token's lifetime.
const IDLE: Duration = Duration::from_secs(12 * 3600);

/// The signed-in operator as the UI sees them, checked on this request.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub operator_id: OperatorId,
    pub tenant_id: TenantId,
    pub role: Role,
    pub platform_admin: bool,
    pub email: String,
    /// The synchronizer token every form of this session must send back.
    pub csrf: String,
}

struct Tokens {
    access: String,
    refresh: String,
    email: String,
    csrf: String,
    last_used: Instant,
}

/// Sessions of this replica by the SHA-256 of their id. Each has its own lock, so two requests
/// of one session renew the tokens once (a second use of a refresh token would revoke them all).
#[derive(Default)]
pub struct UiSessions {
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Tokens>>>>,
}

fn key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

impl UiSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Tokens>>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a fresh sign-in; returns the session id for the cookie.
    pub fn start(&self, pair: TokenPair) -> String {
        let id = token::generate("");
        let tokens = Tokens {
            access: pair.access_token,
            refresh: pair.refresh_token,
            email: pair.operator.email.clone(),
            csrf: token::generate(""),
            last_used: Instant::now(),
        };
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            let oldest = entries
                .iter()
                .filter_map(|(k, v)| v.try_lock().ok().map(|t| (k.clone(), t.last_used)))
                .min_by_key(|(_, used)| *used)
                .map(|(k, _)| k);
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(key(&id), Arc::new(tokio::sync::Mutex::new(tokens)));
        id
    }

    /// The operator of session `id`, renewing the access token when needed; `None` when the
    /// session does not exist or has ended (then it is forgotten).
    pub async fn check(&self, state: &AppState, id: &str) -> Option<SignedIn> {
        let entry = self.lock().get(&key(id)).cloned()?;
        let mut tokens = entry.lock().await;
        if tokens.last_used.elapsed() > IDLE {
            drop(tokens);
            self.end(state, id).await;
            return None;
        }
        let signed_in = match current(state, &tokens).await {
            Some(signed_in) => Some(signed_in),
            None => match auth::refresh(state, &tokens.refresh).await {
                Ok(pair) => {
                    tokens.access = pair.access_token;
                    tokens.refresh = pair.refresh_token;
                    current(state, &tokens).await
                }
                Err(error) => {
                    tracing::debug!(code = %error.code, "UI session could not be renewed");
                    None
                }
            },
        };
        match signed_in {
            Some(signed_in) => {
                tokens.last_used = Instant::now();
                Some(signed_in)
            }
            None => {
                drop(tokens);
                self.lock().remove(&key(id));
                None
            }
        }
    }

    /// Signs out: revokes the sign-in's refresh tokens and forgets the session.
    pub async fn end(&self, state: &AppState, id: &str) {
        let Some(entry) = self.lock().remove(&key(id)) else {
            return;
        };
        let refresh = entry.lock().await.refresh.clone();
        if let Err(error) = auth::logout(state, &refresh).await {
            tracing::warn!(code = %error.code, "sign-out could not revoke the refresh token");
        }
    }
}

/// The operator of a still valid access token: signed, unexpired, of the current epoch.
async fn current(state: &AppState, tokens: &Tokens) -> Option<SignedIn> {
    let claims = state.jwt.verify(&tokens.access).ok()?;
    let epoch = state
        .sessions
        .current(&state.db, claims.tenant_id(), claims.operator_id())
        .await
        .ok()?;
    if epoch != Some(claims.sep) {
        return None;
    }
    Some(SignedIn {
        operator_id: claims.operator_id(),
        tenant_id: claims.tenant_id(),
        role: claims.role,
        platform_admin: claims.padm,
        email: tokens.email.clone(),
        csrf: tokens.csrf.clone(),
    })
}

/// A cookie value from the request's `Cookie` headers.
pub fn cookie<'a>(req: &'a actix_web::HttpRequest, name: &str) -> Option<&'a str> {
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
