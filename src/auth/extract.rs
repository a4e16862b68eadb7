//! Typed extractors: a handler that takes `Operator<Editor>` only runs for a valid access token
//! of an editor or admin, and receives the caller's `TenantId` from the token, never from the
//! request.

use crate::domain::audit::Actor;
use crate::domain::{OperatorId, Role, TenantId};
use crate::error::{ApiError, Code};
use crate::http::request_context::RequestId;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};
use futures_util::future::LocalBoxFuture;
use std::marker::PhantomData;

/// What a route requires of the operator calling it.
pub trait Permission {
    /// The least role that may call the route.
    const ROLE: Role;
    /// Whether the route is for platform admins only.
    const PLATFORM_ADMIN: bool = false;
}

/// Any signed-in operator (viewer or above).
pub struct AnyRole;
/// Editors and admins.
pub struct Editor;
/// Tenant admins.
pub struct Admin;
/// Platform admins, who provision tenants.
pub struct PlatformAdmin;

impl Permission for AnyRole {
    const ROLE: Role = Role::Viewer;
}
impl Permission for Editor {
    const ROLE: Role = Role::Editor;
}
impl Permission for Admin {
    const ROLE: Role = Role::Admin;
}
impl Permission for PlatformAdmin {
    const ROLE: Role = Role::Admin;
    const PLATFORM_ADMIN: bool = true;
}

/// An authenticated operator allowed to do `P`.
pub struct Operator<P: Permission = AnyRole> {
    pub id: OperatorId,
    pub tenant_id: TenantId,
    pub role: Role,
    pub platform_admin: bool,
    request_id: Option<String>,
    _permission: PhantomData<P>,
}

fn invalid_token() -> ApiError {
    ApiError::new(
        Code::InvalidToken,
        "the access token is invalid or expired; sign in or refresh",
    )
}

impl<P: Permission> Operator<P> {
    async fn authenticate(req: HttpRequest) -> Result<Self, ApiError> {
        let state = req
            .app_data::<web::Data<AppState>>()
            .ok_or_else(|| ApiError::internal("AppState is not registered"))?;
        let token = bearer_token(&req)?;
        let claims = state.jwt.verify(token).map_err(|error| {
            tracing::debug!(%error, "rejected access token");
            invalid_token()
        })?;
        // A signed token is not enough: its session must not have ended since it was issued
        // (password or role change, sign-out, deletion).
        let epoch = state
            .sessions
            .current(&state.db, claims.tenant_id(), claims.operator_id())
            .await?;
        if epoch != Some(claims.sep) {
            tracing::debug!(operator_id = %claims.sub, "access token of an ended session");
            return Err(invalid_token());
        }
        let span = tracing::Span::current();
        span.record("tenant_id", tracing::field::display(claims.tid));
        span.record("operator_id", tracing::field::display(claims.sub));

        if P::PLATFORM_ADMIN && !claims.padm {
            return Err(ApiError::forbidden("only platform admins may do this"));
        }
        if !claims.role.includes(P::ROLE) {
            return Err(ApiError::forbidden(format!(
                "this needs the {} role; you are {}",
                P::ROLE,
                claims.role
            )));
        }
        Ok(Self {
            id: claims.operator_id(),
            tenant_id: claims.tenant_id(),
            role: claims.role,
            platform_admin: claims.padm,
            request_id: req.extensions().get::<RequestId>().map(|r| r.0.to_string()),
            _permission: PhantomData,
        })
    }

    /// The caller as the actor of a change, for services and the change log.
    pub fn actor(&self) -> Actor {
        Actor {
            tenant_id: self.tenant_id,
            operator_id: Some(self.id),
            device_id: None,
            request_id: self.request_id.clone(),
            platform_admin: self.platform_admin,
        }
    }
}

impl<P: Permission + 'static> FromRequest for Operator<P> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(Self::authenticate(req.clone()))
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let missing = || ApiError::new(Code::Unauthenticated, "send `Authorization: Bearer <token>`");
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(token.trim())
        }
        _ => Err(missing()),
    }
}
