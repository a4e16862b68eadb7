//! `gmp-device-sim`: a fleet of simulated appliances and vaults against a GMP server.

use clap::Parser;
use gmp::sim::{SimOptions, run};
use std::path::PathBuf;
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
    /// An enrollment token allowing a registration per device without saved credentials.
    #[arg(long)]
    enrollment_token: Option<String>,
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    devices: u32,
    /// appliance, vault or mixed.
    #[arg(long, default_value = "mixed", value_parser = ["appliance", "vault", "mixed"])]
    kind: String,
    /// Pull-apply-report cycles per device.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Milliseconds between pulls; without it, each device follows the server's schedule.
    #[arg(long)]
    interval_ms: Option<u64>,
    /// Share of fields a device overrides locally (0–1).
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    override_fraction: f64,
    /// Share of devices failing to apply a field (0–1).
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    fail_fraction: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "SIM")]
    hardware_prefix: String,
    /// Longest wait, in seconds, for a Retry-After or the server's next pull time; a device
    /// told to wait longer stops with an error that says so.
    #[arg(long, default_value_t = 60, alias = "max-retry-wait-s")]
    max_wait_s: u64,
    /// Keeps the devices' credentials between runs (written with mode 0600).
    #[arg(long, default_value = "gmp-device-sim.state.json")]
    state_file: PathBuf,
    /// Do not keep credentials: register every device on every run.
    #[arg(long)]
    no_state: bool,
    /// Print no progress lines (errors are still printed).
    #[arg(long)]
    quiet: bool,
}

fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err("a number from 0 to 1".into()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = run(SimOptions {
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
        max_wait: Duration::from_secs(args.max_wait_s),
        state_file: (!args.no_state).then_some(args.state_file),
        progress: (!args.quiet).then_some(Duration::from_secs(2)),
    })
    .await;
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("gmp-device-sim: {error}");
            return ExitCode::FAILURE;
        }
    };
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
