//! A device simulator: registers a fleet against a GMP server and runs the device protocol as
//! firmware would — pull with `If-None-Match`, honour `304` and `Retry-After`, apply, override
//! some fields locally, fail some, and report. Used by the end-to-end tests and benchmarks, and
//! by vendors to see the protocol work.
//!
//! It is meant to be run by a person at a terminal, so it never goes quiet: progress goes to
//! stderr while it runs, every error is printed the moment it happens (and counted by kind in
//! the summary), and no wait is longer than `max_wait`.

mod device;
mod state;

pub use state::SimState;

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the simulated fleet behaves.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// Needed for devices without saved credentials.
    pub enrollment_token: Option<String>,
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
    /// Longest wait of any kind (a `Retry-After`, or the server's next pull time): a device told
    /// to wait longer stops with an error saying so, instead of hanging.
    pub max_wait: Duration,
    /// Where the devices' credentials are kept between runs, so a second run pulls as the same
    /// devices instead of registering them again.
    pub state_file: Option<PathBuf>,
    /// Print a progress line to stderr this often; `None` prints none (errors are always printed).
    pub progress: Option<Duration>,
}

/// What happened, in numbers.
#[derive(Debug, Default, Serialize, Clone, PartialEq, Eq)]
pub struct SimSummary {
    pub registered: u64,
    /// Devices that used credentials saved by an earlier run instead of registering.
    pub reused_credentials: u64,
    pub pulls_200: u64,
    pub pulls_304: u64,
    pub pulls_429: u64,
    pub reports: u64,
    pub overridden_fields: u64,
    /// Devices that reported at least one override.
    pub overriding_devices: u64,
    pub failing_devices: u64,
    /// Devices that stopped on an error.
    pub errors: u64,
    /// The errors by kind (the step and what the server answered), e.g.
    /// `"register: 401 invalid_enrollment_token": 3`; each one was also printed when it happened.
    pub error_kinds: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Counters {
    registered: AtomicU64,
    reused_credentials: AtomicU64,
    pulls_200: AtomicU64,
    pulls_304: AtomicU64,
    pulls_429: AtomicU64,
    reports: AtomicU64,
    overridden_fields: AtomicU64,
    overriding_devices: AtomicU64,
    failing_devices: AtomicU64,
    error_kinds: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn error(&self, hardware_id: &str, error: &device::DeviceError) {
        eprintln!("gmp-device-sim: {hardware_id}: {error}");
        *self
            .error_kinds
            .lock()
            .expect("the error table is never poisoned")
            .entry(error.kind.clone())
            .or_default() += 1;
    }

    fn summary(&self) -> SimSummary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let error_kinds = self.error_kinds.lock().expect("never poisoned").clone();
        SimSummary {
            registered: get(&self.registered),
            reused_credentials: get(&self.reused_credentials),
            pulls_200: get(&self.pulls_200),
            pulls_304: get(&self.pulls_304),
            pulls_429: get(&self.pulls_429),
            reports: get(&self.reports),
            overridden_fields: get(&self.overridden_fields),
            overriding_devices: get(&self.overriding_devices),
            failing_devices: get(&self.failing_devices),
            errors: error_kinds.values().sum(),
            error_kinds,
        }
    }

    fn progress_line(&self, devices: u32, elapsed: Duration) -> String {
        let s = self.summary();
        format!(
            "gmp-device-sim: {:>5.1}s  devices {}/{} ready · pulls 200:{} 304:{} 429:{} · reports {} · errors {}",
            elapsed.as_secs_f64(),
            s.registered + s.reused_credentials,
            devices,
            s.pulls_200,
            s.pulls_304,
            s.pulls_429,
            s.reports,
            s.errors,
        )
    }
}

/// Runs the fleet to the end and returns what happened. The state file, when given, is read
/// before and written after (also when devices failed, so registrations are never lost).
pub async fn run(options: SimOptions) -> Result<SimSummary, String> {
    crate::connectwise::client::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("the HTTP client: {e}"))?;
    let state = match &options.state_file {
        Some(path) => SimState::load(path)?,
        None => SimState::default(),
    };
    let saved = Arc::new(Mutex::new(state));
    let counters = Arc::new(Counters::default());
    let options = Arc::new(options);
    let started = Instant::now();
    let progress = options.progress.map(|every| {
        let (counters, devices) = (counters.clone(), options.devices);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                eprintln!("{}", counters.progress_line(devices, started.elapsed()));
            }
        })
    });
    let tasks: Vec<_> = (0..options.devices)
        .map(|index| {
            let (client, counters, options, saved) =
                (client.clone(), counters.clone(), options.clone(), saved.clone());
            tokio::spawn(async move {
                let hardware_id = device::hardware_id(&options, index);
                let fleet = device::Fleet {
                    client: &client,
                    options: &options,
                    counters: &counters,
                    saved: &saved,
                };
                if let Err(error) = fleet.simulate(index, &hardware_id).await {
                    counters.error(&hardware_id, &error);
                }
            })
        })
        .collect();
    for task in tasks {
        if let Err(panic) = task.await {
            counters.error("?", &device::DeviceError::new("simulator", panic.to_string()));
        }
    }
    if let Some(progress) = progress {
        progress.abort();
        eprintln!("{}", counters.progress_line(options.devices, started.elapsed()));
    }
    if let Some(path) = &options.state_file {
        let state = saved.lock().expect("never poisoned");
        state.save(path)?;
    }
    Ok(counters.summary())
}
