//! The load generator: a fixed number of connections drive distinct device credentials at a
//! server for a fixed time, and it reports throughput, latency, statuses and what the server
//! process spent in CPU and memory meanwhile.
//!
//! The server refuses a device pulling again within a sixteenth of its pull interval (`429`),
//! so a device is handed out again only `reuse_after` after its last use; when every device is
//! still resting a connection waits, and the report counts those waits (the device count, not
//! the server, then bounds the throughput).

use super::BenchDevice;
use super::process;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The device path every scenario pulls, on the real server and on the baseline.
pub const PULL_PATH: &str = "/device/v1/config";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Steady state with `If-None-Match` naming the current config: `304`.
    NotModified,
    /// Steady state without `If-None-Match`: the whole config, `200`.
    Full,
    /// Every never-pulled device's first pull at once, each device once: `200`.
    Herd,
}

impl Scenario {
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::NotModified => "304 pull",
            Scenario::Full => "200 pull",
            Scenario::Herd => "herd (first pulls)",
        }
    }

    const fn expected_status(self) -> u16 {
        match self {
            Scenario::NotModified => 304,
            Scenario::Full | Scenario::Herd => 200,
        }
    }
}

/// Devices handed out to the connections: round and round with a rest between two uses of the
/// same device, or each exactly once (the herd).
pub struct DevicePool {
    devices: Vec<BenchDevice>,
    /// Device index and the earliest moment it may be used again.
    queue: Mutex<VecDeque<(usize, Instant)>>,
    reuse_after: Option<Duration>,
}

impl DevicePool {
    /// Every device again and again, each resting `reuse_after` between two uses.
    pub fn cycling(devices: Vec<BenchDevice>, reuse_after: Duration) -> Self {
        Self::new(devices, Some(reuse_after))
    }

    /// Every device exactly once.
    pub fn once(devices: Vec<BenchDevice>) -> Self {
        Self::new(devices, None)
    }

    fn new(devices: Vec<BenchDevice>, reuse_after: Option<Duration>) -> Self {
        let now = Instant::now();
        let queue = (0..devices.len()).map(|i| (i, now)).collect();
        Self {
            devices,
            queue: Mutex::new(queue),
            reuse_after,
        }
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    fn take(&self) -> Option<(usize, Instant)> {
        self.queue.lock().expect("pool lock").pop_front()
    }

    fn give_back(&self, index: usize) {
        if let Some(rest) = self.reuse_after {
            let ready = Instant::now() + rest;
            self.queue.lock().expect("pool lock").push_back((index, ready));
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    pub connections: usize,
    /// The scenario stops after this long even if devices remain (the herd).
    pub duration: Duration,
    /// The server process whose CPU and memory are read (`/proc/<pid>`).
    pub server_pid: Option<u32>,
}

/// What one scenario measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub scenario: String,
    /// Devices the scenario could use.
    pub devices: usize,
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// `429` answers (a device pulled too soon), also in `statuses`.
    pub throttled: u64,
    /// Answers other than the expected status and `429`, plus requests that got no answer.
    pub errors: u64,
    pub transport_errors: u64,
    /// Times a connection waited because every free device was still resting.
    pub device_waits: u64,
    /// Size of the last body of the expected status.
    pub body_bytes: u64,
    /// Server CPU (user + system) per request, in microseconds.
    pub server_cpu_us_per_request: Option<f64>,
    pub server_rss_kib_before: Option<u64>,
    pub server_rss_kib_after: Option<u64>,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    device_waits: u64,
    body_bytes: u64,
}

pub fn http_client(connections: usize) -> reqwest::Client {
    crate::connectwise::client::install_crypto_provider();
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client builds")
}

/// Runs one scenario against `options.base_url` with devices from `pool`.
pub async fn run(scenario: Scenario, pool: Arc<DevicePool>, options: &LoadOptions) -> LoadReport {
    let client = http_client(options.connections);
    let url = format!("{}{PULL_PATH}", options.base_url.trim_end_matches('/'));
    let cpu_before = options.server_pid.and_then(process::cpu_time);
    let rss_before = options.server_pid.and_then(process::rss_kib);
    let started = Instant::now();
    let deadline = started + options.duration;
    let workers: Vec<_> = (0..options.connections.max(1))
        .map(|_| {
            let (client, url, pool) = (client.clone(), url.clone(), pool.clone());
            tokio::spawn(async move { connection(scenario, &client, &url, &pool, deadline).await })
        })
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        let part = worker.await.expect("a load connection does not panic");
        tally.latencies_us.extend(part.latencies_us);
        for (status, n) in part.statuses {
            *tally.statuses.entry(status).or_default() += n;
        }
        tally.transport_errors += part.transport_errors;
        tally.device_waits += part.device_waits;
        tally.body_bytes = tally.body_bytes.max(part.body_bytes);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = options.server_pid.and_then(process::cpu_time);
    let requests = tally.latencies_us.len() as u64;
    tally.latencies_us.sort_unstable();
    let expected = scenario.expected_status();
    let throttled = tally.statuses.get(&429).copied().unwrap_or(0);
    let unexpected: u64 = tally
        .statuses
        .iter()
        .filter(|(status, _)| **status != expected && **status != 429)
        .map(|(_, n)| n)
        .sum();
    LoadReport {
        scenario: scenario.name().to_owned(),
        devices: pool.len(),
        requests,
        seconds,
        requests_per_second: requests as f64 / seconds.max(f64::EPSILON),
        p50_ms: percentile_ms(&tally.latencies_us, 0.50),
        p99_ms: percentile_ms(&tally.latencies_us, 0.99),
        throttled,
        errors: unexpected + tally.transport_errors,
        transport_errors: tally.transport_errors,
        device_waits: tally.device_waits,
        body_bytes: tally.body_bytes,
        statuses: tally.statuses,
        server_cpu_us_per_request: match (cpu_before, cpu_after) {
            (Some(before), Some(after)) if requests > 0 => {
                Some((after - before).as_secs_f64() * 1e6 / requests as f64)
            }
            _ => None,
        },
        server_rss_kib_before: rss_before,
        server_rss_kib_after: options.server_pid.and_then(process::rss_kib),
    }
}

/// One connection's loop: take a device, pull, give it back, until the deadline or (herd) the
/// last device.
async fn connection(
    scenario: Scenario,
    client: &reqwest::Client,
    url: &str,
    pool: &DevicePool,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let Some((index, ready)) = pool.take() else {
            if pool.reuse_after.is_none() {
                break;
            }
            // Every device is in flight on another connection.
            tally.device_waits += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let now = Instant::now();
        if ready > now {
            tally.device_waits += 1;
            tokio::time::sleep(ready.min(deadline) - now).await;
            if Instant::now() >= deadline {
                break;
            }
        }
        let device = &pool.devices[index];
        let mut request = client.get(url).bearer_auth(&device.credential);
        if scenario == Scenario::NotModified {
            request = request.header("if-none-match", format!("\"{}\"", device.etag));
        }
        let sent = Instant::now();
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                response.bytes().await.map(|body| (status, body.len() as u64))
            }
            Err(error) => Err(error),
        };
        let elapsed = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        tally.latencies_us.push(elapsed);
        match outcome {
            Ok((status, bytes)) => {
                *tally.statuses.entry(status).or_default() += 1;
                if status == scenario.expected_status() {
                    tally.body_bytes = bytes;
                }
            }
            Err(_) => tally.transport_errors += 1,
        }
        pool.give_back(index);
    }
    tally
}

/// The `q` quantile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_us.len() as f64 * q).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&sorted, 0.50), 50.0);
        assert_eq!(percentile_ms(&sorted, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.99), 0.0);
    }

    #[test]
    fn a_cycling_pool_rests_each_device_and_a_once_pool_runs_dry() {
        let device = |c: &str| BenchDevice {
            credential: c.into(),
            etag: "e".into(),
            group: super::super::Group::Steady,
        };
        let pool = DevicePool::cycling(vec![device("a"), device("b")], Duration::from_secs(60));
        let (first, _) = pool.take().unwrap();
        pool.give_back(first);
        let (second, _) = pool.take().unwrap();
        assert_ne!(first, second);
        let (again, ready) = pool.take().unwrap();
        assert_eq!(again, first);
        assert!(ready > Instant::now() + Duration::from_secs(50));

        let once = DevicePool::once(vec![device("a")]);
        let (index, _) = once.take().unwrap();
        once.give_back(index);
        assert!(once.take().is_none());
    }
}
