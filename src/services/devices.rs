//! Devices: registration, the pull and the report of the device protocol, operator management,
//! and the field audit built from what was served and what devices reported.

use super::{Page, PageRequest, audit, checkins, reregistrations, written};
use crate::auth::token;
use crate::db;
use crate::db::repo::devices::{DeviceFilter, ReportOutcome};
use crate::db::repo::{device_fields, device_reregistrations, devices, enrollment_tokens, policies, tenants};
use crate::domain::audit::{Actor, NewEntry};
use crate::domain::binding;
use crate::domain::catalog::{Catalog, Scope};
use crate::domain::device::{
    self, Connectivity, Device, DeviceKind, FieldRecord, Lifecycle, RawReportedField, ReportedRecord,
    ReportedState, Reregistration, ServedField, canonical_json, config_hash, connectivity, served_fields,
};
use crate::domain::diff::{Change, ChangeKind, diff_values};
use crate::domain::policy::{PolicyTree, SecretHandle, SettingValue};
use crate::domain::redact::{REDACTED, RedactedValues};
use crate::domain::resolve::{Resolution, Source, masked_values, resolve};
use crate::domain::tenant::parse_display_text;
use crate::domain::validation::Validator;
use crate::domain::{DeviceId, Expected, FieldError, PolicyId, ReregistrationId, TenantId};
use crate::error::{ApiError, Code};
use crate::state::AppState;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::{Map, Value, json};

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use uuid::Uuid;

pub const CREDENTIAL_PREFIX: &str = "gmp_dc_";

pub(super) fn device_entry(action: &'static str, id: DeviceId, changes: Vec<Change>) -> NewEntry {
    NewEntry {
        action,
        target_type: "device",
        target_id: id.0,
        changes,
    }
}

/// The device's effective configuration under `tree`, and its hash.
fn effective(tree: &PolicyTree, device: &Device) -> (Resolution, String) {
    let resolution = resolve(&tree.chain(device.policy_id), &device.device_values);
    let hash = config_hash(&resolution, &device.reassert);
    (resolution, hash)
}

// ---- registration -------------------------------------------------------------------------

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
fn identity_text(v: &mut Validator, field: &str, raw: &str, max: usize) -> String {
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
    let now = Utc::now();
    if let Some(reason) = enrollment.unusable_because(now) {
        return Err(invalid_token(reason));
    }
    let tenant = enrollment.tenant_id;
    let credential = token::generate(CREDENTIAL_PREFIX);
    let credential_hash = token::digest(&credential);

    let txn = db::begin_write(&state.db).await?;
    if !enrollment_tokens::consume(&txn, enrollment.id, now).await? {
        return Err(invalid_token("used up"));
    }
    let existing = devices::find_by_hardware_for_update(&txn, tenant, &hardware_id).await?;
    let outcome = if existing.is_some() {
        RegistrationOutcome::Pending
    } else {
        RegistrationOutcome::Created
    };
    let device = match existing {
        // A known hardware id never takes the device over by itself: hardware ids are visible
        // to every viewer, so the request waits for an operator and the live credential stays.
        Some(device) => {
            let request = Reregistration {
                id: ReregistrationId::new(),
                tenant_id: tenant,
                device_id: device.id,
                kind: input.kind,
                hostname,
                software_version,
                enrollment_token_id: enrollment.id,
                requested_at: now,
            };
            reregistrations::request(&txn, &device, &request, &credential_hash, request_id).await?;
            device
        }
        None => {
            let policy_id = match enrollment.policy_id {
                Some(policy) => policy,
                None => policies::root_id(&txn, tenant)
                    .await?
                    .ok_or_else(|| ApiError::internal("tenant without a root policy"))?,
            };
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            let device = Device {
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
                recorded_connectivity: Connectivity::New,
            };
            devices::insert(&txn, &device, &credential_hash)
                .await
                .map_err(super::conflict_if_duplicate(
                    "this hardware id is registering right now on another request; try again".into(),
                ))?;
            let actor = Actor::device(tenant, device.id, request_id);
            let changes = vec![
                Change::of("hardware_id", None, Some(device.hardware_id.as_str().into())),
                Change::of("hostname", None, Some(device.hostname.as_str().into())),
                Change::of("kind", None, Some(device.kind.as_str().into())),
                Change::of("policy_id", None, Some(device.policy_id.to_string().into())),
                Change::of(
                    "enrollment_token_id",
                    None,
                    Some(enrollment.id.to_string().into()),
                ),
                Change::secret("credential", ChangeKind::Added),
            ];
            audit::record(
                &txn,
                &actor,
                tenant,
                device_entry("device.registered", device.id, changes),
            )
            .await?;
            device
        }
    };
    txn.commit().await?;
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

async fn pull_interval(state: &AppState, tenant: TenantId) -> Result<u32, ApiError> {
    Ok(tenants::get(&state.db, tenant)
        .await?
        .map_or(tenants::DEFAULT_PULL_INTERVAL_SECONDS, |t| {
            t.pull_interval_seconds
        }))
}

/// The active device presenting `credential`, or a `401`.
pub async fn authenticate(state: &AppState, credential: &str) -> Result<Device, ApiError> {
    let unknown = || {
        ApiError::new(
            Code::InvalidDeviceCredential,
            "the device credential is not valid; register again",
        )
    };
    let digest = token::digest(credential);
    let Some(device) = devices::find_by_credential(&state.db, &digest).await? else {
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
    Ok(device)
}

// ---- the pull -------------------------------------------------------------------------------

/// The answer to a pull.
#[derive(Debug)]
pub enum Pulled {
    /// Nothing new for the device (also when the current config is the one it failed to apply).
    NotModified {
        hash: String,
        next_pull_after: DateTime<Utc>,
    },
    Config(Box<DeviceConfig>),
}

/// The configuration a device receives: its effective settings (secrets in clear — only the
/// device itself ever sees them), where each comes from, what is locked, what it must stop
/// overriding, and when to come back.
#[derive(Debug)]
pub struct DeviceConfig {
    pub device_id: DeviceId,
    pub config_hash: String,
    pub settings: BTreeMap<String, Value>,
    pub provenance: BTreeMap<String, Option<Source>>,
    pub locked: Vec<String>,
    pub reassert: BTreeSet<String>,
    pub fingerprint_key: String,
    pub pull_interval_seconds: u32,
    pub next_pull_after: DateTime<Utc>,
    pub server_time: DateTime<Utc>,
}

pub async fn pull(
    state: &AppState,
    device: Device,
    if_none_match: impl Fn(&str) -> bool,
) -> Result<Pulled, ApiError> {
    let now = Utc::now();
    let tenant = device.tenant_id;
    let interval = pull_interval(state, tenant).await?;
    let last_pull = device
        .last_pull_at
        .max(state.checkins.pending(device.id).map(|(seen, _)| seen));
    if let Some(last) = last_pull {
        let gap = device::min_pull_gap(interval);
        if now - last < gap {
            let wait = (gap - (now - last)).num_seconds().max(1) as u64;
            return Err(ApiError::new(
                Code::RateLimited,
                format!("this device pulls far more often than every {interval} s; come back in {wait} s"),
            )
            .with_retry_after(wait));
        }
    }
    let tree = policies::load_tree(&state.db, tenant).await?;
    let (resolution, hash) = effective(&tree, &device);
    let next_pull_after = device::next_pull_after(device.id.0, interval, now, rand::random::<f64>());

    checkins::record(state, tenant, device.id, now, next_pull_after).await?;
    // Written on the request path only when something changed: what is served, or the
    // device coming back.
    let served_changed = device.served_hash.as_deref() != Some(hash.as_str());
    let came_back = matches!(
        device.recorded_connectivity,
        Connectivity::Stale | Connectivity::Offline
    );
    if served_changed || came_back {
        let txn = db::begin_write(&state.db).await?;
        if served_changed {
            devices::record_served_hash(&txn, &device, &hash).await?;
            record_served(&txn, &device, &resolution, now).await?;
        }
        if came_back {
            devices::set_connectivity(&txn, &device, Connectivity::Online).await?;
            let changes = vec![Change::of(
                "connectivity",
                Some(device.recorded_connectivity.as_str().into()),
                Some("online".into()),
            )];
            let actor = Actor::system(tenant);
            audit::record(
                &txn,
                &actor,
                tenant,
                device_entry("device.online", device.id, changes),
            )
            .await?;
        }
        txn.commit().await?;
    }

    let failed_before = device.failed_hash.as_deref() == Some(hash.as_str());
    if failed_before || if_none_match(&hash) {
        return Ok(Pulled::NotModified {
            hash,
            next_pull_after,
        });
    }
    let mut settings = BTreeMap::new();
    let mut provenance = BTreeMap::new();
    let mut locked = Vec::new();
    for (path, field) in resolution {
        if let Some(value) = &field.value {
            let clear = match value {
                SettingValue::Plain(v) => v.clone(),
                SettingValue::Secret(handle) => Value::String(
                    state
                        .keyring
                        .open(tenant, &path, &handle.sealed)
                        .map_err(ApiError::internal)?,
                ),
            };
            settings.insert(path.clone(), clear);
        }
        if field.locked_by.is_some() {
            locked.push(path.clone());
        }
        provenance.insert(path, field.source);
    }
    Ok(Pulled::Config(Box::new(DeviceConfig {
        device_id: device.id,
        config_hash: hash,
        settings,
        provenance,
        locked,
        reassert: device.reassert,
        fingerprint_key: device.fingerprint_key,
        pull_interval_seconds: interval,
        next_pull_after,
        server_time: now,
    })))
}

/// Updates the field audit with what is now served, writing history only for fields whose
/// value, provenance or lock changed.
async fn record_served(
    conn: &impl sea_orm::ConnectionTrait,
    device: &Device,
    resolution: &Resolution,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let tenant = device.tenant_id;
    let mut current = device_fields::load(conn, tenant, device.id).await?;
    let served = served_fields(resolution);
    let unset = ServedField {
        fingerprint: None,
        source: "unset",
        policy_id: None,
        policy_version: None,
        locked: false,
    };
    let paths: BTreeSet<String> = served.keys().chain(current.keys()).cloned().collect();
    for path in paths {
        let now_served = served.get(&path).cloned().unwrap_or_else(|| unset.clone());
        let record = match current.remove(&path) {
            Some(record) if record.served == now_served => continue,
            Some(mut record) => {
                record.served = now_served;
                record.served_since = now;
                record.violation = is_violation(&record.served, record.reported.as_ref());
                record
            }
            None => FieldRecord {
                device_id: device.id,
                path: path.clone(),
                served: now_served,
                served_since: now,
                reported: None,
                violation: false,
            },
        };
        device_fields::put(conn, tenant, &record).await?;
        device_fields::append_history(conn, tenant, "served", &record, now).await?;
    }
    Ok(())
}

fn is_violation(served: &ServedField, reported: Option<&ReportedRecord>) -> bool {
    served.locked && reported.is_some_and(|r| r.state == "overridden")
}

// ---- the report -----------------------------------------------------------------------------

/// What a device reports after applying a config.
#[derive(Debug)]
pub struct Report {
    pub config_hash: String,
    pub software_version: Option<String>,
    pub hostname: Option<String>,
    pub fields: BTreeMap<String, RawReportedField>,
}

/// What the server made of a report.
#[derive(Debug)]
pub struct ReportReceipt {
    /// False when the same report was already recorded: nothing changed.
    pub recorded: bool,
    pub fields_changed: usize,
    pub violations: Vec<String>,
}

pub async fn report(state: &AppState, mut device: Device, report: Report) -> Result<ReportReceipt, ApiError> {
    let mut v = Validator::new();
    if report.config_hash.len() != 64 || !report.config_hash.chars().all(|c| c.is_ascii_hexdigit()) {
        v.push(FieldError::new(
            "config_hash",
            "invalid",
            "must be the 64-hex-digit config_hash that was applied",
        ));
    }
    if let Some(hostname) = &report.hostname {
        device.hostname = identity_text(&mut v, "hostname", hostname, 253);
    }
    if let Some(version) = &report.software_version {
        device.software_version = identity_text(&mut v, "software_version", version, 64);
    }
    let states = match device::validate_report(&report.fields) {
        Ok(states) => Some(states),
        Err(errors) => {
            errors.into_iter().for_each(|e| v.push(e));
            None
        }
    };
    v.finish().map_err(ApiError::validation)?;
    let states = states.unwrap_or_default();

    let digest = report_digest(&report, &device);
    if device.last_report_digest.as_deref() == Some(digest.as_str()) {
        return Ok(ReportReceipt {
            recorded: false,
            fields_changed: 0,
            violations: Vec::new(),
        });
    }

    let now = Utc::now();
    let tenant = device.tenant_id;
    let tree = policies::load_tree(&state.db, tenant).await?;
    let (resolution, _) = effective(&tree, &device);
    let served = served_fields(&resolution);

    let txn = db::begin_write(&state.db).await?;
    let mut current = device_fields::load(&txn, tenant, device.id).await?;
    let mut fields_changed = 0;
    let mut violations = Vec::new();
    let mut reassert = device.reassert.clone();
    for (path, state_now) in &states {
        let mut record = current.remove(path).unwrap_or_else(|| FieldRecord {
            device_id: device.id,
            path: path.clone(),
            served: served.get(path).cloned().unwrap_or(ServedField {
                fingerprint: None,
                source: "unset",
                policy_id: None,
                policy_version: None,
                locked: false,
            }),
            served_since: now,
            reported: None,
            violation: false,
        });
        if matches!(state_now, ReportedState::Inherited) {
            reassert.remove(path);
        }
        let unchanged = record.reported.as_ref().is_some_and(|r| state_now.same_as(r));
        if !unchanged {
            record.reported = Some(ReportedRecord {
                state: state_now.name().to_owned(),
                local_value: state_now.local_value().cloned(),
                error: state_now.error().map(str::to_owned),
                since: now,
            });
        }
        let violation = is_violation(&record.served, record.reported.as_ref());
        if violation {
            violations.push(path.clone());
        }
        if !unchanged || violation != record.violation {
            record.violation = violation;
            device_fields::put(&txn, tenant, &record).await?;
            if !unchanged {
                fields_changed += 1;
                device_fields::append_history(&txn, tenant, "reported", &record, now).await?;
            }
        }
    }
    let failed = states.values().any(|s| matches!(s, ReportedState::Failed { .. }));
    let outcome = ReportOutcome {
        applied_hash: (!failed).then_some(report.config_hash.as_str()),
        failed_hash: failed.then_some(report.config_hash.as_str()),
        digest: &digest,
        reassert: &reassert,
    };
    devices::record_report(&txn, &device, now, outcome).await?;
    txn.commit().await?;
    if !violations.is_empty() {
        tracing::warn!(device_id = %device.id, ?violations, "device overrides locked fields");
    }
    Ok(ReportReceipt {
        recorded: true,
        fields_changed,
        violations,
    })
}

/// Identifies a report's content, so the same report sent twice is recognised.
fn report_digest(report: &Report, device: &Device) -> String {
    let fields: Map<String, Value> = report
        .fields
        .iter()
        .map(|(path, f)| {
            (
                path.clone(),
                json!({"state": f.state, "value": f.value, "fingerprint": f.fingerprint, "error": f.error}),
            )
        })
        .collect();
    let body = json!({
        "config_hash": report.config_hash,
        "hostname": device.hostname,
        "software_version": device.software_version,
        "fields": fields,
    });
    hex::encode(Sha256::digest(canonical_json(&body).as_bytes()))
}

// ---- operator views ---------------------------------------------------------------------------

/// A device as operators see it: its record plus where it stands against its current config.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub device: Device,
    pub connectivity: Connectivity,
    /// The hash of the config the device should run now.
    pub current_hash: String,
    /// Applied the current config.
    pub in_sync: bool,
    /// Reported the current config as failed.
    pub failed: bool,
    /// A re-registration of this hardware id waiting for an operator.
    pub reregistration: Option<Reregistration>,
}

fn view(state: &AppState, tree: &PolicyTree, device: Device, now: DateTime<Utc>) -> DeviceView {
    let (_, current_hash) = effective(tree, &device);
    let (last_seen, next_pull) = match state.checkins.pending(device.id) {
        Some((seen, next)) => (Some(seen), Some(next)),
        None => (device.last_seen_at, device.next_pull_after),
    };
    DeviceView {
        connectivity: connectivity(last_seen, next_pull, now, state.config.thresholds()),
        in_sync: device.applied_hash.as_deref() == Some(current_hash.as_str()),
        failed: device.failed_hash.as_deref() == Some(current_hash.as_str()),
        current_hash,
        device,
        reregistration: None,
    }
}

pub async fn list(
    state: &AppState,
    tenant: TenantId,
    filter: DeviceFilter,
    page: PageRequest,
) -> Result<Page<DeviceView>, ApiError> {
    let rows = devices::list(&state.db, tenant, &filter, page.cursor, Some(page.fetch_limit())).await?;
    let tree = policies::load_tree(&state.db, tenant).await?;
    let now = Utc::now();
    let page = page.page(rows, |d| d.id.0);
    let ids: Vec<DeviceId> = page.items.iter().map(|d| d.id).collect();
    let mut waiting: BTreeMap<DeviceId, Reregistration> =
        device_reregistrations::for_devices(&state.db, tenant, &ids)
            .await?
            .into_iter()
            .map(|r| (r.device_id, r))
            .collect();
    Ok(Page {
        items: page
            .items
            .into_iter()
            .map(|d| {
                let reregistration = waiting.remove(&d.id);
                DeviceView {
                    reregistration,
                    ..view(state, &tree, d, now)
                }
            })
            .collect(),
        next_cursor: page.next_cursor,
    })
}

pub async fn get(state: &AppState, tenant: TenantId, id: DeviceId) -> Result<DeviceView, ApiError> {
    let device = devices::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let tree = policies::load_tree(&state.db, tenant).await?;
    let reregistration = device_reregistrations::for_device(&state.db, tenant, id).await?;
    Ok(DeviceView {
        reregistration,
        ..view(state, &tree, device, Utc::now())
    })
}

/// Operator changes to a device: its policy and its own values.
#[derive(Default)]
pub struct DeviceEdit {
    pub policy_id: Option<PolicyId>,
    pub set: BTreeMap<String, Value>,
    pub unset: Vec<String>,
    /// Recorded with the edit's change-log entry (the reference check's warnings).
    pub notes: Vec<Change>,
}

// `set` holds secrets in clear: `Debug` hides them.
impl std::fmt::Debug for DeviceEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceEdit")
            .field("policy_id", &self.policy_id)
            .field("set", &RedactedValues(&self.set))
            .field("unset", &self.unset)
            .finish()
    }
}

/// Checks and seals device values: any catalogue field, device-scoped or an override of a
/// managed one.
fn parse_device_values(
    state: &AppState,
    tenant: TenantId,
    raw: &BTreeMap<String, Value>,
    v: &mut Validator,
) -> BTreeMap<String, SettingValue> {
    let catalog = Catalog::get();
    let mut values = BTreeMap::new();
    for (path, raw_value) in raw {
        let field = format!("set.{path}");
        let Some(def) = catalog.field(path) else {
            v.push(catalog.unknown(field, path));
            continue;
        };
        let Some(valid) = v.check(catalog.validate(&field, def, raw_value)) else {
            continue;
        };
        let value = if def.secret {
            SettingValue::Secret(SecretHandle {
                id: Uuid::now_v7(),
                changed_at: Utc::now(),
                sealed: state
                    .keyring
                    .seal(tenant, path, valid.as_str().unwrap_or_default()),
            })
        } else {
            SettingValue::Plain(valid)
        };
        values.insert(path.clone(), value);
    }
    values
}

/// The checks every new device state passes: the policy exists, no device value overrides a
/// locked field, and the effective config keeps the cross-field rules.
fn check_device(tree: &PolicyTree, device: &Device) -> Result<(), ApiError> {
    if tree.get(device.policy_id).is_none() {
        return Err(ApiError::field(FieldError::new(
            "policy_id",
            "unknown_policy",
            "no such policy",
        )));
    }
    let chain = tree.chain(device.policy_id);
    for path in device.device_values.keys() {
        if let Some(holder) = chain.iter().find(|n| n.content.locks.contains(path)) {
            let message = format!(
                "`{path}` is locked by policy “{}” (version {}); devices cannot override it",
                holder.content.name, holder.version
            );
            let mut error = ApiError::new(Code::Conflict, message.clone());
            error.errors.push(FieldError::new(
                format!("set.{path}"),
                "locked_by_ancestor",
                message,
            ));
            return Err(error);
        }
    }
    let resolution = resolve(&chain, &device.device_values);
    let mut errors = Catalog::get().check_consistency(&masked_values(&resolution));
    errors.extend(binding::check_one_source(&resolution));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Locks the device, applies `change`, checks and stores the result with its audit entry
/// (plus `notes`, e.g. the warnings of a reference check). A change that changes nothing
/// stores nothing.
async fn change_device(
    state: &AppState,
    actor: &Actor,
    id: DeviceId,
    expected: Expected,
    action: &'static str,
    notes: Vec<Change>,
    change: impl FnOnce(&mut Device) -> Result<(), ApiError>,
) -> Result<DeviceView, ApiError> {
    let tenant = actor.tenant_id;
    let txn = db::begin_write(&state.db).await?;
    let before = written(
        devices::get_for_update(&txn, tenant, id, expected).await?,
        "device",
    )?;
    let mut after = before.clone();
    change(&mut after)?;
    let moved = binding::check_reentered(&before.device_values, &after.device_values, "set.");
    if !moved.is_empty() {
        return Err(ApiError::validation(moved));
    }
    let tree = policies::load_tree(&txn, tenant).await?;
    check_device(&tree, &after)?;
    let mut changes = diff_values(&before.device_values, &after.device_values);
    if before.policy_id != after.policy_id {
        changes.insert(
            0,
            Change::of(
                "policy_id",
                Some(before.policy_id.to_string().into()),
                Some(after.policy_id.to_string().into()),
            ),
        );
    }
    for path in after.reassert.difference(&before.reassert) {
        changes.push(Change::of(
            format!("reassert.{path}"),
            Some(Value::Bool(false)),
            Some(Value::Bool(true)),
        ));
    }
    if changes.is_empty() {
        drop(txn);
        return get(state, tenant, id).await;
    }
    devices::save_operator_state(&txn, &after).await?;
    changes.extend(notes);
    audit::record(&txn, actor, tenant, device_entry(action, id, changes)).await?;
    txn.commit().await?;
    get(state, tenant, id).await
}

pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: DeviceId,
    expected: Expected,
    edit: DeviceEdit,
) -> Result<DeviceView, ApiError> {
    let mut v = Validator::new();
    let set = parse_device_values(state, actor.tenant_id, &edit.set, &mut v);
    for (i, path) in edit.unset.iter().enumerate() {
        if Catalog::get().field(path).is_none() {
            v.push(Catalog::get().unknown(format!("unset[{i}]"), path));
        } else if edit.set.contains_key(path) {
            v.push(FieldError::new(
                format!("unset[{i}]"),
                "contradictory",
                format!("`{path}` is both set and unset"),
            ));
        }
    }
    v.finish().map_err(ApiError::validation)?;
    let notes = edit.notes;
    change_device(
        state,
        actor,
        id,
        expected,
        "device.updated",
        notes,
        move |device| {
            if let Some(policy) = edit.policy_id {
                device.policy_id = policy;
            }
            device.device_values.extend(set);
            device.device_values.retain(|path, _| !edit.unset.contains(path));
            Ok(())
        },
    )
    .await
}

/// Checks that the device exists in the tenant (a `404` first, whatever the field) and that
/// `path` is a setting; returns the setting.
async fn device_and_field(
    state: &AppState,
    tenant: TenantId,
    id: DeviceId,
    path: &str,
) -> Result<&'static crate::domain::catalog::FieldDef, ApiError> {
    devices::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let catalog = Catalog::get();
    catalog
        .field(path)
        .ok_or_else(|| ApiError::field(catalog.unknown("field", path)))
}

/// Makes a device's reported local override its server-side device value.
pub async fn adopt(
    state: &AppState,
    actor: &Actor,
    id: DeviceId,
    expected: Expected,
    path: &str,
) -> Result<DeviceView, ApiError> {
    let tenant = actor.tenant_id;
    let def = device_and_field(state, tenant, id, path).await?;
    let records = device_fields::load(&state.db, tenant, id).await?;
    let local = records
        .get(path)
        .and_then(|r| r.reported.as_ref())
        .filter(|r| r.state == "overridden")
        .and_then(|r| r.local_value.clone());
    if def.secret {
        return Err(ApiError::conflict(
            "a local secret is known only by its fingerprint; set it as a device value instead",
        ));
    }
    let local = local.ok_or_else(|| {
        ApiError::conflict(format!("the device does not report a local override of `{path}`"))
    })?;
    let path = path.to_owned();
    change_device(
        state,
        actor,
        id,
        expected,
        "device.override_adopted",
        Vec::new(),
        move |device| {
            device
                .device_values
                .insert(path.clone(), SettingValue::Plain(local));
            device.reassert.remove(&path);
            Ok(())
        },
    )
    .await
}

/// Tells the device (in its next config) to drop its local value of `path`; the policy's value
/// applies again. A device value of the field is removed too.
pub async fn reassert(
    state: &AppState,
    actor: &Actor,
    id: DeviceId,
    expected: Expected,
    path: &str,
) -> Result<DeviceView, ApiError> {
    let def = device_and_field(state, actor.tenant_id, id, path).await?;
    if def.scope == Scope::Device {
        return Err(ApiError::field(FieldError::new(
            "field",
            "device_scoped_setting",
            "device-scoped fields have no policy value to reassert",
        )));
    }
    let path = path.to_owned();
    change_device(
        state,
        actor,
        id,
        expected,
        "device.policy_reasserted",
        Vec::new(),
        move |device| {
            device.device_values.remove(&path);
            device.reassert.insert(path);
            Ok(())
        },
    )
    .await
}

/// A new credential; the old one stops working at once.
pub async fn rotate_credential(
    state: &AppState,
    actor: &Actor,
    id: DeviceId,
) -> Result<(DeviceView, String), ApiError> {
    let tenant = actor.tenant_id;
    let credential = token::generate(CREDENTIAL_PREFIX);
    let txn = db::begin_write(&state.db).await?;
    let device = written(
        devices::get_for_update(&txn, tenant, id, Expected::Any).await?,
        "device",
    )?;
    if device.lifecycle == Lifecycle::Decommissioned {
        return Err(ApiError::conflict(
            "the device is decommissioned; it must register again",
        ));
    }
    devices::replace_credential(&txn, &device, &token::digest(&credential), Lifecycle::Active).await?;
    let changes = vec![Change::secret("credential", ChangeKind::Changed)];
    audit::record(
        &txn,
        actor,
        tenant,
        device_entry("device.credential_rotated", id, changes),
    )
    .await?;
    txn.commit().await?;
    Ok((get(state, tenant, id).await?, credential))
}

/// Retires a device: its credential stops working; it can come back only by registering.
pub async fn decommission(state: &AppState, actor: &Actor, id: DeviceId) -> Result<DeviceView, ApiError> {
    let tenant = actor.tenant_id;
    let txn = db::begin_write(&state.db).await?;
    let device = written(
        devices::get_for_update(&txn, tenant, id, Expected::Any).await?,
        "device",
    )?;
    if device.lifecycle == Lifecycle::Active {
        // A fresh random credential nobody knows, so even a leaked old one is useless.
        let unusable = token::digest(&token::generate(CREDENTIAL_PREFIX));
        devices::replace_credential(&txn, &device, &unusable, Lifecycle::Decommissioned).await?;
        let changes = vec![Change::of(
            "status",
            Some("active".into()),
            Some("decommissioned".into()),
        )];
        audit::record(
            &txn,
            actor,
            tenant,
            device_entry("device.decommissioned", id, changes),
        )
        .await?;
    }
    txn.commit().await?;
    get(state, tenant, id).await
}

// ---- the field audit --------------------------------------------------------------------------

/// One field of a device, as operators see it.
#[derive(Debug, Clone)]
pub struct FieldView {
    pub path: String,
    /// The effective value, secrets masked.
    pub value: Option<Value>,
    pub source: Option<Source>,
    pub locked: bool,
    pub record: Option<FieldRecord>,
}

/// Every field of a device: effective value, provenance, lock, and what the device reported.
pub async fn fields(
    state: &AppState,
    tenant: TenantId,
    id: DeviceId,
) -> Result<(DeviceView, Vec<FieldView>), ApiError> {
    let device = devices::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let tree = policies::load_tree(&state.db, tenant).await?;
    let (resolution, _) = effective(&tree, &device);
    let mut records = device_fields::load(&state.db, tenant, id).await?;
    let mut views: Vec<FieldView> = resolution
        .into_iter()
        .map(|(path, field)| FieldView {
            value: field.value.as_ref().map(SettingValue::masked),
            source: field.source,
            locked: field.locked_by.is_some(),
            record: records.remove(&path),
            path,
        })
        .collect();
    views.extend(records.into_iter().map(|(path, record)| FieldView {
        path,
        value: None,
        source: None,
        locked: false,
        record: Some(record),
    }));
    views.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((view(state, &tree, device, Utc::now()), views))
}

pub async fn history(
    state: &AppState,
    tenant: TenantId,
    id: DeviceId,
    path: Option<&str>,
    page: PageRequest,
) -> Result<Page<device_fields::HistoryEntry>, ApiError> {
    devices::get(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let rows = device_fields::history(&state.db, tenant, id, path, page.cursor, page.fetch_limit()).await?;
    Ok(page.page(rows, |e| e.id))
}

/// Which devices inherit field `path` (optionally from one policy, at one version).
pub async fn inherited(
    state: &AppState,
    tenant: TenantId,
    path: &str,
    policy: Option<PolicyId>,
    version: Option<i32>,
    page: PageRequest,
) -> Result<Page<FieldRecord>, ApiError> {
    let rows = device_fields::inherited(
        &state.db,
        tenant,
        path,
        policy,
        version,
        page.cursor,
        page.fetch_limit(),
    )
    .await?;
    Ok(page.page(rows, |r| r.device_id.0))
}

/// Devices overriding field `path` (or any field) locally, violations flagged.
pub async fn overrides(
    state: &AppState,
    tenant: TenantId,
    path: Option<&str>,
) -> Result<Vec<FieldRecord>, ApiError> {
    Ok(device_fields::in_state(&state.db, tenant, "overridden", path).await?)
}

/// Where a device of a policy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    InSync,
    Pending,
    Failed,
    Stale,
}

/// Devices assigned to the policy or to any of its descendants, optionally only those in
/// `wanted` state: who has not applied the current config yet, who failed, who is stale.
pub async fn policy_devices(
    state: &AppState,
    tenant: TenantId,
    policy: PolicyId,
    wanted: Option<SyncState>,
) -> Result<Vec<DeviceView>, ApiError> {
    let tree = policies::load_tree(&state.db, tenant).await?;
    if tree.get(policy).is_none() {
        return Err(ApiError::not_found("policy"));
    }
    let under: Vec<PolicyId> = std::iter::once(policy).chain(tree.descendants(policy)).collect();
    let filter = DeviceFilter {
        policy_ids: Some(under),
        lifecycle: Some(Lifecycle::Active),
        ..DeviceFilter::default()
    };
    let now = Utc::now();
    let views = devices::list(&state.db, tenant, &filter, None, None)
        .await?
        .into_iter()
        .map(|d| view(state, &tree, d, now))
        .filter(|v| match wanted {
            None => true,
            Some(SyncState::InSync) => v.in_sync,
            Some(SyncState::Pending) => !v.in_sync,
            Some(SyncState::Failed) => v.failed,
            Some(SyncState::Stale) => matches!(v.connectivity, Connectivity::Stale | Connectivity::Offline),
        })
        .collect();
    Ok(views)
}

/// Counts per policy for dashboards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyCounts {
    pub assigned: u64,
    pub in_sync: u64,
    pub pending: u64,
    pub overridden: u64,
    pub failed: u64,
    pub violations: u64,
    pub stale: u64,
}

pub async fn dashboard(
    state: &AppState,
    tenant: TenantId,
) -> Result<Vec<(PolicyId, String, PolicyCounts)>, ApiError> {
    let tree = policies::load_tree(&state.db, tenant).await?;
    let filter = DeviceFilter {
        lifecycle: Some(Lifecycle::Active),
        ..DeviceFilter::default()
    };
    let devices = devices::list(&state.db, tenant, &filter, None, None).await?;
    let overridden = device_fields::in_state(&state.db, tenant, "overridden", None).await?;
    let failed_fields = device_fields::in_state(&state.db, tenant, "failed", None).await?;
    let overriding: HashSet<DeviceId> = overridden.iter().map(|r| r.device_id).collect();
    let violating: HashSet<DeviceId> = overridden
        .iter()
        .filter(|r| r.violation)
        .map(|r| r.device_id)
        .collect();
    let failing: HashSet<DeviceId> = failed_fields.iter().map(|r| r.device_id).collect();
    let now = Utc::now();
    let mut counts: BTreeMap<PolicyId, PolicyCounts> = BTreeMap::new();
    for device in devices {
        let v = view(state, &tree, device, now);
        let c = counts.entry(v.device.policy_id).or_default();
        let id = v.device.id;
        c.assigned += 1;
        c.in_sync += u64::from(v.in_sync);
        c.pending += u64::from(!v.in_sync);
        c.overridden += u64::from(overriding.contains(&id));
        c.failed += u64::from(v.failed || failing.contains(&id));
        c.violations += u64::from(violating.contains(&id));
        c.stale += u64::from(matches!(
            v.connectivity,
            Connectivity::Stale | Connectivity::Offline
        ));
    }
    let mut summary: Vec<(PolicyId, String, PolicyCounts)> = tree
        .nodes()
        .map(|p| {
            (
                p.id,
                p.content.name.clone(),
                counts.remove(&p.id).unwrap_or_default(),
            )
        })
        .collect();
    summary.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(summary)
}
