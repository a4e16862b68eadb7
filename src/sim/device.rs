//! One simulated device: register (or reuse saved credentials), then pull, apply and report
//! for the given number of rounds.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use super::state::{SavedDevice, SimState};
use super::{Counters, SimOptions};
use crate::domain::catalog::{Catalog, FieldType};
use crate::domain::device::secret_fingerprint;

/// Why a device stopped: `kind` groups errors in the summary (the step and the server's status
/// and problem code), `detail` is the whole story, printed once.
#[derive(Debug)]
pub struct DeviceError {
    pub kind: String,
    pub detail: String,
}

impl DeviceError {
    pub fn new(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    /// An answer the device did not expect: the kind names the step, the status and the
    /// problem `code` when the body is a problem document.
    async fn answer(step: &str, response: reqwest::Response) -> Self {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let problem: Option<Value> = serde_json::from_str(&body).ok();
        let code = problem.as_ref().and_then(|p| p["code"].as_str()).unwrap_or("");
        let detail = problem
            .as_ref()
            .and_then(|p| p["detail"].as_str())
            .map_or(body.clone(), str::to_owned);
        Self::new(
            format!("{step}: {} {code}", status.as_u16())
                .trim_end()
                .to_owned(),
            format!("{step}: the server answered {status}: {detail}"),
        )
    }

    fn transport(step: &str, error: &reqwest::Error) -> Self {
        Self::new(format!("{step}: no answer"), format!("{step}: {error}"))
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

type DeviceResult<T> = Result<T, DeviceError>;

pub fn hardware_id(options: &SimOptions, index: u32) -> String {
    format!("{}-{index:05}", options.hardware_prefix)
}

/// What every simulated device shares.
pub struct Fleet<'a> {
    pub client: &'a reqwest::Client,
    pub options: &'a SimOptions,
    pub counters: &'a Counters,
    pub saved: &'a Mutex<SimState>,
}

/// What the device learnt from its last pull.
enum Pulled {
    Config(Value, Option<String>),
    NotModified,
}

impl Fleet<'_> {
    pub async fn simulate(&self, index: u32, hardware_id: &str) -> DeviceResult<()> {
        let mut credential = match self.saved_credential(hardware_id) {
            Some(saved) => {
                Counters::add(&self.counters.reused_credentials, 1);
                saved
            }
            None => self.register(index, hardware_id).await?,
        };
        let fails = draw(self.options.seed, &[hardware_id, "fail"]) < self.options.fail_fraction;
        let mut etag: Option<String> = None;
        let mut reported_override = false;
        let mut registered_again = false;
        let mut round = 0;
        while round < self.options.rounds {
            let response = self.pull(&credential, etag.as_deref()).await?;
            let next_pull = response
                .headers()
                .get("x-gmp-next-pull-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok());
            let pulled = match response.status() {
                StatusCode::OK => {
                    let etag = header(&response, "etag");
                    let config = response
                        .json()
                        .await
                        .map_err(|e| DeviceError::transport("pull", &e))?;
                    Pulled::Config(config, etag)
                }
                StatusCode::NOT_MODIFIED => Pulled::NotModified,
                StatusCode::TOO_MANY_REQUESTS => {
                    Counters::add(&self.counters.pulls_429, 1);
                    let wait = header(&response, "retry-after")
                        .and_then(|v| v.parse::<u64>().ok())
                        .map_or(Duration::from_secs(1), Duration::from_secs);
                    self.wait("Retry-After", wait).await?;
                    continue;
                }
                // Credentials saved by an earlier run against a server that no longer knows
                // them (a new database, a decommissioned or rotated device): register afresh,
                // once.
                StatusCode::UNAUTHORIZED if round == 0 && !registered_again => {
                    eprintln!(
                        "gmp-device-sim: {hardware_id}: the saved credential was refused; registering again"
                    );
                    self.saved
                        .lock()
                        .expect("never poisoned")
                        .forget(&self.options.server, hardware_id);
                    registered_again = true;
                    credential = self.register(index, hardware_id).await?;
                    continue;
                }
                _ => return Err(DeviceError::answer("pull", response).await),
            };
            match pulled {
                Pulled::Config(config, new_etag) => {
                    Counters::add(&self.counters.pulls_200, 1);
                    etag = new_etag;
                    let (report, overrides) = apply(self.options, hardware_id, &config, fails)?;
                    Counters::add(&self.counters.overridden_fields, overrides);
                    if overrides > 0 && !reported_override {
                        reported_override = true;
                        Counters::add(&self.counters.overriding_devices, 1);
                    }
                    self.report(&credential, &report).await?;
                }
                Pulled::NotModified => Counters::add(&self.counters.pulls_304, 1),
            }
            round += 1;
            if round < self.options.rounds {
                let wait = match (self.options.interval, next_pull) {
                    (Some(interval), _) => interval,
                    (None, Some(at)) => (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                        .to_std()
                        .unwrap_or_default(),
                    (None, None) => Duration::from_secs(1),
                };
                self.wait("the server's next pull time", wait).await?;
            }
        }
        if fails {
            Counters::add(&self.counters.failing_devices, 1);
        }
        Ok(())
    }

    fn saved_credential(&self, hardware_id: &str) -> Option<String> {
        let state = self.saved.lock().expect("never poisoned");
        state.get(&self.options.server, hardware_id).map(|d| d.credential)
    }

    async fn register(&self, index: u32, hardware_id: &str) -> DeviceResult<String> {
        let options = self.options;
        let Some(token) = &options.enrollment_token else {
            return Err(DeviceError::new(
                "register: no enrollment token",
                "register: no saved credential and no --enrollment-token to register with",
            ));
        };
        let kind = match options.kind.as_str() {
            "mixed" if index % 2 == 1 => "vault",
            "mixed" => "appliance",
            other => other,
        };
        let response = self
            .client
            .post(format!("{}/device/v1/register", options.server))
            .json(&json!({
                "enrollment_token": token,
                "kind": kind,
                "hardware_id": hardware_id,
                "hostname": format!("{}.sim.local", hardware_id.to_lowercase()),
                "software_version": "sim-1.0",
            }))
            .send()
            .await
            .map_err(|e| DeviceError::transport("register", &e))?;
        if response.status() == StatusCode::ACCEPTED {
            // A hardware id the server already knows: its credential works only once an
            // operator approves, which a simulator cannot wait for.
            return Err(DeviceError::new(
                "register: 202 pending_approval",
                "register: the server already knows this hardware id and waits for an operator to \
                 approve the re-registration (keep the state file between runs, or use another \
                 --hardware-prefix)",
            ));
        }
        if !response.status().is_success() {
            return Err(DeviceError::answer("register", response).await);
        }
        let registration: Value = response
            .json()
            .await
            .map_err(|e| DeviceError::transport("register", &e))?;
        let (Some(device_id), Some(credential)) = (
            registration["device_id"].as_str(),
            registration["credential"].as_str(),
        ) else {
            return Err(DeviceError::new(
                "register: unexpected answer",
                format!("register: no device_id or credential in {registration}"),
            ));
        };
        let saved = SavedDevice {
            device_id: device_id.to_owned(),
            credential: credential.to_owned(),
        };
        self.saved
            .lock()
            .expect("never poisoned")
            .put(&options.server, hardware_id, saved);
        Counters::add(&self.counters.registered, 1);
        Ok(credential.to_owned())
    }

    async fn pull(&self, credential: &str, etag: Option<&str>) -> DeviceResult<reqwest::Response> {
        let mut request = self
            .client
            .get(format!("{}/device/v1/config", self.options.server))
            .bearer_auth(credential);
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        request
            .send()
            .await
            .map_err(|e| DeviceError::transport("pull", &e))
    }

    async fn report(&self, credential: &str, report: &Value) -> DeviceResult<()> {
        let response = self
            .client
            .post(format!("{}/device/v1/report", self.options.server))
            .bearer_auth(credential)
            .json(report)
            .send()
            .await
            .map_err(|e| DeviceError::transport("report", &e))?;
        if !response.status().is_success() {
            return Err(DeviceError::answer("report", response).await);
        }
        Counters::add(&self.counters.reports, 1);
        Ok(())
    }

    /// Waits, unless that is longer than the bound: then the device stops and says why.
    async fn wait(&self, why: &str, wait: Duration) -> DeviceResult<()> {
        if wait > self.options.max_wait {
            return Err(DeviceError::new(
                format!("wait: longer than --max-wait-s ({why})"),
                format!(
                    "stopped: {why} asks to wait {} s, more than --max-wait-s {} (pass a larger \
                     --max-wait-s, or shorten the tenant's pull interval)",
                    wait.as_secs(),
                    self.options.max_wait.as_secs()
                ),
            ));
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
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

/// "Applies" a config: decides per field whether this device inherits it, keeps a local value
/// instead, or fails it, and builds the report. Returns the report and the overrides in it.
fn apply(options: &SimOptions, hardware_id: &str, config: &Value, fails: bool) -> DeviceResult<(Value, u64)> {
    let unexpected = |what: &str| DeviceError::new("pull: unexpected config", format!("pull: {what}"));
    let catalog = Catalog::get();
    let settings = config["settings"]
        .as_object()
        .ok_or_else(|| unexpected("a config without settings"))?;
    let locked: Vec<&str> = config["locked"]
        .as_array()
        .map_or(Vec::new(), |l| l.iter().filter_map(Value::as_str).collect());
    let reassert: Vec<&str> = config["reassert"]
        .as_array()
        .map_or(Vec::new(), |l| l.iter().filter_map(Value::as_str).collect());
    let key = BASE64
        .decode(config["fingerprint_key"].as_str().unwrap_or_default())
        .map_err(|_| unexpected("a fingerprint_key that is not base64"))?;
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
