//! `gmp-bench`: the device-side benchmark. `gmp-bench all` runs everything; the other
//! subcommands are its parts, usable on their own. See README `## Benchmark`.

use clap::{Parser, Subcommand};
use gmp::bench::impact::{self, ImpactOptions};
use gmp::bench::load::{self, DevicePool, LoadOptions, Scenario};
use gmp::bench::onboard::{self, OnboardOptions};
use gmp::bench::run::{self, RunOptions, Servers};
use gmp::bench::scale::{self, ScaleOptions};
use gmp::bench::seed::{self, SeedOptions};
use gmp::bench::{Group, baseline, of_group, read_credentials, write_credentials};
use gmp::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "gmp-bench",
    version,
    about = "Benchmark the device pull path against a baseline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Fleet {
    /// Devices already served their config (steady-state pulls).
    #[arg(long, default_value_t = 10_000)]
    devices: u64,
    /// Devices registered but never pulled (the herd).
    #[arg(long, default_value_t = 1_000)]
    herd: u64,
    /// Child policies under the root, devices spread over them.
    #[arg(long, default_value_t = 10)]
    policies: u32,
    /// The tenant's pull interval; a device may pull again after a sixteenth of it.
    #[arg(long, default_value_t = 60)]
    pull_interval: u32,
}

impl Fleet {
    fn options(&self) -> SeedOptions {
        SeedOptions {
            steady: self.devices,
            new: self.herd,
            policies: self.policies,
            pull_interval_seconds: self.pull_interval,
            own_values_every: 0,
        }
    }
}

/// Where the servers under test come from and on which engines they run.
#[derive(clap::Args, Clone)]
struct Engines {
    #[arg(long, default_value = "target/release/gmp")]
    gmp_bin: PathBuf,
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// A PostgreSQL server where a scratch database is created and dropped.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Only PostgreSQL.
    #[arg(long)]
    skip_sqlite: bool,
    /// HTTP worker threads of the servers (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
}

impl Engines {
    /// The options of the servers under test, with the work directory created.
    fn servers(self) -> Result<Servers, String> {
        std::fs::create_dir_all(&self.work_dir).map_err(|e| format!("{}: {e}", self.work_dir.display()))?;
        Ok(Servers {
            gmp_bin: self.gmp_bin,
            work_dir: self.work_dir,
            postgres_url: self.postgres_url,
            skip_sqlite: self.skip_sqlite,
            workers: self.workers,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Seed a tenant, its policy tree and devices into the database the `GMP_*` settings name,
    /// and write the devices' credentials to a file.
    Seed {
        #[command(flatten)]
        fleet: Fleet,
        #[arg(long, default_value = "credentials.tsv")]
        credentials: PathBuf,
    },
    /// Drive seeded credentials at a running server and print what was measured (JSON).
    Load {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(long, default_value = "credentials.tsv")]
        credentials: PathBuf,
        /// 304, 200 or herd.
        #[arg(long, default_value = "304")]
        scenario: String,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Rest of a device between two pulls: the server answers 429 below interval/16 (3 s at
        /// the seeded 60 s interval).
        #[arg(long, default_value_t = 3_500)]
        reuse_after_ms: u64,
        /// Pulls per second on a fixed schedule (open loop: latency from each pull's due
        /// time, at most `--connections` in flight); without it, closed loop.
        #[arg(long)]
        rate: Option<f64>,
        /// The server's process id, to read its CPU time and memory.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Also report the CPU of all `postgres` processes per request.
        #[arg(long)]
        database_cpu: bool,
    },
    /// Serve the baseline for the devices of a credentials file until stopped.
    Baseline {
        #[arg(long, default_value = "credentials.tsv")]
        credentials: PathBuf,
        /// Size of the pre-built body (the real pull body's size).
        #[arg(long, default_value_t = 3_000)]
        body_bytes: usize,
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: String,
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Register and first-pull devices through the real API, many clients at once.
    Onboard {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// A platform admin (the bootstrap admin) who may create a tenant.
        #[arg(long, env = "BENCH_ADMIN_EMAIL")]
        admin_email: String,
        #[arg(long, env = "BENCH_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: String,
        #[arg(long, default_value_t = 10_000)]
        devices: u32,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 600)]
        max_seconds: u64,
    },
    /// Time the impact preview of a draft on the root policy of a seeded fleet through `gmp
    /// serve` (SQLite, and PostgreSQL with `--postgres-url`).
    Impact {
        #[arg(long, default_value_t = 100_000)]
        devices: u64,
        #[arg(long, default_value_t = 10)]
        policies: u32,
        /// Every n-th device has values of its own (0: none); every second of those overrides
        /// the field the draft changes.
        #[arg(long, default_value_t = 100)]
        own_values_every: u64,
        /// Timed requests after the first.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Devices per page of the preview.
        #[arg(long, default_value_t = 50)]
        page: u64,
        #[command(flatten)]
        engines: Engines,
    },
    /// The fleet-scale targets through `gmp serve`: steady `304` pulls at a fixed rate over
    /// distinct devices, a root-policy edit on a large and a 1,000-device fleet, and "who
    /// overrides a field" (PostgreSQL with `--postgres-url`, and SQLite).
    Scale {
        /// Devices on PostgreSQL.
        #[arg(long, default_value_t = 1_000_000)]
        devices: u64,
        /// Devices on SQLite.
        #[arg(long, default_value_t = 100_000)]
        sqlite_devices: u64,
        #[arg(long, default_value_t = 10)]
        policies: u32,
        /// Every n-th device reports a local override of the field asked about.
        #[arg(long, default_value_t = 100)]
        overrides_every: u64,
        /// Steady pulls per second.
        #[arg(long, default_value_t = 2_000.0)]
        rate: f64,
        /// Length of the steady pulls.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Pulls in flight at most.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Timed edits per fleet, and timed override queries.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        #[command(flatten)]
        engines: Engines,
    },
    /// Everything: seed, start `gmp serve` and the baseline, run the scenarios against both,
    /// onboard, print the table (SQLite, and PostgreSQL with `--postgres-url`).
    All {
        #[command(flatten)]
        fleet: Fleet,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Length of each steady-state scenario (the herd stops at this too).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Pulls per second of the `304` and `200` scenarios, on a fixed schedule (open loop);
        /// without it they pull as fast as answers come. The herd is always every device at once.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 10_000)]
        onboard_devices: u32,
        #[arg(long, default_value_t = 64)]
        onboard_clients: usize,
        /// Onboarding stops starting devices after this long.
        #[arg(long, default_value_t = 300)]
        onboard_max_seconds: u64,
        #[command(flatten)]
        engines: Engines,
    },
}

fn scenario(name: &str) -> Result<Scenario, String> {
    match name {
        "304" => Ok(Scenario::NotModified),
        "200" => Ok(Scenario::Full),
        "herd" => Ok(Scenario::Herd),
        other => Err(format!("unknown scenario `{other}`: 304, 200 or herd")),
    }
}

/// The load generator is for the machine it runs on: it refuses any other server.
fn loopback_only(server: &str) -> Result<(), String> {
    let url = url::Url::parse(server).map_err(|e| format!("`{server}`: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "`{server}` is not a loopback address: gmp-bench loads only this machine"
        ))
    }
}

/// Prints the table and writes the reports as JSON to `path`.
fn write_report(path: &std::path::Path, reports: &impl serde::Serialize, table: &str) -> Result<(), String> {
    let json = serde_json::to_string_pretty(reports).map_err(|e| e.to_string())?;
    std::fs::write(path, json).map_err(|e| e.to_string())?;
    println!("{table}");
    eprintln!("details: {}", path.display());
    Ok(())
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a report serialises")
    );
}

async fn execute(command: Command) -> Result<(), String> {
    match command {
        Command::Seed { fleet, credentials } => {
            let config = Config::load(None, std::env::vars()).map_err(|e| e.to_string())?;
            let state = seed::open(config).await?;
            let seeded = seed::seed(&state, &fleet.options())
                .await
                .map_err(|e| seed::describe(&e))?;
            write_credentials(&credentials, &seeded.devices).map_err(|e| e.to_string())?;
            let seconds = seeded.elapsed.as_secs_f64();
            println!(
                "seeded tenant {} with {} devices in {seconds:.1} s ({:.0} devices/s); credentials in {}",
                seeded.tenant,
                seeded.devices.len(),
                seeded.devices.len() as f64 / seconds.max(f64::EPSILON),
                credentials.display()
            );
        }
        Command::Load {
            server,
            credentials,
            scenario: name,
            connections,
            seconds,
            reuse_after_ms,
            rate,
            server_pid,
            database_cpu,
        } => {
            loopback_only(&server)?;
            let scenario = scenario(&name)?;
            let devices =
                read_credentials(&credentials).map_err(|e| format!("{}: {e}", credentials.display()))?;
            let pool = match scenario {
                Scenario::Herd => DevicePool::once(of_group(&devices, Group::New)),
                _ => DevicePool::cycling(
                    of_group(&devices, Group::Steady),
                    Duration::from_millis(reuse_after_ms),
                ),
            };
            let options = LoadOptions {
                base_url: server,
                connections,
                duration: Duration::from_secs(seconds),
                rate,
                server_pid,
                database_cpu,
            };
            print_json(&load::run(scenario, Arc::new(pool), &options).await);
        }
        Command::Baseline {
            credentials,
            body_bytes,
            bind,
            workers,
        } => {
            let devices =
                read_credentials(&credentials).map_err(|e| format!("{}: {e}", credentials.display()))?;
            let listener = std::net::TcpListener::bind(&bind).map_err(|e| format!("{bind}: {e}"))?;
            let server = baseline::server(listener, baseline::Baseline::new(&devices, body_bytes), workers)
                .map_err(|e| e.to_string())?;
            eprintln!("baseline for {} tokens on {bind}", devices.len());
            server.await.map_err(|e| e.to_string())?;
        }
        Command::Onboard {
            server,
            admin_email,
            admin_password,
            devices,
            clients,
            max_seconds,
        } => {
            loopback_only(&server)?;
            let report = onboard::run(&OnboardOptions {
                base_url: server,
                admin_email,
                admin_password,
                devices,
                clients,
                time_limit: Duration::from_secs(max_seconds),
            })
            .await?;
            print_json(&report);
        }
        Command::Impact {
            devices,
            policies,
            own_values_every,
            runs,
            page,
            engines,
        } => {
            let servers = engines.servers()?;
            let options = ImpactOptions {
                servers: servers.clone(),
                devices,
                policies,
                own_values_every,
                runs,
                page,
            };
            let (reports, table) = impact::run(&options).await?;
            write_report(&servers.work_dir.join("impact.json"), &reports, &table)?;
        }
        Command::Scale {
            devices,
            sqlite_devices,
            policies,
            overrides_every,
            rate,
            seconds,
            connections,
            runs,
            engines,
        } => {
            if rate.is_nan() || rate <= 0.0 || overrides_every == 0 {
                return Err("--rate and --overrides-every must be positive".into());
            }
            let servers = engines.servers()?;
            let options = ScaleOptions {
                servers: servers.clone(),
                devices,
                sqlite_devices,
                policies,
                overrides_every,
                rate,
                duration: Duration::from_secs(seconds),
                connections,
                runs,
            };
            let (reports, table) = scale::run(&options).await?;
            write_report(&servers.work_dir.join("scale.json"), &reports, &table)?;
        }
        Command::All {
            fleet,
            connections,
            seconds,
            rate,
            onboard_devices,
            onboard_clients,
            onboard_max_seconds,
            engines,
        } => {
            let servers = engines.servers()?;
            let options = RunOptions {
                servers: servers.clone(),
                bench_bin: std::env::current_exe().map_err(|e| e.to_string())?,
                seed: fleet.options(),
                connections,
                duration: Duration::from_secs(seconds),
                rate,
                onboard_devices,
                onboard_clients,
                onboard_time_limit: Duration::from_secs(onboard_max_seconds),
            };
            let (_, table) = run::run(&options).await?;
            println!("{table}");
            eprintln!("details: {}", servers.work_dir.join("report.json").display());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match execute(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gmp-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
