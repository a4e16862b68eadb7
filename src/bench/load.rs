//! The load generator: a fixed number of connections drive distinct device credentials at a
//! server for a fixed time, as fast as answers come (closed loop) or at a fixed rate (open loop,
//! [`super::rate`]), and it reports throughput, latency, statuses and what the server process
//! (and PostgreSQL's) spent in CPU and memory meanwhile.
//!
//! The server refuses a device pulling again within a sixteenth of its pull interval (`429`),
//! so a device is handed out again only `reuse_after` after its last use; when every device is
//! still resting a request waits, and the report counts those waits (the device count, not
//! the server, then bounds the throughput).

use super::BenchDevice;
use super::process;
use super::rate::{InFlight, Schedule, latency_us};
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
    /// Connections, and so requests in flight, at most.
    pub connections: usize,
    /// The scenario stops after this long even if devices remain (the herd).
    pub duration: Duration,
    /// Requests per second on a fixed schedule (open loop, see [`super::rate`]); `None`: each
    /// connection sends its next request as soon as the previous one is answered (closed loop).
    pub rate: Option<f64>,
    /// The server process whose CPU and memory are read (`/proc/<pid>`).
    pub server_pid: Option<u32>,
    /// Also read the CPU of every PostgreSQL process (where the server's writes run).
    pub database_cpu: bool,
}

/// What one scenario measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub scenario: String,
    /// Devices the scenario could use.
    pub devices: usize,
    /// The fixed rate asked for (`None`: closed loop).
    pub target_rate: Option<f64>,
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    /// At a fixed rate, from the moment each request was due.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// At a fixed rate: requests due while every connection was busy.
    pub late_starts: u64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// `429` answers (a device pulled too soon), also in `statuses`.
    pub throttled: u64,
    /// Answers other than the expected status and `429`, plus requests that got no answer.
    pub errors: u64,
    pub transport_errors: u64,
    /// What the last request without an answer failed with (its whole chain of causes).
    pub transport_error: Option<String>,
    /// Times a request waited because every free device was still resting.
    pub device_waits: u64,
    /// Size of the last body of the expected status.
    pub body_bytes: u64,
    /// Server CPU (user + system) per request, in microseconds.
    pub server_cpu_us_per_request: Option<f64>,
    /// CPU of all PostgreSQL processes per request, in microseconds (with `database_cpu`).
    pub database_cpu_us_per_request: Option<f64>,
    pub server_rss_kib_before: Option<u64>,
    pub server_rss_kib_after: Option<u64>,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    transport_error: Option<String>,
    device_waits: u64,
    body_bytes: u64,
}

impl Tally {
    fn record(&mut self, scenario: Scenario, latency_us: u32, outcome: Result<(u16, u64), reqwest::Error>) {
        self.latencies_us.push(latency_us);
        match outcome {
            Ok((status, bytes)) => {
                *self.statuses.entry(status).or_default() += 1;
                if status == scenario.expected_status() {
                    self.body_bytes = bytes;
                }
            }
            Err(error) => {
                self.transport_errors += 1;
                self.transport_error = Some(causes(&error));
            }
        }
    }

    fn merge(&mut self, part: Tally) {
        self.latencies_us.extend(part.latencies_us);
        for (status, n) in part.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += part.transport_errors;
        self.transport_error = part.transport_error.or(self.transport_error.take());
        self.device_waits += part.device_waits;
        self.body_bytes = self.body_bytes.max(part.body_bytes);
    }
}

/// An error and its causes, `: `-separated (reqwest's own text names only the request).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub fn http_client(connections: usize) -> reqwest::Client {
    crate::connectwise::client::install_crypto_provider();
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        // Below the servers' keep-alive (actix's default, 5 s): at a fixed rate most pooled
        // connections sit idle, and one picked just as the server closes it for idleness fails
        // with "connection closed before message completed" (4 of 60,000 pulls in one run).
        .pool_idle_timeout(Duration::from_secs(4))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client builds")
}

/// CPU used so far by the server and (when asked) by PostgreSQL.
struct Costs {
    server: Option<Duration>,
    database: Option<Duration>,
}

impl Costs {
    fn read(options: &LoadOptions) -> Self {
        Self {
            server: options.server_pid.and_then(process::cpu_time),
            database: options
                .database_cpu
                .then(|| process::cpu_time_of_named(process::POSTGRES))
                .flatten(),
        }
    }
}

fn per_request(before: Option<Duration>, after: Option<Duration>, requests: u64) -> Option<f64> {
    match (before, after) {
        (Some(before), Some(after)) if requests > 0 => {
            Some(after.saturating_sub(before).as_secs_f64() * 1e6 / requests as f64)
        }
        _ => None,
    }
}

/// Runs one scenario against `options.base_url` with devices from `pool`.
pub async fn run(scenario: Scenario, pool: Arc<DevicePool>, options: &LoadOptions) -> LoadReport {
    let client = http_client(options.connections);
    let url = format!("{}{PULL_PATH}", options.base_url.trim_end_matches('/'));
    let costs_before = Costs::read(options);
    let rss_before = options.server_pid.and_then(process::rss_kib);
    let started = Instant::now();
    let (tally, late_starts, seconds) = match options.rate {
        Some(rate) => at_rate(scenario, &client, &url, &pool, options, rate).await,
        None => {
            let tally = closed_loop(scenario, &client, &url, &pool, options).await;
            (tally, 0, started.elapsed().as_secs_f64())
        }
    };
    let costs_after = Costs::read(options);
    let mut tally = tally;
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
        target_rate: options.rate,
        requests,
        seconds,
        requests_per_second: requests as f64 / seconds.max(f64::EPSILON),
        p50_ms: percentile_ms(&tally.latencies_us, 0.50),
        p99_ms: percentile_ms(&tally.latencies_us, 0.99),
        max_ms: percentile_ms(&tally.latencies_us, 1.0),
        late_starts,
        throttled,
        errors: unexpected + tally.transport_errors,
        transport_errors: tally.transport_errors,
        transport_error: tally.transport_error,
        device_waits: tally.device_waits,
        body_bytes: tally.body_bytes,
        statuses: tally.statuses,
        server_cpu_us_per_request: per_request(costs_before.server, costs_after.server, requests),
        database_cpu_us_per_request: per_request(costs_before.database, costs_after.database, requests),
        server_rss_kib_before: rss_before,
        server_rss_kib_after: options.server_pid.and_then(process::rss_kib),
    }
}

/// One pull of `device`: its status and body size, or no answer.
async fn pull(
    scenario: Scenario,
    client: &reqwest::Client,
    url: &str,
    device: &BenchDevice,
) -> Result<(u16, u64), reqwest::Error> {
    let mut request = client.get(url).bearer_auth(&device.credential);
    if scenario == Scenario::NotModified {
        request = request.header("if-none-match", format!("\"{}\"", device.etag));
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    Ok((status, body.len() as u64))
}

/// Closed loop: every connection pulls, waits for the answer, pulls again.
async fn closed_loop(
    scenario: Scenario,
    client: &reqwest::Client,
    url: &str,
    pool: &Arc<DevicePool>,
    options: &LoadOptions,
) -> Tally {
    let deadline = Instant::now() + options.duration;
    let workers: Vec<_> = (0..options.connections.max(1))
        .map(|_| {
            let (client, url, pool) = (client.clone(), url.to_owned(), pool.clone());
            tokio::spawn(async move { connection(scenario, &client, &url, &pool, deadline).await })
        })
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(worker.await.expect("a load connection does not panic"));
    }
    tally
}

/// Open loop: requests sent on [`Schedule`], each measured from its due time. The schedule runs
/// on a thread of its own (`std::thread::sleep` keeps to tens of microseconds, tokio's timer to
/// a millisecond), which hands each request to the runtime. Returns the tally, the late starts
/// and the seconds from the start to the last request sent (at least the schedule's span).
async fn at_rate(
    scenario: Scenario,
    client: &reqwest::Client,
    url: &str,
    pool: &Arc<DevicePool>,
    options: &LoadOptions,
    rate: f64,
) -> (Tally, u64, f64) {
    let start = Instant::now();
    let limit = pool.reuse_after.is_none().then_some(pool.len() as u64);
    let schedule = Schedule::new(start, rate, options.duration, limit);
    let in_flight = Arc::new(InFlight::new(options.connections));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let runtime = tokio::runtime::Handle::current();
    let dispatch = {
        let (client, url, pool) = (client.clone(), url.to_owned(), pool.clone());
        let (in_flight, tally) = (in_flight.clone(), tally.clone());
        tokio::task::spawn_blocking(move || {
            for i in 0..schedule.len() {
                let due = schedule.due(i);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let Some((index, ready)) = next_device(&pool, &tally) else {
                    break;
                };
                if ready > Instant::now() {
                    // Too few devices for the rate: the request starts late, and says so.
                    tally.lock().expect("tally lock").device_waits += 1;
                    std::thread::sleep(ready.saturating_duration_since(Instant::now()));
                }
                let permit = runtime.block_on(in_flight.slot());
                let (client, url, pool, tally) = (client.clone(), url.clone(), pool.clone(), tally.clone());
                runtime.spawn(async move {
                    let outcome = pull(scenario, &client, &url, &pool.devices[index]).await;
                    let latency = latency_us(due, Instant::now());
                    tally
                        .lock()
                        .expect("tally lock")
                        .record(scenario, latency, outcome);
                    pool.give_back(index);
                    drop(permit);
                });
            }
            Instant::now()
        })
    };
    let last_sent = dispatch.await.expect("the dispatcher does not panic");
    in_flight.drain().await;
    let seconds = last_sent.duration_since(start).max(schedule.span()).as_secs_f64();
    let tally = std::mem::take(&mut *tally.lock().expect("tally lock"));
    (tally, in_flight.late_starts(), seconds)
}

/// The next device for the dispatcher: `None` when a once-only pool has run dry; a cycling
/// pool whose devices are all in flight is waited for (a device wait).
fn next_device(pool: &DevicePool, tally: &Mutex<Tally>) -> Option<(usize, Instant)> {
    loop {
        if let Some(next) = pool.take() {
            return Some(next);
        }
        pool.reuse_after?;
        tally.lock().expect("tally lock").device_waits += 1;
        std::thread::sleep(Duration::from_millis(1));
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
        let sent = Instant::now();
        let outcome = pull(scenario, client, url, &pool.devices[index]).await;
        tally.record(scenario, latency_us(sent, Instant::now()), outcome);
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
