//! `gmp-device-sim`: a fleet of simulated appliances and vaults against a GMP server.

use clap::Parser;
use gmp::sim::{SimOptions, run};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "gmp-device-sim",
    version,
    about = "Simulate devices registering, pulling and reporting"
)]
struct Args {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// An enrollment token allowing at least `--devices` registrations.
    #[arg(long)]
    enrollment_token: String,
    #[arg(long, default_value_t = 10)]
    devices: u32,
    /// appliance, vault or mixed.
    #[arg(long, default_value = "mixed")]
    kind: String,
    /// Pull-apply-report cycles per device.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Milliseconds between pulls; without it, each device follows the server's schedule.
    #[arg(long)]
    interval_ms: Option<u64>,
    /// Share of fields a device overrides locally (0–1).
    #[arg(long, default_value_t = 0.0)]
    override_fraction: f64,
    /// Share of devices failing to apply a field (0–1).
    #[arg(long, default_value_t = 0.0)]
    fail_fraction: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "SIM")]
    hardware_prefix: String,
    /// Longest Retry-After to wait out, in seconds.
    #[arg(long, default_value_t = 3600)]
    max_retry_wait_s: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let summary = run(SimOptions {
        server: args.server.trim_end_matches('/').to_owned(),
        enrollment_token: args.enrollment_token,
        devices: args.devices,
        kind: args.kind,
        rounds: args.rounds,
        interval: args.interval_ms.map(Duration::from_millis),
        override_fraction: args.override_fraction,
        fail_fraction: args.fail_fraction,
        seed: args.seed,
        hardware_prefix: args.hardware_prefix,
        max_retry_wait: Duration::from_secs(args.max_retry_wait_s),
    })
    .await;
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).expect("the summary serialises")
    );
    if summary.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
