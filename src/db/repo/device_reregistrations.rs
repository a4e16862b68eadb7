//! Re-registrations waiting for an operator, with the new credential stored as a hash.

use crate::db::entities::device_reregistrations::{ActiveModel, Column, Entity, Model};
use crate::domain::device::{DeviceKind, Reregistration};
use crate::domain::{DeviceId, EnrollmentTokenId, ReregistrationId, TenantId};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

fn to_domain(m: Model) -> Result<Reregistration, DbErr> {
    Ok(Reregistration {
        id: ReregistrationId(m.id),
        tenant_id: TenantId(m.tenant_id),
        device_id: DeviceId(m.device_id),
        kind: m.kind.parse::<DeviceKind>().map_err(DbErr::Type)?,
        hostname: m.hostname,
        software_version: m.software_version,
        enrollment_token_id: EnrollmentTokenId(m.enrollment_token_id),
        requested_at: m.requested_at,
    })
}

/// Stores a waiting request; a second one for the same device is a unique violation.
pub async fn insert(
    conn: &impl ConnectionTrait,
    request: &Reregistration,
    credential_hash: &str,
) -> Result<(), DbErr> {
    let model = ActiveModel {
        id: Set(request.id.0),
        tenant_id: Set(request.tenant_id.0),
        device_id: Set(request.device_id.0),
        credential_hash: Set(credential_hash.to_owned()),
        kind: Set(request.kind.as_str().to_owned()),
        hostname: Set(request.hostname.clone()),
        software_version: Set(request.software_version.clone()),
        enrollment_token_id: Set(request.enrollment_token_id.0),
        requested_at: Set(request.requested_at),
    };
    Entity::insert(model)
        .exec_without_returning(conn)
        .await
        .map(|_| ())
}

/// The request waiting for `device`.
pub async fn for_device(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    device: DeviceId,
) -> Result<Option<Reregistration>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::DeviceId.eq(device.0))
        .one(conn)
        .await?
        .map(to_domain)
        .transpose()
}

/// The request waiting for `device` with its credential hash, locked for approval.
pub async fn for_device_for_update(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    device: DeviceId,
) -> Result<Option<(Reregistration, String)>, DbErr> {
    let Some(model) = Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::DeviceId.eq(device.0))
        .lock_exclusive()
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let hash = model.credential_hash.clone();
    Ok(Some((to_domain(model)?, hash)))
}

/// The requests waiting for any of `devices` (one page of the device list).
pub async fn for_devices(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    devices: &[DeviceId],
) -> Result<Vec<Reregistration>, DbErr> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    Entity::find()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::DeviceId.is_in(devices.iter().map(|d| d.0)))
        .all(conn)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// True when `credential_hash` belongs to a request still waiting (the device asking is told to
/// wait rather than to register again).
pub async fn is_pending(conn: &impl ConnectionTrait, credential_hash: &str) -> Result<bool, DbErr> {
    Ok(Entity::find()
        .filter(Column::CredentialHash.eq(credential_hash))
        .one(conn)
        .await?
        .is_some())
}

pub async fn delete(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: ReregistrationId,
) -> Result<(), DbErr> {
    Entity::delete_many()
        .filter(Column::TenantId.eq(tenant.0))
        .filter(Column::Id.eq(id.0))
        .exec(conn)
        .await
        .map(|_| ())
}
