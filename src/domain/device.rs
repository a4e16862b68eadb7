//! Devices: kinds, the pull schedule, the effective configuration and its hash, and what a
//! device may report.

use super::FieldError;
use super::catalog::Catalog;
use super::policy::SettingValue;
use super::resolve::{Resolution, Source};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// What kind of device registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// On the customer's site.
    Appliance,
    /// Cloud or off-site.
    Vault,
}

impl DeviceKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Appliance => "appliance",
            DeviceKind::Vault => "vault",
        }
    }
}

impl FromStr for DeviceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "appliance" => Ok(DeviceKind::Appliance),
            "vault" => Ok(DeviceKind::Vault),
            other => Err(format!("unknown device kind `{other}`")),
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a device may still pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Active,
    /// Retired by an operator; its credential no longer works.
    Decommissioned,
}

impl Lifecycle {
    pub const fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::Decommissioned => "decommissioned",
        }
    }
}

impl FromStr for Lifecycle {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Lifecycle::Active),
            "decommissioned" => Ok(Lifecycle::Decommissioned),
            other => Err(format!("unknown lifecycle `{other}`")),
        }
    }
}

/// How current a device is, from when it last pulled and when it was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connectivity {
    /// Registered but never pulled.
    New,
    Online,
    /// Past its next pull plus the grace period.
    Stale,
    /// Not seen for much longer.
    Offline,
}

impl Connectivity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Connectivity::New => "new",
            Connectivity::Online => "online",
            Connectivity::Stale => "stale",
            Connectivity::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "online" => Connectivity::Online,
            "stale" => Connectivity::Stale,
            "offline" => Connectivity::Offline,
            _ => Connectivity::New,
        }
    }
}

/// When a device counts as stale (past `next_pull_after` plus `grace`) and offline (silent for
/// `offline_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub grace: Duration,
    pub offline_after: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            grace: Duration::hours(1),
            offline_after: Duration::hours(24),
        }
    }
}

pub fn connectivity(
    last_seen: Option<DateTime<Utc>>,
    next_pull_after: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    thresholds: Thresholds,
) -> Connectivity {
    match (last_seen, next_pull_after) {
        (None, _) => Connectivity::New,
        (Some(seen), _) if now - seen > thresholds.offline_after => Connectivity::Offline,
        (Some(_), Some(due)) if now > due + thresholds.grace => Connectivity::Stale,
        _ => Connectivity::Online,
    }
}

// ---- the pull schedule ---------------------------------------------------------------------

/// The device's fixed offset within every pull interval: a hash of its id, so a fleet spreads
/// evenly over the interval and each device keeps its slot across restarts (Puppet's splay).
pub fn pull_slot(device: Uuid, interval_seconds: u32) -> u32 {
    let digest = Sha256::digest(device.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (n % u64::from(interval_seconds.max(1))) as u32
}

/// The smallest gap between two pulls before a device is told to slow down (`429`).
pub fn min_pull_gap(interval_seconds: u32) -> Duration {
    Duration::seconds(i64::from(interval_seconds / 16).max(1))
}

/// When the device should pull next: its next slot at least `min_pull_gap` from now, plus a
/// little jitter (at most 1 % of the interval, capped at a minute) so devices sharing a slot
/// do not arrive in the same millisecond.
pub fn next_pull_after(
    device: Uuid,
    interval_seconds: u32,
    now: DateTime<Utc>,
    jitter_fraction: f64,
) -> DateTime<Utc> {
    let interval = i64::from(interval_seconds.max(1));
    let slot = i64::from(pull_slot(device, interval_seconds));
    let now_s = now.timestamp();
    let mut next = now_s - now_s.rem_euclid(interval) + slot;
    let earliest = now + min_pull_gap(interval_seconds);
    while next < earliest.timestamp() {
        next += interval;
    }
    let jitter_max = (interval as f64 / 100.0).min(60.0);
    let jitter = (jitter_fraction.clamp(0.0, 1.0) * jitter_max * 1000.0) as i64;
    DateTime::from_timestamp(next, 0).unwrap_or(now) + Duration::milliseconds(jitter)
}

// ---- the effective configuration -------------------------------------------------------------

/// JSON with sorted keys and no insignificant white space, so equal values hash equally.
pub fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let ordered: BTreeMap<&String, Value> = map.iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(
                    ordered
                        .into_iter()
                        .map(|(k, v)| (k.clone(), v))
                        .collect::<Map<_, _>>(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What stands for a value in hashes: the value itself, or a secret's identity (never its
/// plaintext, so a hash shown to operators reveals nothing about a secret).
fn hashable(value: &SettingValue) -> Value {
    match value {
        SettingValue::Plain(v) => v.clone(),
        SettingValue::Secret(handle) => json!({"secret": handle.id}),
    }
}

/// A short fingerprint of one served value, for the field audit.
pub fn value_fingerprint(value: &SettingValue) -> String {
    sha256_hex(&canonical_json(&hashable(value)))[..16].to_owned()
}

/// The hash of everything that changes what a device does: effective values, locks and the
/// fields it must stop overriding. Provenance is left out: a new policy version that changes
/// nothing for a device does not make it re-apply.
pub fn config_hash(resolution: &Resolution, reassert: &BTreeSet<String>) -> String {
    let settings: Map<String, Value> = resolution
        .iter()
        .filter_map(|(path, field)| field.value.as_ref().map(|v| (path.clone(), hashable(v))))
        .collect();
    let locked: Vec<&String> = resolution
        .iter()
        .filter(|(_, f)| f.locked_by.is_some())
        .map(|(p, _)| p)
        .collect();
    let document = json!({"settings": settings, "locked": locked, "reassert": reassert});
    sha256_hex(&canonical_json(&document))
}

/// Where a served field's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedSource {
    /// A policy of the device's chain.
    Policy,
    /// The device's own value.
    Device,
    /// No value (a locked field nobody set).
    Unset,
}

/// Where one served field comes from, as the field audit records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedField {
    pub fingerprint: Option<String>,
    pub source: ServedSource,
    pub policy_id: Option<Uuid>,
    pub policy_version: Option<i32>,
    pub locked: bool,
}

impl ServedField {
    /// A field no longer served (or not served yet).
    pub const fn unset() -> Self {
        ServedField {
            fingerprint: None,
            source: ServedSource::Unset,
            policy_id: None,
            policy_version: None,
            locked: false,
        }
    }
}

pub fn served_fields(resolution: &Resolution) -> BTreeMap<String, ServedField> {
    resolution
        .iter()
        .map(|(path, field)| {
            let (source, policy_id, policy_version) = match &field.source {
                Some(Source::Policy(p)) => (ServedSource::Policy, Some(p.id.0), Some(p.version)),
                Some(Source::Device) => (ServedSource::Device, None, None),
                None => (ServedSource::Unset, None, None),
            };
            let served = ServedField {
                fingerprint: field.value.as_ref().map(value_fingerprint),
                source,
                policy_id,
                policy_version,
                locked: field.locked_by.is_some(),
            };
            (path.clone(), served)
        })
        .collect()
}

// ---- reports ----------------------------------------------------------------------------------

/// What a device says it did with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportedState {
    /// Applied the served value.
    Inherited,
    /// Runs a local value instead; for secrets only the device's keyed fingerprint of it.
    Overridden { local: Value },
    /// Could not apply the served value.
    Failed { error: String },
    /// The device's software does not know the field.
    Unsupported,
}

/// What a device said it did with a field, without the details (the local value, the error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedKind {
    Inherited,
    Overridden,
    Failed,
    Unsupported,
}

impl ReportedKind {
    /// How devices spell it in reports (and the database stores it).
    pub const fn as_str(self) -> &'static str {
        match self {
            ReportedKind::Inherited => "inherited",
            ReportedKind::Overridden => "overridden",
            ReportedKind::Failed => "failed",
            ReportedKind::Unsupported => "unsupported",
        }
    }
}

impl ReportedState {
    pub const fn kind(&self) -> ReportedKind {
        match self {
            ReportedState::Inherited => ReportedKind::Inherited,
            ReportedState::Overridden { .. } => ReportedKind::Overridden,
            ReportedState::Failed { .. } => ReportedKind::Failed,
            ReportedState::Unsupported => ReportedKind::Unsupported,
        }
    }
}

/// A field of a report as sent, before validation.
#[derive(Debug, Clone)]
pub struct RawReportedField {
    pub state: ReportedKind,
    pub value: Option<Value>,
    pub fingerprint: Option<String>,
    pub error: Option<String>,
}

const MAX_ERROR_CHARS: usize = 1000;

/// Checks every reported field: a known path, a known state, and what that state needs (a
/// valid local value, a fingerprint for secrets, an error message). Reports all problems.
pub fn validate_report(
    fields: &BTreeMap<String, RawReportedField>,
) -> Result<BTreeMap<String, ReportedState>, Vec<FieldError>> {
    let catalog = Catalog::get();
    let mut errors = Vec::new();
    let mut states = BTreeMap::new();
    for (path, raw) in fields {
        let field = format!("fields.{path}");
        let Some(def) = catalog.field(path) else {
            errors.push(FieldError::new(
                field,
                "unknown_setting",
                format!("`{path}` is not a setting"),
            ));
            continue;
        };
        let state = match raw.state {
            ReportedKind::Inherited => Ok(ReportedState::Inherited),
            ReportedKind::Unsupported => Ok(ReportedState::Unsupported),
            ReportedKind::Failed => match raw.error.as_deref().map(str::trim) {
                Some(error) if !error.is_empty() => Ok(ReportedState::Failed {
                    error: error.chars().take(MAX_ERROR_CHARS).collect(),
                }),
                _ => Err(FieldError::new(
                    &field,
                    "error_required",
                    "a failed field needs an `error` message",
                )),
            },
            ReportedKind::Overridden if def.secret => match raw.fingerprint.as_deref() {
                Some(fp) if (16..=128).contains(&fp.len()) && fp.chars().all(|c| c.is_ascii_hexdigit()) => {
                    Ok(ReportedState::Overridden {
                        local: Value::String(fp.to_ascii_lowercase()),
                    })
                }
                _ => Err(FieldError::new(
                    &field,
                    "fingerprint_required",
                    "an overridden secret is reported only as the hex HMAC fingerprint of the local value",
                )),
            },
            ReportedKind::Overridden => match &raw.value {
                Some(value) => catalog
                    .validate(&format!("{field}.value"), def, value)
                    .map(|local| ReportedState::Overridden { local }),
                None => Err(FieldError::new(
                    &field,
                    "value_required",
                    "an overridden field needs its local `value`",
                )),
            },
        };
        match state {
            Ok(state) => {
                if def.secret && raw.value.is_some() {
                    errors.push(FieldError::new(
                        &field,
                        "secret_in_clear",
                        "never report a secret's value",
                    ));
                } else {
                    states.insert(path.clone(), state);
                }
            }
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(states)
    } else {
        Err(errors)
    }
}

/// The keyed fingerprint a device computes for a secret it runs locally: hex HMAC-SHA256 of
/// the value under the key its config carries. The server computes the same for what it serves.
pub fn secret_fingerprint(key: &[u8], plaintext: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(plaintext.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The field audit's current state of one field on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRecord {
    pub device_id: super::DeviceId,
    pub path: String,
    pub served: ServedField,
    pub served_since: DateTime<Utc>,
    pub reported: Option<ReportedRecord>,
    /// A local override of a locked field.
    pub violation: bool,
}

/// What the device last reported for the field.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedRecord {
    pub state: ReportedKind,
    /// The local value of an override (for secrets, the device's fingerprint of it).
    pub local_value: Option<Value>,
    pub error: Option<String>,
    pub since: DateTime<Utc>,
}

impl ReportedState {
    pub fn local_value(&self) -> Option<&Value> {
        match self {
            ReportedState::Overridden { local } => Some(local),
            _ => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            ReportedState::Failed { error } => Some(error),
            _ => None,
        }
    }

    /// True when `record` already says exactly this.
    pub fn same_as(&self, record: &ReportedRecord) -> bool {
        self.kind() == record.state
            && self.local_value() == record.local_value.as_ref()
            && self.error() == record.error.as_deref()
    }
}

// ---- devices and tokens as stored --------------------------------------------------------------

/// A registered device.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: super::DeviceId,
    pub tenant_id: super::TenantId,
    pub kind: DeviceKind,
    pub hardware_id: String,
    pub hostname: String,
    pub software_version: String,
    pub policy_id: super::PolicyId,
    /// Key of the HMAC fingerprints the device reports for local secrets (base64).
    pub fingerprint_key: String,
    /// Device-scoped values and overrides of unlocked managed fields, set by operators.
    pub device_values: BTreeMap<String, SettingValue>,
    /// Fields the device must stop overriding locally.
    pub reassert: BTreeSet<String>,
    /// Bumped by every operator change (assignment, device values, reassert); the `ETag`.
    pub version: i32,
    pub lifecycle: Lifecycle,
    pub registered_at: DateTime<Utc>,
    pub credential_rotated_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_pull_at: Option<DateTime<Utc>>,
    pub next_pull_after: Option<DateTime<Utc>>,
    /// The config hash last served, applied, and reported as failed.
    pub served_hash: Option<String>,
    pub applied_hash: Option<String>,
    pub applied_at: Option<DateTime<Utc>>,
    pub failed_hash: Option<String>,
    pub last_report_digest: Option<String>,
    /// A digest of what the field audit last recorded as served.
    pub audited_key: Option<String>,
    /// Connectivity as the connectivity job (or the last pull) recorded it.
    pub recorded_connectivity: Connectivity,
}

/// A known hardware id registering again (an appliance reinstalled, or someone holding an
/// enrollment token and a hardware id they read). It waits for an operator: the device's live
/// credential keeps working, and the new one works only once an operator approves.
#[derive(Debug, Clone)]
pub struct Reregistration {
    pub id: super::ReregistrationId,
    pub tenant_id: super::TenantId,
    pub device_id: super::DeviceId,
    pub kind: DeviceKind,
    pub hostname: String,
    pub software_version: String,
    pub enrollment_token_id: super::EnrollmentTokenId,
    pub requested_at: DateTime<Utc>,
}

/// A token devices register with.
#[derive(Debug, Clone)]
pub struct EnrollmentToken {
    pub id: super::EnrollmentTokenId,
    pub tenant_id: super::TenantId,
    pub label: String,
    /// Devices registering with it are assigned here (the root policy when `None`).
    pub policy_id: Option<super::PolicyId>,
    pub expires_at: DateTime<Utc>,
    pub max_uses: i32,
    pub uses: i32,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_by: Option<super::OperatorId>,
    pub created_at: DateTime<Utc>,
}

impl EnrollmentToken {
    /// `None` when the token can register a device now, else why not.
    pub fn unusable_because(&self, now: DateTime<Utc>) -> Option<&'static str> {
        if self.revoked_at.is_some() {
            Some("revoked")
        } else if self.expires_at <= now {
            Some("expired")
        } else if self.uses >= self.max_uses {
            Some("used up")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::tests::node;
    use crate::domain::resolve::resolve;

    #[test]
    fn slots_spread_ten_thousand_devices_evenly_over_four_hours() {
        // Fixed, consecutive ids: the worst case for a weak hash (ids differing in one byte,
        // like time-ordered UUIDs) and the same input every run. With random ids a fair spread
        // still leaves a bucket outside ±5 % in about 1.5 % of runs (σ ≈ 43 per bucket).
        let interval = 4 * 3600;
        let mut buckets = [0u32; 4];
        for i in 0..10_000u128 {
            let slot = pull_slot(
                Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + i),
                interval,
            );
            assert!(slot < interval);
            buckets[(slot / 3600) as usize] += 1;
        }
        for count in buckets {
            assert!(
                (2375..=2625).contains(&count),
                "{buckets:?} is not within ±5 % of 2500 per hour"
            );
        }
    }

    #[test]
    fn a_device_keeps_its_slot() {
        let device = Uuid::new_v4();
        assert_eq!(pull_slot(device, 14_400), pull_slot(device, 14_400));
    }

    #[test]
    fn the_next_pull_is_the_devices_slot_with_bounded_jitter() {
        let device = Uuid::new_v4();
        let interval = 14_400u32;
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let next = next_pull_after(device, interval, now, 0.0);
        assert_eq!(
            next.timestamp().rem_euclid(i64::from(interval)),
            i64::from(pull_slot(device, interval))
        );
        assert!(next >= now + min_pull_gap(interval));
        assert!(next <= now + Duration::seconds(i64::from(interval)) + min_pull_gap(interval));
        let jittered = next_pull_after(device, interval, now, 1.0);
        assert!(jittered > next && jittered - next <= Duration::seconds(60));
    }

    #[test]
    fn connectivity_follows_the_schedule() {
        let now = Utc::now();
        let t = Thresholds::default();
        let hours = Duration::hours;
        assert_eq!(connectivity(None, None, now, t), Connectivity::New);
        assert_eq!(
            connectivity(Some(now), Some(now + hours(4)), now, t),
            Connectivity::Online
        );
        assert_eq!(
            connectivity(Some(now - hours(6)), Some(now - hours(2)), now, t),
            Connectivity::Stale
        );
        assert_eq!(
            connectivity(Some(now - hours(30)), Some(now - hours(26)), now, t),
            Connectivity::Offline
        );
        let strict = Thresholds {
            grace: Duration::minutes(5),
            offline_after: hours(2),
        };
        assert_eq!(
            connectivity(
                Some(now - hours(1)),
                Some(now - Duration::minutes(10)),
                now,
                strict
            ),
            Connectivity::Stale
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"d": [2, {"z": 1, "y": 2}], "c": null}}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":null,"d":[2,{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn equal_effective_values_hash_equally_whatever_their_provenance() {
        let a = node(None, "A", &[("connectwise.site", json!("x.example"))], &[]);
        let b = node(None, "B", &[("connectwise.site", json!("x.example"))], &[]);
        let none = BTreeSet::new();
        let (ra, rb) = (resolve(&[&a], &BTreeMap::new()), resolve(&[&b], &BTreeMap::new()));
        assert_eq!(config_hash(&ra, &none), config_hash(&rb, &none));
        assert_eq!(config_hash(&ra, &none).len(), 64);

        let c = node(None, "C", &[("connectwise.site", json!("y.example"))], &[]);
        assert_ne!(
            config_hash(&ra, &none),
            config_hash(&resolve(&[&c], &BTreeMap::new()), &none)
        );
        let locked = node(
            None,
            "A",
            &[("connectwise.site", json!("x.example"))],
            &["connectwise.site"],
        );
        assert_ne!(
            config_hash(&ra, &none),
            config_hash(&resolve(&[&locked], &BTreeMap::new()), &none)
        );
        let reassert: BTreeSet<String> = ["connectwise.site".to_owned()].into();
        assert_ne!(config_hash(&ra, &none), config_hash(&ra, &reassert));
    }

    #[test]
    fn hmac_matches_the_rfc_4231_test_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            secret_fingerprint(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn raw(
        state: ReportedKind,
        value: Option<Value>,
        fingerprint: Option<&str>,
        error: Option<&str>,
    ) -> RawReportedField {
        RawReportedField {
            state,
            value,
            fingerprint: fingerprint.map(str::to_owned),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn reports_are_validated_field_by_field() {
        let board = "ticketing.events.failed_backup.service_board";
        let good: BTreeMap<String, RawReportedField> = [
            (
                "connectwise.site".to_owned(),
                raw(ReportedKind::Inherited, None, None, None),
            ),
            (
                board.to_owned(),
                raw(
                    ReportedKind::Overridden,
                    Some(json!({"id": 4, "name": "Local"})),
                    None,
                    None,
                ),
            ),
            (
                "connectwise.private_key".to_owned(),
                raw(ReportedKind::Overridden, None, Some(&"ab".repeat(32)), None),
            ),
            (
                "billing.enabled".to_owned(),
                raw(ReportedKind::Failed, None, None, Some("no agreement")),
            ),
            (
                "connectwise.public_key".to_owned(),
                raw(ReportedKind::Unsupported, None, None, None),
            ),
        ]
        .into();
        let states = validate_report(&good).unwrap();
        assert_eq!(
            states[board],
            ReportedState::Overridden {
                local: json!({"id": 4, "name": "Local"})
            }
        );
        assert_eq!(states["billing.enabled"].kind(), ReportedKind::Failed);

        let bad: BTreeMap<String, RawReportedField> = [
            (
                "connectwise.nope".to_owned(),
                raw(ReportedKind::Inherited, None, None, None),
            ),
            (
                board.to_owned(),
                raw(
                    ReportedKind::Overridden,
                    Some(json!({"id": 0, "name": "x"})),
                    None,
                    None,
                ),
            ),
            (
                "connectwise.site".to_owned(),
                raw(ReportedKind::Overridden, None, None, None),
            ),
            (
                "connectwise.private_key".to_owned(),
                raw(ReportedKind::Overridden, Some(json!("clear")), None, None),
            ),
            (
                "billing.enabled".to_owned(),
                raw(ReportedKind::Failed, None, None, None),
            ),
        ]
        .into();
        let mut codes: Vec<(String, &str)> = validate_report(&bad)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect();
        codes.sort();
        assert_eq!(
            codes,
            vec![
                ("fields.billing.enabled".to_owned(), "error_required"),
                ("fields.connectwise.nope".to_owned(), "unknown_setting"),
                (
                    "fields.connectwise.private_key".to_owned(),
                    "fingerprint_required"
                ),
                ("fields.connectwise.site".to_owned(), "value_required"),
                (format!("fields.{board}.value"), "invalid_reference"),
            ]
        );
    }
}
