//! Master-key rotation: re-seal every stored secret under the current master key, so earlier
//! keys can be retired. Runs from the command line; safe to interrupt and run again.

use crate::db;
use crate::db::repo::policies;
use crate::domain::policy::SettingValue;
use crate::error::ApiError;
use crate::secrets::Keyring;
use sea_orm::DatabaseConnection;

const BATCH: u64 = 200;

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    pub versions_checked: u64,
    pub secrets_resealed: u64,
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
            if changed {
                policies::replace_version_values(&txn, id, &policies::encode_values(&values)?).await?;
            }
        }
        txn.commit().await?;
    }
    Ok(rotation)
}
