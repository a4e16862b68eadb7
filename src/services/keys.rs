//! Master-key rotation: re-seal every stored secret under the current master key, so earlier
//! keys can be retired. Secrets live in policy versions and in device values; both are walked.
//! Runs from the command line; safe to interrupt and run again.

use crate::db;
use crate::db::repo::{devices, policies};
use crate::domain::TenantId;
use crate::domain::policy::SettingValue;
use crate::error::ApiError;
use crate::secrets::Keyring;
use sea_orm::DatabaseConnection;
use std::collections::BTreeMap;

const BATCH: u64 = 200;

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    pub versions_checked: u64,
    pub devices_checked: u64,
    pub secrets_resealed: u64,
}

/// Re-seals the secrets of one set of values; true when any changed.
fn reseal_all(
    keyring: &Keyring,
    tenant: TenantId,
    values: &mut BTreeMap<String, SettingValue>,
    rotation: &mut Rotation,
) -> Result<bool, ApiError> {
    let mut changed = false;
    for (path, value) in values.iter_mut() {
        if let SettingValue::Secret(handle) = value
            && let Some(resealed) = keyring
                .reseal(tenant, path, &handle.sealed)
                .map_err(ApiError::internal)?
        {
            handle.sealed = resealed;
            changed = true;
            rotation.secrets_resealed += 1;
        }
    }
    Ok(changed)
}

pub async fn rotate(db: &DatabaseConnection, keyring: &Keyring) -> Result<Rotation, ApiError> {
    let mut rotation = Rotation::default();
    let mut after = None;
    loop {
        let page = policies::version_values_page(db, after, BATCH).await?;
        let Some((last, _, _)) = page.last() else { break };
        after = Some(*last);
        let txn = db::begin_write(db).await?;
        for (id, tenant, stored) in page {
            rotation.versions_checked += 1;
            let mut values = policies::decode_values(&stored)?;
            if reseal_all(keyring, tenant, &mut values, &mut rotation)? {
                policies::replace_version_values(&txn, id, &policies::encode_values(&values)?).await?;
            }
        }
        txn.commit().await?;
    }
    let mut after = None;
    loop {
        let page = devices::device_values_page(db, after, BATCH).await?;
        let Some((last, _, _)) = page.last() else { break };
        after = Some(*last);
        let txn = db::begin_write(db).await?;
        for (id, tenant, stored) in page {
            rotation.devices_checked += 1;
            let mut values = policies::decode_values(&stored)?;
            if reseal_all(keyring, tenant, &mut values, &mut rotation)? {
                devices::replace_device_values(&txn, id, &policies::encode_values(&values)?).await?;
            }
        }
        txn.commit().await?;
    }
    Ok(rotation)
}
