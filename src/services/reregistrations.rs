//! Re-registration of a known hardware id: a request that waits for an operator.
//!
//! Hardware ids are not secrets (every viewer sees them), so a registration naming a known one
//! proves nothing. It never revokes the live credential and never reaches the device's config:
//! it is stored with its own new credential, which works only after an editor or admin approves
//! (the reinstalled-appliance case). A decommissioned device stays decommissioned.

use super::devices::{self, DeviceView, device_entry};
use super::{audit, conflict_if_duplicate};
use crate::db;
use crate::db::repo::{device_reregistrations, devices as device_repo};
use crate::domain::audit::Actor;
use crate::domain::device::{Device, Lifecycle, Reregistration};
use crate::domain::diff::{Change, ChangeKind};
use crate::domain::{DeviceId, Expected, TenantId};
use crate::error::{ApiError, Code};
use crate::state::AppState;
use sea_orm::ConnectionTrait;
use serde_json::Value;

/// How long a device whose re-registration waits is asked to wait before it asks again.
pub const RETRY_SECONDS: u64 = 300;

/// The answer to a device presenting a credential that still waits for approval.
pub fn waiting() -> ApiError {
    ApiError::new(
        Code::RegistrationPending,
        "this device's registration waits for an operator's approval in the GMP; try again later",
    )
    .with_retry_after(RETRY_SECONDS)
}

/// Stores the request inside the registration's transaction (the enrollment token's use is
/// consumed with it).
pub(super) async fn request(
    txn: &impl ConnectionTrait,
    device: &Device,
    request: &Reregistration,
    credential_hash: &str,
    request_id: Option<String>,
) -> Result<(), ApiError> {
    if device.lifecycle == Lifecycle::Decommissioned {
        return Err(ApiError::new(
            Code::DeviceDecommissioned,
            "this hardware id belongs to a decommissioned device, which cannot register again",
        ));
    }
    device_reregistrations::insert(txn, request, credential_hash)
        .await
        .map_err(conflict_if_duplicate(
            "a re-registration of this hardware id already waits for an operator; \
             ask them to approve or reject it"
                .into(),
        ))?;
    let changes = vec![
        Change::of("hostname", None, Some(request.hostname.as_str().into())),
        Change::of(
            "software_version",
            None,
            Some(request.software_version.as_str().into()),
        ),
        Change::of(
            "enrollment_token_id",
            None,
            Some(request.enrollment_token_id.to_string().into()),
        ),
        Change::secret("pending_credential", ChangeKind::Added),
    ];
    let actor = Actor::device(device.tenant_id, device.id, request_id);
    audit::record_at(
        txn,
        &actor,
        device.tenant_id,
        device_entry("device.reregistration_requested", device.id, changes),
        request.requested_at,
    )
    .await?;
    Ok(())
}

fn nothing_waiting() -> ApiError {
    ApiError::not_found("re-registration waiting for this device")
}

/// The request waiting for a device.
pub async fn get(state: &AppState, tenant: TenantId, device: DeviceId) -> Result<Reregistration, ApiError> {
    device_reregistrations::for_device(&state.db, tenant, device)
        .await?
        .ok_or_else(nothing_waiting)
}

/// Hands the device over to the requester: the new credential replaces the old one (which stops
/// working), and the reported hostname and version are taken.
pub async fn approve(state: &AppState, actor: &Actor, id: DeviceId) -> Result<DeviceView, ApiError> {
    let tenant = actor.tenant_id;
    let txn = db::begin_write(&state.db).await?;
    let mut device = super::written(
        device_repo::get_for_update(&txn, tenant, id, Expected::Any).await?,
        "device",
    )?;
    let (request, credential_hash) = device_reregistrations::for_device_for_update(&txn, tenant, id)
        .await?
        .ok_or_else(nothing_waiting)?;
    if device.lifecycle == Lifecycle::Decommissioned {
        return Err(ApiError::new(
            Code::DeviceDecommissioned,
            "the device was decommissioned after this request; reject it instead",
        ));
    }
    let changes = vec![
        Change::secret("credential", ChangeKind::Changed),
        Change::of(
            "hostname",
            Some(device.hostname.as_str().into()),
            Some(request.hostname.as_str().into()),
        ),
        Change::of(
            "software_version",
            Some(device.software_version.as_str().into()),
            Some(request.software_version.as_str().into()),
        ),
        Change::of(
            "reregistration_id",
            None,
            Some(Value::from(request.id.to_string())),
        ),
    ];
    device.hostname = request.hostname;
    device.software_version = request.software_version;
    device_reregistrations::delete(&txn, tenant, request.id).await?;
    device_repo::replace_credential(
        &txn,
        &device,
        &credential_hash,
        Lifecycle::Active,
        state.clock.now(),
    )
    .await?;
    audit::record_at(
        &txn,
        actor,
        tenant,
        device_entry("device.reregistration_approved", id, changes),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    devices::get(state, tenant, id).await
}

/// Drops the request: its credential never works. The device keeps its live credential.
pub async fn reject(state: &AppState, actor: &Actor, id: DeviceId) -> Result<(), ApiError> {
    let tenant = actor.tenant_id;
    let txn = db::begin_write(&state.db).await?;
    let (request, _) = device_reregistrations::for_device_for_update(&txn, tenant, id)
        .await?
        .ok_or_else(nothing_waiting)?;
    device_reregistrations::delete(&txn, tenant, request.id).await?;
    let changes = vec![
        Change::of(
            "reregistration_id",
            Some(Value::from(request.id.to_string())),
            None,
        ),
        Change::secret("pending_credential", ChangeKind::Removed),
    ];
    audit::record_at(
        &txn,
        actor,
        tenant,
        device_entry("device.reregistration_rejected", id, changes),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}
