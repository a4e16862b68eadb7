//! The device extractor: a handler taking `DeviceAuth` runs only for the bearer of an active
//! device credential, and gets that device (and so its tenant) from the credential alone.

use crate::auth::extract::bearer_token;
use crate::error::ApiError;
use crate::services::device_directory::KnownDevice;
use crate::services::registration;
use crate::state::AppState;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::future::LocalBoxFuture;
use std::sync::Arc;

pub struct DeviceAuth {
    pub device: Arc<KnownDevice>,
}

impl FromRequest for DeviceAuth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let credential = bearer_token(req).map(str::to_owned);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("AppState is not registered"))?;
            let device = registration::authenticate(&state, &credential?).await?;
            let span = tracing::Span::current();
            span.record("tenant_id", tracing::field::display(device.device.tenant_id));
            span.record("device_id", tracing::field::display(device.device.id));
            Ok(Self { device })
        })
    }
}
