//! The command line: `serve`, `migrate`, `openapi` and the admin commands.

use crate::config::Config;
use crate::domain::audit::Actor;
use crate::domain::{PolicyId, Role, TenantId};
use crate::services::operators::NewOperatorInput;
use crate::startup::{Application, shutdown_signal};
use crate::state::AppState;
use crate::{auth, db, http, services, telemetry};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gmp",
    version,
    about = "GMP server: policies for MSP backup appliances and vaults"
)]
struct Cli {
    /// TOML configuration file; `GMP_*` environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (applies pending migrations first).
    Serve,
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Exit 0 when the server answers its health check (for container health checks).
    Healthcheck {
        /// Default: `/healthz` on the configured bind address.
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the OpenAPI document, or write it to a file.
    Openapi {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Tenants (MSP organisations).
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Operators of a tenant.
    Operator {
        #[command(subcommand)]
        action: OperatorAction,
    },
    /// Master keys for secrets at rest.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Export or import a policy as a document.
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Re-encrypt every stored secret under the current master key. Configure the new key as
    /// `master_key` and the old ones in `previous_master_keys` first; afterwards the old keys
    /// can be removed.
    Rotate,
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Print a policy's current version as a `gmp-policy` document.
    Export {
        /// The tenant's id or name.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        policy: uuid::Uuid,
        /// Include secrets, encrypted under the passphrase in this file.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Import a document into a policy as one new version (or only show the diff).
    Import {
        /// The tenant's id or name.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        policy: uuid::Uuid,
        /// The document (`-` for standard input).
        #[arg(long)]
        file: PathBuf,
        /// The passphrase of the document's secrets, in this file.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Roll back migrations (the last one by default).
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List applied and pending migrations.
    Status,
}

#[derive(Subcommand)]
enum TenantAction {
    /// Create a tenant and its first admin. The admin's password comes from `GMP_CLI_PASSWORD`,
    /// standard input (`--password-stdin`) or a prompt; otherwise one is generated and printed.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_email: String,
        /// Read the admin's password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum OperatorAction {
    /// Create an operator in a tenant. The password comes from `GMP_CLI_PASSWORD`, standard
    /// input (`--password-stdin`) or a prompt; otherwise one is generated and printed.
    Create {
        /// The tenant's id or name.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Also allow provisioning tenants.
        #[arg(long)]
        platform_admin: bool,
    },
}

fn parse_role(raw: &str) -> Result<Role, String> {
    raw.parse()
}

pub fn main() -> ExitCode {
    crate::connectwise::client::install_crypto_provider();
    let cli = Cli::parse();
    if let Command::Openapi { out } = &cli.command {
        return write_openapi(out.as_deref());
    }
    let env = std::env::vars().filter(|(name, _)| name != "GMP_CLI_PASSWORD");
    let config = match Config::load(cli.config.as_deref(), env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gmp: {error}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gmp: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "gmp failed");
            eprintln!("gmp: {error}");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

async fn run(command: Command, config: Config) -> CliResult {
    match command {
        Command::Serve => {
            let app = Application::build(config).await?;
            app.run_until(shutdown_signal()).await?;
        }
        Command::Migrate { action } => {
            let db = connect(&config).await?;
            match action {
                MigrateAction::Up => db::migrate(&db).await?,
                MigrateAction::Down { steps } => db::migrate_down(&db, Some(steps)).await?,
                MigrateAction::Status => {}
            }
            let (applied, pending) = db::migration_status(&db).await?;
            applied.iter().for_each(|name| println!("applied  {name}"));
            pending.iter().for_each(|name| println!("pending  {name}"));
        }
        Command::Tenant {
            action:
                TenantAction::Create {
                    name,
                    admin_email,
                    password_stdin,
                },
        } => {
            let (password, generated) = cli_password(password_stdin)?;
            let state = admin_state(config).await?;
            let admin = NewOperatorInput {
                email: admin_email,
                display_name: None,
                role: Role::Admin,
                password: password.clone(),
            };
            let (tenant, admin) =
                services::tenants::create(&state, &Actor::system(TenantId::new()), &name, admin)
                    .await
                    .map_err(describe)?;
            println!("tenant   {} {}", tenant.id, tenant.name);
            println!("admin    {} {}", admin.id, admin.email);
            if generated {
                println!("password {password}");
            }
        }
        Command::Operator {
            action:
                OperatorAction::Create {
                    tenant,
                    email,
                    role,
                    password_stdin,
                    platform_admin,
                },
        } => {
            let (password, generated) = cli_password(password_stdin)?;
            let state = admin_state(config).await?;
            let input = NewOperatorInput {
                email,
                display_name: None,
                role,
                password: password.clone(),
            };
            let tenant = services::tenants::find(&state, &tenant)
                .await
                .map_err(describe)?
                .id;
            let operator = services::operators::create(&state, &Actor::system(tenant), input, platform_admin)
                .await
                .map_err(describe)?;
            println!("operator {} {} {}", operator.id, operator.email, operator.role);
            if generated {
                println!("password {password}");
            }
        }
        Command::Keys {
            action: KeysAction::Rotate,
        } => {
            let state = admin_state(config).await?;
            let rotation = services::keys::rotate(&state.db, &state.keyring)
                .await
                .map_err(describe)?;
            println!(
                "checked {} policy versions and {} devices, re-encrypted {} secrets under key {}",
                rotation.versions_checked,
                rotation.devices_checked,
                rotation.secrets_resealed,
                state.keyring.current_kid()
            );
        }
        Command::Policy { action } => run_policy(action, admin_state(config).await?).await?,
        Command::Healthcheck { url } => {
            let url = url
                .unwrap_or_else(|| format!("http://{}/healthz", config.bind.replace("0.0.0.0", "127.0.0.1")));
            let response = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()?
                .get(&url)
                .send()
                .await?;
            if !response.status().is_success() {
                return Err(format!("{url} answered {}", response.status()).into());
            }
        }
        Command::Openapi { .. } => unreachable!("handled before the runtime starts"),
    }
    Ok(())
}

async fn run_policy(action: PolicyAction, state: AppState) -> CliResult {
    match action {
        PolicyAction::Export {
            tenant,
            policy,
            passphrase_file,
        } => {
            let passphrase = passphrase_file.as_deref().map(read_passphrase).transpose()?;
            let tenant = services::tenants::find(&state, &tenant)
                .await
                .map_err(describe)?
                .id;
            let actor = Actor::system(tenant);
            let document =
                services::policies::export(&state, &actor, PolicyId(policy), passphrase.as_deref())
                    .await
                    .map_err(describe)?;
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        PolicyAction::Import {
            tenant,
            policy,
            file,
            passphrase_file,
            dry_run,
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)?
            };
            let document: serde_json::Value = serde_json::from_str(&text)?;
            let passphrase = passphrase_file.as_deref().map(read_passphrase).transpose()?;
            let expected = (!dry_run).then_some(crate::domain::Expected::Any);
            let tenant = services::tenants::find(&state, &tenant)
                .await
                .map_err(describe)?
                .id;
            let actor = Actor::system(tenant);
            let outcome = services::policies::import(
                &state,
                &actor,
                PolicyId(policy),
                expected,
                services::policies::ImportInput {
                    document,
                    passphrase,
                    comment: None,
                    references: services::references::References::Check,
                },
            )
            .await
            .map_err(describe)?;
            for warning in &outcome.warnings {
                eprintln!("warning: {warning}");
            }
            for change in &outcome.changes {
                println!("{:?} {}", change.change, change.field);
            }
            match outcome.policy {
                Some(saved) => println!("saved version {}", saved.node.version),
                None => println!("dry run: nothing changed"),
            }
        }
    }
    Ok(())
}

fn read_passphrase(path: &std::path::Path) -> Result<String, std::io::Error> {
    Ok(std::fs::read_to_string(path)?
        .trim_end_matches(['\n', '\r'])
        .to_owned())
}

async fn connect(config: &Config) -> Result<sea_orm::DatabaseConnection, Box<dyn std::error::Error>> {
    if config.database_url.is_none() {
        config.ensure_data_dir()?;
    }
    Ok(db::connect(&config.database_url(), 2).await?)
}

async fn admin_state(config: Config) -> Result<AppState, Box<dyn std::error::Error>> {
    let keys = config.load_keys()?;
    let db = connect(&config).await?;
    db::migrate(&db).await?;
    Ok(AppState::new(db, config, keys, crate::clock::Clock::system()))
}

/// The password for a new operator, never from the command line (where the process list and
/// shell history would show it): `GMP_CLI_PASSWORD`, else the first line of standard input
/// with `--password-stdin`, else a prompt when standard input is a terminal (empty: generate),
/// else generated. The flag says whether it was generated and must be printed.
fn cli_password(from_stdin: bool) -> Result<(String, bool), Box<dyn std::error::Error>> {
    use std::io::IsTerminal;
    if let Ok(password) = std::env::var("GMP_CLI_PASSWORD") {
        return Ok((password, false));
    }
    let read_line = || -> std::io::Result<String> {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    };
    if from_stdin {
        let password = read_line()?;
        if password.is_empty() {
            return Err("--password-stdin: standard input holds no password".into());
        }
        return Ok((password, false));
    }
    if std::io::stdin().is_terminal() {
        eprint!("Password (empty to generate one): ");
        let echo_off = set_echo(false);
        let password = read_line();
        if echo_off {
            set_echo(true);
            eprintln!();
        }
        let password = password?;
        if !password.is_empty() {
            return Ok((password, false));
        }
    }
    Ok((auth::token::generate(""), true))
}

/// Turns the terminal's echo off or on with `stty`; false when that did not work.
fn set_echo(on: bool) -> bool {
    std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|status| status.success())
}

/// An API error as a command-line message, with its field errors.
fn describe(error: crate::error::ApiError) -> Box<dyn std::error::Error> {
    let mut message = error.detail.clone();
    for field in &error.errors {
        message.push_str(&format!("\n  {}: {}", field.field, field.message));
    }
    message.into()
}

fn write_openapi(out: Option<&std::path::Path>) -> ExitCode {
    let json = http::spec_json();
    match out {
        None => {
            print!("{json}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("gmp: cannot write {}: {error}", path.display());
                ExitCode::FAILURE
            }
        },
    }
}
