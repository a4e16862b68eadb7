//! `gmp-bench all`: the whole benchmark in one command, on SQLite and PostgreSQL — seed, start
//! the real server (`gmp serve`) and the baseline as processes of their own, run the scenarios
//! against both, measure onboarding, and print one table.

use super::load::{self, DevicePool, LoadOptions, LoadReport, Scenario};
use super::onboard::{self, OnboardOptions, OnboardReport};
use super::seed::{self, SeedOptions};
use super::{Group, of_group, process, write_credentials};
use crate::config::Config;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sea_orm::{ConnectionTrait, Database};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN_EMAIL: &str = "bench-platform@bench.test";
/// Longest wait for a started process to answer.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the servers under test come from and on which engines they run.
#[derive(Debug, Clone)]
pub struct Servers {
    /// The server binary (`target/release/gmp`).
    pub gmp_bin: PathBuf,
    /// Data directories, credentials, logs and reports go here (emptied per engine).
    pub work_dir: PathBuf,
    /// `postgres://…` of a server where a scratch database may be created and dropped.
    pub postgres_url: Option<String>,
    pub skip_sqlite: bool,
    /// HTTP worker threads of the servers (`None`: one per core).
    pub workers: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub servers: Servers,
    /// This binary, started again as `gmp-bench baseline`.
    pub bench_bin: PathBuf,
    pub seed: SeedOptions,
    pub connections: usize,
    pub duration: Duration,
    /// Pulls per second of the `304` and `200` scenarios (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    pub onboard_devices: u32,
    pub onboard_clients: usize,
    pub onboard_time_limit: Duration,
}

/// One engine's results.
#[derive(Debug, Serialize)]
pub struct EngineReport {
    pub engine: String,
    pub devices: u64,
    pub seed_seconds: f64,
    pub body_bytes: usize,
    pub server_rss_kib_idle: Option<u64>,
    pub server_rss_kib_after: Option<u64>,
    /// Seconds waited for the server to be quiet before each scenario, in their order, then
    /// before onboarding.
    pub quiet_waits_seconds: Vec<f64>,
    /// (gmp, baseline) per scenario.
    pub scenarios: Vec<(LoadReport, LoadReport)>,
    pub onboarding: Option<OnboardReport>,
}

/// A child process killed when dropped, so an error never leaves a server running.
pub(super) struct Spawned(pub(super) Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `command` with its output in `log` and waits until `url` answers `200`.
pub(super) async fn start(mut command: Command, log: &Path, url: &str) -> Result<Spawned, String> {
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let mut spawned = Spawned(child);
    let client = load::http_client(1);
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Ok(Some(status)) = spawned.0.try_wait() {
            return Err(format!("{command:?} exited ({status}); see {}", log.display()));
        }
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return Ok(spawned);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "{url} did not answer within {START_TIMEOUT:?}; see {}",
        log.display()
    ))
}

/// Empties `dir` (from an earlier run) and creates its `data` directory.
pub(super) fn fresh_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())
}

/// Starts `gmp serve` from `gmp_bin` with exactly the settings `env` (none inherited), logging
/// to `<dir>/server.log`, and waits until it is ready; returns it and its base URL.
pub(super) async fn serve(
    gmp_bin: &Path,
    dir: &Path,
    env: &[(String, String)],
    port: u16,
) -> Result<(Spawned, String), String> {
    let mut server = Command::new(gmp_bin);
    server.arg("serve");
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("GMP_")) {
        server.env_remove(key);
    }
    server.envs(env.iter().map(|(k, v)| (k, v)));
    let base = format!("http://127.0.0.1:{port}");
    let server = start(server, &dir.join("server.log"), &format!("{base}/readyz")).await?;
    Ok((server, base))
}

/// The `GMP_*` settings of the server under test.
pub(super) fn server_env(
    dir: &Path,
    database_url: &str,
    port: u16,
    workers: Option<usize>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("GMP_BIND".to_owned(), format!("127.0.0.1:{port}")),
        ("GMP_DATA_DIR".to_owned(), dir.join("data").display().to_string()),
        ("GMP_DATABASE_URL".to_owned(), database_url.to_owned()),
        (
            "GMP_JWT_SECRET".to_owned(),
            BASE64.encode(rand::random::<[u8; 48]>()),
        ),
        (
            "GMP_MASTER_KEY".to_owned(),
            BASE64.encode(rand::random::<[u8; 32]>()),
        ),
        ("GMP_BOOTSTRAP_ADMIN_EMAIL".to_owned(), ADMIN_EMAIL.to_owned()),
        (
            "GMP_BOOTSTRAP_ADMIN_PASSWORD".to_owned(),
            crate::auth::token::generate("bench-"),
        ),
        ("GMP_LOG_LEVEL".to_owned(), "warn".to_owned()),
    ];
    if let Some(workers) = workers {
        env.push(("GMP_WORKERS".to_owned(), workers.to_string()));
    }
    env
}

/// A scratch PostgreSQL database, dropped by `drop_database`.
async fn create_database(server_url: &str) -> Result<(String, String), String> {
    let name = format!("gmp_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(server_url).await.map_err(|e| e.to_string())?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .map_err(|e| e.to_string())?;
    admin.close().await.ok();
    let (base, query) = server_url
        .split_once('?')
        .map_or((server_url, None), |(b, q)| (b, Some(q)));
    let host_end = base.find("://").map_or(0, |i| i + 3);
    let host = match base[host_end..].find('/') {
        Some(slash) => &base[..host_end + slash],
        None => base,
    };
    let url = match query {
        Some(query) => format!("{host}/{name}?{query}"),
        None => format!("{host}/{name}"),
    };
    Ok((url, name))
}

async fn drop_database(server_url: &str, name: &str) {
    if let Ok(admin) = Database::connect(server_url).await {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
        admin.close().await.ok();
    }
}

/// Runs `each` with `(engine, directory, database URL)` on SQLite unless `skip_sqlite`, then on
/// a scratch PostgreSQL database on `postgres_url` (dropped afterwards), each in its own
/// directory `<work_dir>/<prefix>sqlite|postgres`.
pub(super) async fn on_engines<T>(
    servers: &Servers,
    prefix: &str,
    mut each: impl AsyncFnMut(&str, &Path, &str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let work_dir = &servers.work_dir;
    let mut reports = Vec::new();
    if !servers.skip_sqlite {
        let dir = work_dir.join(format!("{prefix}sqlite"));
        let url = format!("sqlite://{}?mode=rwc", dir.join("data").join("gmp.db").display());
        reports.push(each("SQLite", &dir, &url).await?);
    }
    if let Some(server_url) = servers.postgres_url.as_deref() {
        let (url, name) = create_database(server_url).await?;
        let dir = work_dir.join(format!("{prefix}postgres"));
        let outcome = each("PostgreSQL", &dir, &url).await;
        drop_database(server_url, &name).await;
        reports.push(outcome?);
    }
    Ok(reports)
}

/// Runs the benchmark on every engine asked for and returns the printed table.
pub async fn run(options: &RunOptions) -> Result<(Vec<EngineReport>, String), String> {
    let reports = on_engines(&options.servers, "", async |engine, dir, url| {
        run_engine(options, engine, dir, url).await
    })
    .await?;
    let json = serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?;
    std::fs::write(options.servers.work_dir.join("report.json"), json).map_err(|e| e.to_string())?;
    let printed = table(&reports);
    Ok((reports, printed))
}

async fn run_engine(
    options: &RunOptions,
    engine: &str,
    dir: &Path,
    database_url: &str,
) -> Result<EngineReport, String> {
    fresh_dir(dir)?;
    let port = free_port().map_err(|e| e.to_string())?;
    let env = server_env(dir, database_url, port, options.servers.workers);
    let password = env
        .iter()
        .find(|(k, _)| k == "GMP_BOOTSTRAP_ADMIN_PASSWORD")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();

    eprintln!(
        "[{engine}] seeding {} + {} devices",
        options.seed.steady, options.seed.new
    );
    let config = Config::load(None, env.clone()).map_err(|e| e.to_string())?;
    let state = seed::open(config).await?;
    let seeded = seed::seed(&state, &options.seed)
        .await
        .map_err(|e| seed::describe(&e))?;
    state.db.close().await.ok();
    let credentials = dir.join("credentials.tsv");
    write_credentials(&credentials, &seeded.devices).map_err(|e| e.to_string())?;
    eprintln!("[{engine}] seeded in {:.1} s", seeded.elapsed.as_secs_f64());

    let (server, base) = serve(&options.servers.gmp_bin, dir, &env, port).await?;
    let server_pid = server.0.id();

    // One steady device shows the real body size, then sits out (it would pull too soon).
    let mut steady = of_group(&seeded.devices, Group::Steady);
    let probe = steady.pop().ok_or("seed at least one steady device")?;
    let body = load::http_client(1)
        .get(format!("{base}{}", load::PULL_PATH))
        .bearer_auth(&probe.credential)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    let rss_idle = process::rss_kib(server_pid);

    let baseline_port = free_port().map_err(|e| e.to_string())?;
    let mut baseline = Command::new(&options.bench_bin);
    baseline
        .args(["baseline", "--credentials"])
        .arg(&credentials)
        .args([
            "--body-bytes",
            &body.len().to_string(),
            "--bind",
            &format!("127.0.0.1:{baseline_port}"),
        ]);
    if let Some(workers) = options.servers.workers {
        baseline.args(["--workers", &workers.to_string()]);
    }
    let baseline_base = format!("http://127.0.0.1:{baseline_port}");
    let baseline = start(
        baseline,
        &dir.join("baseline.log"),
        &format!("{baseline_base}/healthz"),
    )
    .await?;

    let new = of_group(&seeded.devices, Group::New);
    let interval = options.seed.pull_interval_seconds;
    // A device pulls again only after interval/16 (the server's floor) plus a margin.
    let rest = Duration::from_millis(u64::from((interval / 16).max(1)) * 1000 + 500);

    // The steady state is that of a replica that has served every device before: two unmeasured
    // pulls per steady device, a rest apart. The first reads each device from the database and
    // keeps it in the device directory (a seeded device's audit is already up to date, so it
    // writes only its check-in); the second is answered from the directory.
    for pass in 1..=2 {
        eprintln!("[{engine}] warm-up pass {pass}: one pull per steady device");
        let warm = LoadOptions {
            base_url: base.clone(),
            connections: options.connections,
            duration: Duration::from_secs(300),
            rate: None,
            server_pid: None,
            database_cpu: false,
        };
        load::run(Scenario::Full, Arc::new(DevicePool::once(steady.clone())), &warm).await;
        tokio::time::sleep(rest).await;
    }
    let real_pool = Arc::new(DevicePool::cycling(steady.clone(), rest));
    let baseline_pool = Arc::new(DevicePool::cycling(steady, Duration::ZERO));
    let postgres = database_url.starts_with("postgres");
    let target = |base: &str, pid: u32, scenario: Scenario| LoadOptions {
        base_url: base.to_owned(),
        connections: options.connections,
        duration: options.duration,
        rate: options.rate.filter(|_| scenario != Scenario::Herd),
        server_pid: Some(pid),
        database_cpu: postgres,
    };
    let mut scenarios = Vec::new();
    let mut quiet_waits = Vec::new();
    for scenario in [Scenario::NotModified, Scenario::Full, Scenario::Herd] {
        let (real, base_pool) = match scenario {
            Scenario::Herd => (
                Arc::new(DevicePool::once(new.clone())),
                Arc::new(DevicePool::once(new.clone())),
            ),
            _ => (real_pool.clone(), baseline_pool.clone()),
        };
        if real.is_empty() {
            continue;
        }
        // Background writes (the served audit the warm-up queued, the check-ins of the
        // previous scenario) would otherwise overlap the measurement.
        quiet_waits.push(process::until_quiet(engine, server_pid).await);
        eprintln!("[{engine}] {} ({} devices)", scenario.name(), real.len());
        let gmp = load::run(scenario, real, &target(&base, server_pid, scenario)).await;
        let mut floor_options = target(&baseline_base, baseline.0.id(), scenario);
        floor_options.database_cpu = false;
        let floor = load::run(scenario, base_pool, &floor_options).await;
        scenarios.push((gmp, floor));
    }
    let rss_after = process::rss_kib(server_pid);
    let onboarding = if options.onboard_devices > 0 {
        // The herd's served audit (about 160 rows per first pull) is still being written.
        quiet_waits.push(process::until_quiet(engine, server_pid).await);
        eprintln!("[{engine}] onboarding {} devices", options.onboard_devices);
        Some(
            onboard::run(&OnboardOptions {
                base_url: base.clone(),
                admin_email: ADMIN_EMAIL.to_owned(),
                admin_password: password,
                devices: options.onboard_devices,
                clients: options.onboard_clients,
                time_limit: options.onboard_time_limit,
            })
            .await?,
        )
    } else {
        None
    };
    drop(baseline);
    drop(server);
    Ok(EngineReport {
        engine: engine.to_owned(),
        devices: seeded.devices.len() as u64,
        seed_seconds: seeded.elapsed.as_secs_f64(),
        body_bytes: body.len(),
        server_rss_kib_idle: rss_idle,
        server_rss_kib_after: rss_after,
        quiet_waits_seconds: quiet_waits,
        scenarios,
        onboarding,
    })
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

fn cpu(report: &LoadReport) -> String {
    report
        .server_cpu_us_per_request
        .map_or("–".into(), |us| format!("{us:.0}"))
}

fn statuses(report: &LoadReport) -> String {
    let list: Vec<String> = report.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
    list.join(" ")
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("–".into(), |k| format!("{:.0} MB", k as f64 / 1024.0))
}

/// The results as a Markdown table (gmp against the baseline, with ratios), then memory and
/// onboarding lines.
pub fn table(reports: &[EngineReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| engine | scenario | gmp req/s | baseline req/s | throughput ratio | gmp p50 / p99 ms | baseline p50 / p99 ms | p99 ratio | gmp CPU µs/req | PostgreSQL CPU µs/req (gmp) | baseline CPU µs/req | CPU ratio | gmp statuses | gmp errors |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for report in reports {
        for (gmp, floor) in &report.scenarios {
            let cpu_ratio = match (gmp.server_cpu_us_per_request, floor.server_cpu_us_per_request) {
                (Some(a), Some(b)) => ratio(a, b),
                _ => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {} | {} | {} | {} | {} | {} | {} |",
                report.engine,
                gmp.scenario,
                gmp.requests_per_second,
                floor.requests_per_second,
                ratio(gmp.requests_per_second, floor.requests_per_second),
                gmp.p50_ms,
                gmp.p99_ms,
                floor.p50_ms,
                floor.p99_ms,
                ratio(gmp.p99_ms, floor.p99_ms),
                cpu(gmp),
                gmp.database_cpu_us_per_request
                    .map_or("–".into(), |us| format!("{us:.0}")),
                cpu(floor),
                cpu_ratio,
                statuses(gmp),
                gmp.errors,
            );
        }
    }
    for report in reports {
        let _ = writeln!(
            out,
            "\n{}: {} devices seeded in {:.1} s; pull body {} bytes; server RSS {} idle, {} after the scenarios",
            report.engine,
            report.devices,
            report.seed_seconds,
            report.body_bytes,
            mib(report.server_rss_kib_idle),
            mib(report.server_rss_kib_after),
        );
        let waits: Vec<String> = report
            .quiet_waits_seconds
            .iter()
            .map(|s| format!("{s:.1} s"))
            .collect();
        let _ = writeln!(
            out,
            "{}: waited for a quiet server before each scenario and onboarding: {}",
            report.engine,
            waits.join(", ")
        );
        for (gmp, _) in &report.scenarios {
            if gmp.late_starts > 0 {
                let _ = writeln!(
                    out,
                    "{}: {}: {} late starts at {:.0}/s (every connection busy when due)",
                    report.engine,
                    gmp.scenario,
                    gmp.late_starts,
                    gmp.target_rate.unwrap_or_default()
                );
            }
            if gmp.scenario == Scenario::Herd.name() {
                let _ = writeln!(
                    out,
                    "{}: herd: {} of {} first pulls done in {:.1} s",
                    report.engine, gmp.requests, gmp.devices, gmp.seconds
                );
            }
            if gmp.device_waits > 0 {
                let _ = writeln!(
                    out,
                    "{}: {}: connections waited {} times for a rested device (more devices would allow more load)",
                    report.engine, gmp.scenario, gmp.device_waits
                );
            }
        }
        if let Some(onboarding) = &report.onboarding {
            let _ = writeln!(
                out,
                "{}: onboarding {} of {} devices in {:.1} s = {:.0} devices/s, {} errors; register {:?}, first pull {:?}",
                report.engine,
                onboarding.onboarded,
                onboarding.devices,
                onboarding.seconds,
                onboarding.devices_per_second,
                onboarding.errors,
                onboarding.register_statuses,
                onboarding.pull_statuses,
            );
        }
    }
    out
}
