//! Seeding a benchmark fleet through the service layer: a tenant, a policy tree with the source
//! document's ConnectWise settings, and many devices inserted in batches with credentials
//! hashed exactly as registration stores them.

use super::{BenchDevice, Group};
use crate::auth::token;
use crate::db;
use crate::db::repo::{device_fields, devices, policies as policy_repo};
use crate::domain::audit::Actor;
use crate::domain::device::{
    Connectivity, Device, DeviceKind, FieldRecord, Lifecycle, ReportedKind, ReportedRecord, ServedField,
    config_hash, served_fields,
};
use crate::domain::policy::SettingValue;
use crate::domain::resolve::resolve;
use crate::domain::{DeviceId, Expected, PolicyId, TenantId, TenantName};
use crate::error::ApiError;
use crate::services::devices::CREDENTIAL_PREFIX;
use crate::services::effective::served_digest;
use crate::services::policies::{self, PolicyEdit};
use crate::services::references::References;
use crate::services::served_audit::is_violation;
use crate::services::tenants;
use crate::state::AppState;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Devices written per transaction.
const DEVICES_PER_TRANSACTION: usize = 10_000;

#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// Devices that have already been served their config (steady-state pulls).
    pub steady: u64,
    /// Devices registered but never pulled (the herd).
    pub new: u64,
    /// Child policies under the root; devices are spread over them (0: all on the root).
    pub policies: u32,
    /// The tenant's pull interval; a device may pull again after a sixteenth of it.
    pub pull_interval_seconds: u32,
    /// Every n-th device has values of its own (0: none): its own Service Ticket Company, so a
    /// group of its own, and every second of those also overrides [`OVERRIDDEN`].
    pub own_values_every: u64,
}

/// The field devices with values of their own override (every second of them).
pub const OVERRIDDEN: &str = "ticketing.events.disk_usage.enabled";

#[derive(Debug)]
pub struct Seeded {
    pub tenant: TenantId,
    pub devices: Vec<BenchDevice>,
    pub elapsed: Duration,
}

/// The source document's ConnectWise settings: credentials plus tickets for three event classes
/// (the same values as the policy tests' `seed_settings`).
pub fn root_settings() -> BTreeMap<String, Value> {
    let board = |id: i64, name: &str| json!({"id": id, "name": name});
    let mut set = BTreeMap::from([
        (
            "connectwise.site".to_owned(),
            json!("https://NA.myconnectwise.invalid/"),
        ),
        ("connectwise.company_id".to_owned(), json!("acme")),
        ("connectwise.public_key".to_owned(), json!("AbCdEf0123456789")),
        (
            "connectwise.private_key".to_owned(),
            json!("bench-private-key-0123456789"),
        ),
    ]);
    for (class, board_id) in [("failed_backup", 1), ("missed_backup", 2), ("disk_usage", 3)] {
        let prefix = format!("ticketing.events.{class}");
        set.insert(format!("{prefix}.enabled"), json!(true));
        set.insert(
            format!("{prefix}.service_board"),
            board(board_id, &format!("Board {board_id}")),
        );
        set.insert(format!("{prefix}.new_status"), board(100 + board_id, "New"));
        set.insert(format!("{prefix}.closed_status"), board(200 + board_id, "Closed"));
    }
    set
}

/// Creates the tenant, its policy tree and the devices. The credentials come back in clear
/// (for the load generator); the database holds only their SHA-256, as registration writes it.
/// An error for the person running the benchmark: with its cause, which a server would only log.
pub fn describe(error: &ApiError) -> String {
    match error.cause() {
        Some(cause) => format!("{error} ({cause})"),
        None => error.to_string(),
    }
}

pub async fn seed(state: &AppState, options: &SeedOptions) -> Result<Seeded, ApiError> {
    seed_reporting(state, options, 0).await
}

/// [`seed`], and every device gets the field-audit record of [`OVERRIDDEN`] that its last
/// report would have left: every `overrides_every`-th device (0: none, and no records at all)
/// reports a local value of its own (`false`), the others that they inherit it. So "who
/// overrides this field" finds a few among as many records of that field as there are devices.
/// The records are written with the repository function the report path uses.
pub async fn seed_reporting(
    state: &AppState,
    options: &SeedOptions,
    overrides_every: u64,
) -> Result<Seeded, ApiError> {
    let started = Instant::now();
    let name = format!("Bench {}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let name = TenantName::parse("name", &name).map_err(ApiError::field)?;
    let txn = db::begin_write(&state.db).await?;
    // As at bootstrap: the new tenant's id is not known yet; the system acts.
    let tenant =
        tenants::insert_tenant(&txn, &Actor::system(TenantId::new()), &name, state.clock.now()).await?;
    txn.commit().await?;
    let actor = Actor::system(tenant.id);
    tenants::set_pull_interval(state, &actor, Expected::Any, options.pull_interval_seconds).await?;

    let root = policy_repo::root_id(&state.db, tenant.id)
        .await?
        .ok_or_else(|| ApiError::internal("tenant without a root policy"))?;
    let edit = PolicyEdit {
        set: root_settings(),
        comment: Some("ConnectWise integration".into()),
        ..PolicyEdit::default()
    };
    // Bench sites are not real ConnectWise hosts: nothing to check references against.
    policies::update(state, &actor, root, Expected::Any, edit, References::Skip).await?;
    let mut targets = Vec::new();
    for index in 0..options.policies {
        let edit = PolicyEdit {
            // A board comes with its statuses (the board rule).
            set: BTreeMap::from([
                (
                    "ticketing.events.missed_backup.service_board".to_owned(),
                    json!({"id": 1000 + index, "name": format!("Client {index} Desk")}),
                ),
                (
                    "ticketing.events.missed_backup.new_status".to_owned(),
                    json!({"id": 5000 + index, "name": "New"}),
                ),
                (
                    "ticketing.events.missed_backup.closed_status".to_owned(),
                    json!({"id": 6000 + index, "name": "Closed"}),
                ),
            ]),
            lock: vec!["connectwise.site".into()],
            ..PolicyEdit::default()
        };
        let name = format!("Client {index}");
        targets.push(policies::create(state, &actor, &name, edit).await?.node.id);
    }
    if targets.is_empty() {
        targets.push(root);
    }
    // The hash each policy's devices are served: the same resolution the pull computes.
    let tree = policy_repo::load_tree(&state.db, tenant.id).await?;
    let served = |id: PolicyId, values: &BTreeMap<String, SettingValue>| {
        let resolution = resolve(&tree.chain(id), values);
        let fields = served_fields(&resolution);
        let audit_key = served_digest(&fields);
        let overridable = fields.get(OVERRIDDEN).cloned().unwrap_or_else(ServedField::unset);
        Served {
            etag: config_hash(&resolution, &BTreeSet::new()),
            audit_key,
            overridable,
        }
    };
    let shared: Vec<(PolicyId, Served)> = targets
        .iter()
        .map(|&id| (id, served(id, &BTreeMap::new())))
        .collect();

    let total = options.steady + options.new;
    let mut seeded = Vec::with_capacity(total as usize);
    let mut batch = Vec::with_capacity(DEVICES_PER_TRANSACTION);
    let mut records = Vec::new();
    for index in 0..total {
        let group = if index < options.steady {
            Group::Steady
        } else {
            Group::New
        };
        let (policy_id, shared_served) = &shared[(index % shared.len() as u64) as usize];
        let values = own_values(index, options.own_values_every);
        let own_served;
        let served_now = if values.is_empty() {
            shared_served
        } else {
            own_served = served(*policy_id, &values);
            &own_served
        };
        let credential = token::generate(CREDENTIAL_PREFIX);
        let mut seeded_device = device(
            tenant.id,
            index,
            *policy_id,
            group,
            (&served_now.etag, &served_now.audit_key),
            options.pull_interval_seconds,
            state.clock.now(),
        );
        seeded_device.device_values = values;
        if overrides_every > 0 {
            let overrides = index.is_multiple_of(overrides_every);
            records.push(reported_record(
                seeded_device.id,
                &served_now.overridable,
                overrides,
                state.clock.now(),
            ));
        }
        let etag = served_now.etag.clone();
        batch.push((seeded_device, token::digest(&credential)));
        seeded.push(BenchDevice {
            credential,
            etag,
            group,
        });
        if batch.len() == DEVICES_PER_TRANSACTION || index + 1 == total {
            let txn = db::begin_write(&state.db).await?;
            devices::insert_many(&txn, &batch, state.clock.now()).await?;
            device_fields::put(&txn, tenant.id, &records).await?;
            txn.commit().await?;
            batch.clear();
            records.clear();
        }
    }
    Ok(Seeded {
        tenant: tenant.id,
        devices: seeded,
        elapsed: started.elapsed(),
    })
}

/// What the devices of one (policy, own values) group are served.
struct Served {
    etag: String,
    audit_key: String,
    /// How [`OVERRIDDEN`] is served.
    overridable: ServedField,
}

/// The field-audit record of [`OVERRIDDEN`] after a report saying the device overrides it
/// (with `false`) or inherits it.
fn reported_record(
    device: DeviceId,
    served: &ServedField,
    overrides: bool,
    now: DateTime<Utc>,
) -> FieldRecord {
    let reported = ReportedRecord {
        state: if overrides {
            ReportedKind::Overridden
        } else {
            ReportedKind::Inherited
        },
        local_value: overrides.then_some(json!(false)),
        error: None,
        since: now,
    };
    FieldRecord {
        device_id: device,
        path: OVERRIDDEN.to_owned(),
        served: served.clone(),
        served_since: now,
        violation: is_violation(served, Some(&reported)),
        reported: Some(reported),
    }
}

/// The values of its own of device `index` (see [`SeedOptions::own_values_every`]).
fn own_values(index: u64, every: u64) -> BTreeMap<String, SettingValue> {
    if every == 0 || !index.is_multiple_of(every) {
        return BTreeMap::new();
    }
    let company = json!({"id": 7000 + index, "name": format!("Customer {index}")});
    let mut values = BTreeMap::from([(
        "ticketing.service_ticket_company".to_owned(),
        SettingValue::Plain(company),
    )]);
    if (index / every).is_multiple_of(2) {
        values.insert(OVERRIDDEN.to_owned(), SettingValue::Plain(json!(true)));
    }
    values
}

/// A registered device; a steady one was last served `etag` one interval ago, and its audit is
/// marked up to date with `audit_key` (no field-audit rows are written for it: a steady-state
/// pull does not read them).
fn device(
    tenant: TenantId,
    index: u64,
    policy_id: PolicyId,
    group: Group,
    (etag, audit_key): (&str, &str),
    interval_seconds: u32,
    now: DateTime<Utc>,
) -> Device {
    let steady = group == Group::Steady;
    let last_pull = steady.then(|| now - chrono::Duration::seconds(i64::from(interval_seconds)));
    Device {
        id: DeviceId::new(),
        tenant_id: tenant,
        kind: if index.is_multiple_of(2) {
            DeviceKind::Appliance
        } else {
            DeviceKind::Vault
        },
        hardware_id: format!("BENCH-{index:09}"),
        hostname: format!("bench-{index}.local"),
        software_version: "12.4.1".into(),
        policy_id,
        fingerprint_key: BASE64.encode(rand::random::<[u8; 32]>()),
        device_values: BTreeMap::new(),
        reassert: BTreeSet::new(),
        version: 1,
        lifecycle: Lifecycle::Active,
        registered_at: now,
        credential_rotated_at: now,
        last_seen_at: last_pull,
        last_pull_at: last_pull,
        next_pull_after: steady.then_some(now),
        served_hash: steady.then(|| etag.to_owned()),
        applied_hash: steady.then(|| etag.to_owned()),
        applied_at: last_pull,
        failed_hash: None,
        last_report_digest: None,
        audited_key: steady.then(|| audit_key.to_owned()),
        recorded_connectivity: if steady {
            Connectivity::Online
        } else {
            Connectivity::New
        },
    }
}

/// The application state over the database `config` names, migrated: what the server would
/// use, without its HTTP side.
pub async fn open(config: crate::config::Config) -> Result<AppState, String> {
    if config.database_url.is_none() {
        config.ensure_data_dir().map_err(|e| e.to_string())?;
    }
    let keys = config.load_keys().map_err(|e| e.to_string())?;
    let db = db::connect(&config.database_url(), config.database_max_connections)
        .await
        .map_err(|e| e.to_string())?;
    db::migrate(&db).await.map_err(|e| e.to_string())?;
    Ok(AppState::new(db, config, keys, crate::clock::Clock::system()))
}
