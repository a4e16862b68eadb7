//! A device simulator: registers a fleet against a GMP server and runs the device protocol as
//! firmware would — pull with `If-None-Match`, honour `304` and `Retry-After`, apply, override
//! some fields locally, fail some, and report. Used by the end-to-end tests and benchmarks, and
//! by vendors to see the protocol work.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::catalog::{Catalog, FieldType};
use crate::domain::device::secret_fingerprint;

/// How the simulated fleet behaves.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    pub enrollment_token: String,
    pub devices: u32,
    /// `appliance`, `vault`, or `mixed` (alternating).
    pub kind: String,
    /// Pull-apply-report cycles per device.
    pub rounds: u32,
    /// Wait between pulls; `None` follows the server's `next_pull_after`.
    pub interval: Option<Duration>,
    /// Share of (device, field) pairs a device overrides locally, 0–1.
    pub override_fraction: f64,
    /// Share of devices failing to apply one field, 0–1.
    pub fail_fraction: f64,
    /// Makes the choice of overrides and failures repeatable.
    pub seed: u64,
    pub hardware_prefix: String,
    /// Longest `Retry-After` honoured before giving up on a device.
    pub max_retry_wait: Duration,
}

/// What happened, in numbers.
#[derive(Debug, Default, Serialize, Clone, PartialEq, Eq)]
pub struct SimSummary {
    pub registered: u64,
    pub pulls_200: u64,
    pub pulls_304: u64,
    pub pulls_429: u64,
    pub reports: u64,
    pub overridden_fields: u64,
    /// Devices that reported at least one override.
    pub overriding_devices: u64,
    pub failing_devices: u64,
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    registered: AtomicU64,
    pulls_200: AtomicU64,
    pulls_304: AtomicU64,
    pulls_429: AtomicU64,
    reports: AtomicU64,
    overridden_fields: AtomicU64,
    overriding_devices: AtomicU64,
    failing_devices: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn summary(&self) -> SimSummary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimSummary {
            registered: get(&self.registered),
            pulls_200: get(&self.pulls_200),
            pulls_304: get(&self.pulls_304),
            pulls_429: get(&self.pulls_429),
            reports: get(&self.reports),
            overridden_fields: get(&self.overridden_fields),
            overriding_devices: get(&self.overriding_devices),
            failing_devices: get(&self.failing_devices),
            errors: get(&self.errors),
        }
    }
}

/// A number in [0, 1) fixed by the seed and the words: the same device keeps the same choices.
fn draw(seed: u64, words: &[&str]) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_be_bytes());
    for word in words {
        hasher.update(word.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) as f64 / u64::MAX as f64
}

/// Runs the fleet to the end and returns what happened.
pub async fn run(options: SimOptions) -> SimSummary {
    crate::connectwise::client::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client builds");
    let counters = Arc::new(Counters::default());
    let options = Arc::new(options);
    let tasks: Vec<_> = (0..options.devices)
        .map(|index| {
            let (client, counters, options) = (client.clone(), counters.clone(), options.clone());
            tokio::spawn(async move {
                if let Err(error) = simulate(&client, &options, &counters, index).await {
                    tracing::warn!(index, %error, "simulated device stopped");
                    Counters::add(&counters.errors, 1);
                }
            })
        })
        .collect();
    for task in tasks {
        if task.await.is_err() {
            Counters::add(&counters.errors, 1);
        }
    }
    counters.summary()
}

type SimResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn simulate(
    client: &reqwest::Client,
    options: &SimOptions,
    counters: &Counters,
    index: u32,
) -> SimResult<()> {
    let kind = match options.kind.as_str() {
        "mixed" if index % 2 == 1 => "vault",
        "mixed" => "appliance",
        other => other,
    };
    let hardware_id = format!("{}-{index:05}", options.hardware_prefix);
    let registered = client
        .post(format!("{}/device/v1/register", options.server))
        .json(&json!({
            "enrollment_token": options.enrollment_token,
            "kind": kind,
            "hardware_id": hardware_id,
            "hostname": format!("{}.sim.local", hardware_id.to_lowercase()),
            "software_version": "sim-1.0",
        }))
        .send()
        .await?;
    if !registered.status().is_success() {
        return Err(format!("register: {} {}", registered.status(), registered.text().await?).into());
    }
    let registration: Value = registered.json().await?;
    let credential = registration["credential"]
        .as_str()
        .ok_or("no credential")?
        .to_owned();
    Counters::add(&counters.registered, 1);

    let fails = draw(options.seed, &[&hardware_id, "fail"]) < options.fail_fraction;
    let mut etag: Option<String> = None;
    let mut reported_override = false;
    let mut round = 0;
    while round < options.rounds {
        let mut request = client
            .get(format!("{}/device/v1/config", options.server))
            .bearer_auth(&credential);
        if let Some(etag) = &etag {
            request = request.header("if-none-match", etag);
        }
        let response = request.send().await?;
        let next_pull = response
            .headers()
            .get("x-gmp-next-pull-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok());
        match response.status() {
            StatusCode::OK => {
                Counters::add(&counters.pulls_200, 1);
                etag = response
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let config: Value = response.json().await?;
                let (report, overrides) = apply(options, &hardware_id, &config, fails)?;
                Counters::add(&counters.overridden_fields, overrides);
                if overrides > 0 && !reported_override {
                    reported_override = true;
                    Counters::add(&counters.overriding_devices, 1);
                }
                let sent = client
                    .post(format!("{}/device/v1/report", options.server))
                    .bearer_auth(&credential)
                    .json(&report)
                    .send()
                    .await?;
                if !sent.status().is_success() {
                    return Err(format!("report: {} {}", sent.status(), sent.text().await?).into());
                }
                Counters::add(&counters.reports, 1);
            }
            StatusCode::NOT_MODIFIED => Counters::add(&counters.pulls_304, 1),
            StatusCode::TOO_MANY_REQUESTS => {
                Counters::add(&counters.pulls_429, 1);
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs);
                if wait > options.max_retry_wait {
                    return Err(format!("told to wait {wait:?}, more than allowed").into());
                }
                tokio::time::sleep(wait).await;
                continue;
            }
            other => return Err(format!("pull: {other} {}", response.text().await?).into()),
        }
        round += 1;
        if round < options.rounds {
            let wait = match (options.interval, next_pull) {
                (Some(interval), _) => interval,
                (None, Some(at)) => (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default(),
                (None, None) => Duration::from_secs(1),
            };
            tokio::time::sleep(wait).await;
        }
    }
    if fails {
        Counters::add(&counters.failing_devices, 1);
    }
    Ok(())
}

/// "Applies" a config: decides per field whether this device inherits it, keeps a local value
/// instead, or fails it, and builds the report. Returns the report and the overrides in it.
fn apply(options: &SimOptions, hardware_id: &str, config: &Value, fails: bool) -> SimResult<(Value, u64)> {
    let catalog = Catalog::get();
    let settings = config["settings"].as_object().ok_or("config without settings")?;
    let locked: Vec<&str> = config["locked"]
        .as_array()
        .map_or(Vec::new(), |l| l.iter().filter_map(Value::as_str).collect());
    let reassert: Vec<&str> = config["reassert"]
        .as_array()
        .map_or(Vec::new(), |l| l.iter().filter_map(Value::as_str).collect());
    let key = BASE64.decode(config["fingerprint_key"].as_str().unwrap_or_default())?;
    let mut fields = Map::new();
    let mut overrides = 0;
    let mut failed_one = false;
    for path in settings.keys() {
        let Some(def) = catalog.field(path) else { continue };
        let overridable = !locked.contains(&path.as_str()) && !reassert.contains(&path.as_str());
        let state = if fails && !failed_one {
            failed_one = true;
            json!({"state": "failed", "error": "simulated failure"})
        } else if overridable && draw(options.seed, &[hardware_id, path]) < options.override_fraction {
            overrides += 1;
            if def.secret {
                json!({"state": "overridden", "fingerprint": secret_fingerprint(&key, "sim-local-secret")})
            } else {
                json!({"state": "overridden", "value": local_value(def.field_type, hardware_id)})
            }
        } else {
            json!({"state": "inherited"})
        };
        fields.insert(path.clone(), state);
    }
    let report =
        json!({"config_hash": config["config_hash"], "software_version": "sim-1.0", "fields": fields});
    Ok((report, overrides))
}

fn local_value(field_type: FieldType, hardware_id: &str) -> Value {
    match field_type {
        FieldType::Bool => Value::Bool(false),
        FieldType::Site => Value::from("local.sim.example"),
        FieldType::Text { .. } => Value::from("simlocal"),
        FieldType::Reference(_) => json!({"id": 9999, "name": format!("Local {hardware_id}")}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_repeatable_and_spread() {
        assert_eq!(draw(7, &["a", "b"]), draw(7, &["a", "b"]));
        assert_ne!(draw(7, &["a", "b"]), draw(8, &["a", "b"]));
        let below = (0..1000).filter(|i| draw(1, &[&i.to_string()]) < 0.25).count();
        assert!((200..300).contains(&below), "{below}");
    }
}
