//! The pull of the device protocol: what a device gets when it asks for its config.
//!
//! In the steady state a pull reads nothing from the database: the device behind the
//! credential and its tenant's policy revision and pull interval come from the device directory
//! (`device_directory`), the tree and the built config from the effective cache (`effective`),
//! both kept current by the changes writes announce. A `304` is decided from the cached hash; a
//! `200` writes the cached body fragment behind the device's own fields. The check-in and the
//! served-field audit are buffered and written in batches, never on the request path (a device
//! coming back from stale or offline is the one rare write).

use super::device_directory::KnownDevice;
use super::devices::device_entry;
use super::effective::{Current, Freshness, built, current};
use super::served_audit::{self, Served};
use super::{audit, checkins};
use crate::db;
use crate::db::repo::devices;
use crate::domain::audit::Actor;
use crate::domain::device::{self, Connectivity, Device};
use crate::domain::diff::Change;
use crate::error::{ApiError, Code};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde_json::{Map, json};

/// The answer to a pull.
#[derive(Debug)]
pub enum Pulled {
    /// Nothing new for the device (also when the current config is the one it failed to apply).
    NotModified {
        hash: String,
        next_pull_after: DateTime<Utc>,
    },
    /// The config as JSON: the device's effective settings (secrets in clear — only the device
    /// itself ever receives them), provenance, locked fields, fields to reassert, and when to
    /// come back.
    Config {
        hash: String,
        next_pull_after: DateTime<Utc>,
        body: String,
    },
}

fn too_often(interval: u32, wait: u64) -> ApiError {
    ApiError::new(
        Code::RateLimited,
        format!("this device pulls far more often than every {interval} s; come back in {wait} s"),
    )
    .with_retry_after(wait)
}

pub async fn pull(
    state: &AppState,
    known: &KnownDevice,
    if_none_match: impl Fn(&str) -> bool,
) -> Result<Pulled, ApiError> {
    let device = &known.device;
    let now = state.clock.now();
    let tenant = device.tenant_id;
    let Current {
        revision,
        interval,
        view: tree,
    } = current(state, tenant, Freshness::Directory).await?;
    let last_pull = known
        .last_pull_at()
        .max(state.checkins.pending(device.id).map(|(seen, _)| seen));
    if let Some(last) = last_pull {
        let gap = device::min_pull_gap(interval);
        if now - last < gap {
            let wait = (gap - (now - last)).num_seconds().max(1) as u64;
            return Err(too_often(interval, wait));
        }
    }
    let built = built(state, &tree, device, revision)?;
    let next_pull_after = device::next_pull_after(device.id.0, interval, now, rand::random::<f64>());
    checkins::record(state, tenant, device.id, now, next_pull_after).await?;
    known.pulled(now);

    let audited = device.audited_key.as_deref() == Some(built.audit_key.as_str());
    if !audited && state.served.queued_key(device.id).as_deref() != Some(built.audit_key.as_str()) {
        let served = Served {
            tenant,
            hash: built.hash.clone(),
            key: built.audit_key.clone(),
            fields: built.served.clone(),
            at: now,
        };
        // Boxed, as the rare writes below: a pull's future is allocated and moved on every
        // request, and their state inline would make every pull pay for them.
        Box::pin(served_audit::record(state, device.id, served)).await?;
    }
    if matches!(
        device.recorded_connectivity,
        Connectivity::Stale | Connectivity::Offline
    ) {
        Box::pin(record_back_online(state, device, now)).await?;
    }

    let hash = built.hash.clone();
    let failed_before = device.failed_hash.as_deref() == Some(hash.as_str());
    if failed_before || if_none_match(&hash) {
        return Ok(Pulled::NotModified {
            hash,
            next_pull_after,
        });
    }
    let mut own = Map::new();
    own.insert("device_id".into(), json!(device.id));
    own.insert("config_hash".into(), json!(hash));
    own.insert("reassert".into(), json!(device.reassert));
    own.insert("fingerprint_key".into(), json!(device.fingerprint_key));
    own.insert("pull_interval_seconds".into(), json!(interval));
    own.insert("next_pull_after".into(), json!(next_pull_after));
    own.insert("server_time".into(), json!(now));
    Ok(Pulled::Config {
        body: built.body(&own),
        hash,
        next_pull_after,
    })
}

/// A stale or offline device pulled again: the transition is recorded once.
async fn record_back_online(state: &AppState, device: &Device, now: DateTime<Utc>) -> Result<(), ApiError> {
    let tenant = device.tenant_id;
    let txn = db::begin_write(&state.db).await?;
    devices::set_connectivity(&txn, device, Connectivity::Online).await?;
    let changes = vec![Change::of(
        "connectivity",
        Some(device.recorded_connectivity.as_str().into()),
        Some("online".into()),
    )];
    audit::record_at(
        &txn,
        &Actor::system(tenant),
        tenant,
        device_entry("device.online", device.id, changes),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(())
}
