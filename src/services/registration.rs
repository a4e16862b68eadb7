//! Registration of the device protocol: a device enrols with a token, and authenticates with
//! its credential afterwards.

use super::device_directory::{Digest, KnownDevice};
use super::devices::{CREDENTIAL_PREFIX, device_entry};
use super::{audit, device_reads, registration_queue, reregistrations};
use crate::auth::token;
use crate::db::repo::{device_reregistrations, devices, enrollment_tokens, policies, tenants};
use crate::domain::audit::Actor;
use crate::domain::device::{Connectivity, Device, DeviceKind, Lifecycle, Reregistration};
use crate::domain::diff::{Change, ChangeKind};
use crate::domain::redact::REDACTED;
use crate::domain::tenant::parse_display_text;
use crate::domain::validation::Validator;
use crate::domain::{DeviceId, EnrollmentTokenId, ReregistrationId, TenantId};
use crate::error::{ApiError, Code};
use crate::state::AppState;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::ConnectionTrait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a device sends to register.
pub struct Registration {
    pub enrollment_token: String,
    pub kind: DeviceKind,
    pub hardware_id: String,
    pub hostname: String,
    pub software_version: String,
}

/// What became of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationOutcome {
    /// A new device; its credential works at once.
    Created,
    /// The hardware id is already registered: the request waits for an operator, and the new
    /// credential works only once approved.
    Pending,
}

/// A registered device and its new credential (shown once).
pub struct Registered {
    pub device: Device,
    pub credential: String,
    pub outcome: RegistrationOutcome,
    pub pull_interval_seconds: u32,
    pub next_pull_after: DateTime<Utc>,
}

// The enrollment token and the credential are secrets: `Debug` (and so any log line) shows
// neither.
impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("enrollment_token", &REDACTED)
            .field("kind", &self.kind)
            .field("hardware_id", &self.hardware_id)
            .field("hostname", &self.hostname)
            .field("software_version", &self.software_version)
            .finish()
    }
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("device", &self.device.id)
            .field("credential", &REDACTED)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// A device's self-description (hardware id, hostname, version): the same rules as any display
/// text. On error the problem is recorded in `v` and the value is not used.
pub(super) fn identity_text(v: &mut Validator, field: &str, raw: &str, max: usize) -> String {
    v.check(parse_display_text(field, raw, max)).unwrap_or_default()
}

fn invalid_token(reason: &str) -> ApiError {
    ApiError::new(
        Code::InvalidEnrollmentToken,
        format!("the enrollment token is {reason}; ask your MSP for a new one"),
    )
}

pub async fn register(
    state: &AppState,
    request_id: Option<String>,
    input: Registration,
) -> Result<Registered, ApiError> {
    let mut v = Validator::new();
    let hardware_id = identity_text(&mut v, "hardware_id", &input.hardware_id, 128);
    let hostname = identity_text(&mut v, "hostname", &input.hostname, 253);
    let software_version = identity_text(&mut v, "software_version", &input.software_version, 64);
    v.finish().map_err(ApiError::validation)?;

    let found = enrollment_tokens::find_by_hash(&state.db, &token::digest(&input.enrollment_token)).await?;
    let enrollment = found.ok_or_else(|| invalid_token("not valid"))?;
    let now = state.clock.now();
    if let Some(reason) = enrollment.unusable_because(now) {
        return Err(invalid_token(reason));
    }
    let tenant = enrollment.tenant_id;
    // Read outside the write: a tenant's root policy never changes.
    let policy_id = match enrollment.policy_id {
        Some(policy) => policy,
        None => policies::root_id(&state.db, tenant)
            .await?
            .ok_or_else(|| ApiError::internal("tenant without a root policy"))?,
    };
    let credential = token::generate(CREDENTIAL_PREFIX);
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let prepared = Prepared {
        enrollment_id: enrollment.id,
        now,
        request_id,
        credential_hash: token::digest(&credential),
        device: Device {
            id: DeviceId::new(),
            tenant_id: tenant,
            kind: input.kind,
            hardware_id,
            hostname,
            software_version,
            policy_id,
            fingerprint_key: BASE64.encode(key),
            device_values: BTreeMap::new(),
            reassert: BTreeSet::new(),
            version: 1,
            lifecycle: Lifecycle::Active,
            registered_at: now,
            credential_rotated_at: now,
            last_seen_at: None,
            last_pull_at: None,
            next_pull_after: None,
            served_hash: None,
            applied_hash: None,
            applied_at: None,
            failed_hash: None,
            last_report_digest: None,
            audited_key: None,
            recorded_connectivity: Connectivity::New,
        },
    };
    let (device, outcome) = match registration_queue::write_queued(state, prepared).await? {
        Written::Registered(device, outcome) => (*device, outcome),
        Written::UsedUp => return Err(invalid_token("used up")),
    };
    let interval = pull_interval(state, tenant).await?;
    Ok(Registered {
        next_pull_after: match outcome {
            RegistrationOutcome::Created => now,
            RegistrationOutcome::Pending => {
                now + chrono::Duration::seconds(reregistrations::RETRY_SECONDS as i64)
            }
        },
        pull_interval_seconds: interval,
        device,
        credential,
        outcome,
    })
}

/// A registration checked and decided outside any transaction, waiting to be written.
pub(super) struct Prepared {
    enrollment_id: EnrollmentTokenId,
    now: DateTime<Utc>,
    request_id: Option<String>,
    credential_hash: String,
    /// The device created when its hardware id is new.
    device: Device,
}

/// What writing a registration did.
pub(super) enum Written {
    Registered(Box<Device>, RegistrationOutcome),
    /// The enrollment token has no use left: nothing was written.
    UsedUp,
}

/// Writes one registration in `txn`: counts the enrollment token's use (exactly, under any
/// concurrency: a conditional increment), then creates the device, or files a re-registration
/// when its hardware id is known, with its change-log entry. An error leaves the transaction
/// to be rolled back.
pub(super) async fn write(txn: &impl ConnectionTrait, p: &Prepared) -> Result<Written, ApiError> {
    if !enrollment_tokens::consume(txn, p.enrollment_id, p.now).await? {
        return Ok(Written::UsedUp);
    }
    let tenant = p.device.tenant_id;
    let existing = devices::find_by_hardware_for_update(txn, tenant, &p.device.hardware_id).await?;
    // A known hardware id never takes the device over by itself: hardware ids are visible to
    // every viewer, so the request waits for an operator and the live credential stays.
    if let Some(device) = existing {
        let request = Reregistration {
            id: ReregistrationId::new(),
            tenant_id: tenant,
            device_id: device.id,
            kind: p.device.kind,
            hostname: p.device.hostname.clone(),
            software_version: p.device.software_version.clone(),
            enrollment_token_id: p.enrollment_id,
            requested_at: p.now,
        };
        reregistrations::request(txn, &device, &request, &p.credential_hash, p.request_id.clone()).await?;
        return Ok(Written::Registered(
            Box::new(device),
            RegistrationOutcome::Pending,
        ));
    }
    let device = &p.device;
    devices::insert(txn, device, &p.credential_hash, p.now)
        .await
        .map_err(super::conflict_if_duplicate(
            "this hardware id is registering right now on another request; try again".into(),
        ))?;
    let actor = Actor::device(tenant, device.id, p.request_id.clone());
    let changes = vec![
        Change::of("hardware_id", None, Some(device.hardware_id.as_str().into())),
        Change::of("hostname", None, Some(device.hostname.as_str().into())),
        Change::of("kind", None, Some(device.kind.as_str().into())),
        Change::of("policy_id", None, Some(device.policy_id.to_string().into())),
        Change::of(
            "enrollment_token_id",
            None,
            Some(p.enrollment_id.to_string().into()),
        ),
        Change::secret("credential", ChangeKind::Added),
    ];
    audit::record_at(
        txn,
        &actor,
        tenant,
        device_entry("device.registered", device.id, changes),
        p.now,
    )
    .await?;
    Ok(Written::Registered(
        Box::new(device.clone()),
        RegistrationOutcome::Created,
    ))
}

async fn pull_interval(state: &AppState, tenant: TenantId) -> Result<u32, ApiError> {
    Ok(tenants::get(&state.db, tenant)
        .await?
        .map_or(tenants::DEFAULT_PULL_INTERVAL_SECONDS, |t| {
            t.pull_interval_seconds
        }))
}

/// The active device presenting `credential`, or a `401`.
pub async fn authenticate(state: &AppState, credential: &str) -> Result<Arc<KnownDevice>, ApiError> {
    let raw = token::raw_digest(credential);
    if let Some(device) = state.directory.device(&raw) {
        state.metrics.device_directory(true);
        return Ok(device);
    }
    state.metrics.device_directory(false);
    // Boxed: the database read's state would otherwise sit inline in every pull's future, which
    // is allocated and moved on every request, hit or miss.
    Box::pin(stored_device(state, raw)).await
}

/// A credential the directory does not know, looked up in the database (and kept if active).
async fn stored_device(state: &AppState, raw: Digest) -> Result<Arc<KnownDevice>, ApiError> {
    let unknown = || {
        ApiError::new(
            Code::InvalidDeviceCredential,
            "the device credential is not valid; register again",
        )
    };
    let since = state.directory.since();
    let digest = token::to_hex(&raw);
    let Some(device) = device_reads::by_credential(state, digest.clone()).await? else {
        if device_reregistrations::is_pending(&state.db, &digest).await? {
            return Err(reregistrations::waiting());
        }
        return Err(unknown());
    };
    if device.lifecycle != Lifecycle::Active {
        return Err(ApiError::new(
            Code::InvalidDeviceCredential,
            "this device was decommissioned",
        ));
    }
    let known = Arc::new(KnownDevice::new(device));
    state.directory.keep_device(&raw, &known, since);
    Ok(known)
}
