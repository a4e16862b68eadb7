//! Server configuration: defaults, then an optional TOML file, then `GMP_*` environment
//! variables. Every key has one name (`bind` in the file is `GMP_BIND` in the environment) and
//! unknown keys are an error at start, so a typo never silently falls back to a default.

use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod key_check;
mod keys;

pub use keys::{Keys, SecretBytes};

/// A secret configuration value: usable, but never printed by `Debug` or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An IP address or a CIDR range, such as `10.0.0.5` or `172.16.0.0/12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.trim().parse().ok()?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse().ok().filter(|p| *p <= bits)?,
            None => bits,
        };
        Some(Self { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let masked = |bits: u128, width: u32| {
            let shift = width - u32::from(self.prefix);
            bits.checked_shr(shift).unwrap_or(0)
        };
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), 32) == masked(u32::from(ip).into(), 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => masked(net.into(), 128) == masked(ip.into(), 128),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when writing to a terminal.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown configuration key `{key}` ({source_name}); known keys: {known}")]
    UnknownKey {
        key: String,
        source_name: String,
        known: String,
    },
    #[error("configuration key `{key}` ({source_name}): {message}")]
    InvalidValue {
        key: String,
        source_name: String,
        message: String,
    },
    #[error("cannot read configuration file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Secrets(String),
    #[error("configuration key `{key}` is required together with `{with}`: give both or neither")]
    Missing { key: &'static str, with: &'static str },
}

/// Every configuration key (the README documents each one; a test keeps them in step).
pub const KEYS: &[&str] = &[
    "bind",
    "data_dir",
    "database_url",
    "database_max_connections",
    "jwt_secret",
    "jwt_secret_file",
    "master_key",
    "master_key_file",
    "previous_master_keys",
    "access_token_ttl_seconds",
    "refresh_token_ttl_seconds",
    "max_body_bytes",
    "log_format",
    "log_level",
    "bootstrap_admin_email",
    "bootstrap_admin_password",
    "shutdown_timeout_seconds",
    "workers",
    "connectwise_client_id",
    "connectwise_timeout_seconds",
    "connectwise_cache_seconds",
    "connectwise_allow_http",
    "connectwise_allowed_hosts",
    "stale_grace_seconds",
    "offline_after_seconds",
    "checkin_flush_interval_ms",
    "checkin_buffer_capacity",
    "jobs_enabled",
    "job_connectivity_interval_seconds",
    "job_retention_interval_seconds",
    "job_expiry_interval_seconds",
    "job_rollout_interval_seconds",
    "retention_days",
    "pull_cache_bytes",
    "device_cache_bytes",
    "metrics_bind",
    "metrics_per_tenant",
    "tls_cert_file",
    "tls_key_file",
    "password_hash_concurrency",
    "trusted_proxies",
];

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub data_dir: PathBuf,
    pub database_url: Option<Secret>,
    pub database_max_connections: u32,
    pub jwt_secret: Option<Secret>,
    pub jwt_secret_file: Option<PathBuf>,
    pub master_key: Option<Secret>,
    pub master_key_file: Option<PathBuf>,
    /// Keys that sealed secrets before the current master key; kept until `gmp keys rotate`.
    pub previous_master_keys: Option<Secret>,
    pub access_token_ttl_seconds: u64,
    pub refresh_token_ttl_seconds: u64,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    pub log_level: String,
    pub bootstrap_admin_email: Option<String>,
    pub bootstrap_admin_password: Option<Secret>,
    pub shutdown_timeout_seconds: u64,
    pub workers: Option<usize>,
    /// The `clientId` ConnectWise issued to this integration.
    pub connectwise_client_id: String,
    pub connectwise_timeout_seconds: u64,
    pub connectwise_cache_seconds: u64,
    /// Plain-http outbound calls, for tests against a local mock only.
    pub connectwise_allow_http: bool,
    /// Hosts or IPs outbound calls may reach although they are internal.
    pub connectwise_allowed_hosts: Vec<String>,
    pub stale_grace_seconds: u64,
    pub offline_after_seconds: u64,
    /// How often buffered device check-ins are written; 0 writes each one at once.
    pub checkin_flush_interval_ms: u64,
    pub checkin_buffer_capacity: usize,
    pub jobs_enabled: bool,
    pub job_connectivity_interval_seconds: u64,
    pub job_retention_interval_seconds: u64,
    pub job_expiry_interval_seconds: u64,
    /// How often running rollouts are checked against their health gate and advanced.
    pub job_rollout_interval_seconds: u64,
    /// How long device field history and the change log are kept.
    pub retention_days: u64,
    /// Built effective configs kept in memory, in estimated bytes (they hold secrets in clear).
    pub pull_cache_bytes: usize,
    /// Devices (behind their credentials) kept in memory for pulls, in estimated bytes: about
    /// 800 bytes per device without values of its own.
    pub device_cache_bytes: usize,
    /// Where `/metrics` is served; `None` serves it nowhere. Never on the main listener.
    pub metrics_bind: Option<String>,
    /// Device counts per tenant id instead of totals only.
    pub metrics_per_tenant: bool,
    /// PEM certificate chain and private key: with both, the main listener speaks TLS only.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// How many argon2 computations run at once; each holds 19 MiB. Default: one per core, at
    /// most 3.
    pub password_hash_concurrency: Option<usize>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpRange>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("data"),
            database_url: None,
            database_max_connections: 10,
            jwt_secret: None,
            jwt_secret_file: None,
            master_key: None,
            master_key_file: None,
            previous_master_keys: None,
            access_token_ttl_seconds: 15 * 60,
            refresh_token_ttl_seconds: 14 * 24 * 3600,
            max_body_bytes: 1024 * 1024,
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            bootstrap_admin_email: None,
            bootstrap_admin_password: None,
            shutdown_timeout_seconds: 30,
            workers: None,
            connectwise_client_id: "gmp-unregistered-client".into(),
            connectwise_timeout_seconds: 20,
            connectwise_cache_seconds: 60,
            connectwise_allow_http: false,
            connectwise_allowed_hosts: Vec::new(),
            stale_grace_seconds: 3600,
            offline_after_seconds: 24 * 3600,
            checkin_flush_interval_ms: 2000,
            checkin_buffer_capacity: 10_000,
            jobs_enabled: true,
            job_connectivity_interval_seconds: 60,
            job_retention_interval_seconds: 3600,
            job_expiry_interval_seconds: 600,
            job_rollout_interval_seconds: 30,
            retention_days: 400,
            pull_cache_bytes: 64 * 1024 * 1024,
            device_cache_bytes: 128 * 1024 * 1024,
            metrics_bind: None,
            metrics_per_tenant: false,
            tls_cert_file: None,
            tls_key_file: None,
            password_hash_concurrency: None,
            trusted_proxies: Vec::new(),
        }
    }
}

const ENV_PREFIX: &str = "GMP_";

impl Config {
    /// Defaults, overlaid by `file` (if any), overlaid by the `GMP_*` variables of `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            let source_name = format!("in {}", path.display());
            for (key, value) in table {
                let value = scalar_to_string(&value).ok_or_else(|| ConfigError::InvalidValue {
                    key: key.clone(),
                    source_name: source_name.clone(),
                    message: "must be a string, number or boolean".into(),
                })?;
                config.set(&key, value, &source_name)?;
            }
        }
        let mut env: Vec<_> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (name, value) in env {
            let key = name[ENV_PREFIX.len()..].to_ascii_lowercase();
            config.set(&key, value, &format!("environment variable {name}"))?;
        }
        Ok(config)
    }

    fn set(&mut self, key: &str, value: String, source_name: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::InvalidValue {
            key: key.to_owned(),
            source_name: source_name.to_owned(),
            message,
        };
        fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
            value
                .trim()
                .parse()
                .map_err(|_| format!("`{value}` is not a valid number"))
        }
        fn boolean(value: &str) -> Result<bool, String> {
            value
                .trim()
                .parse()
                .map_err(|_| format!("`{value}` is neither true nor false"))
        }
        let non_empty = |value: String| (!value.is_empty()).then_some(value);
        if let Some((low, high)) = numeric_range(key) {
            // Durations and sizes become arithmetic (chrono panics on out-of-range seconds), so
            // they are bounded before they are used at all.
            let n: u64 = number(&value).map_err(invalid)?;
            if !(low..=high).contains(&n) {
                return Err(invalid(format!(
                    "`{n}` is out of range: must be between {low} and {high}"
                )));
            }
        }
        match key {
            "bind" => self.bind = value,
            "data_dir" => self.data_dir = PathBuf::from(value),
            "database_url" => self.database_url = non_empty(value).map(Secret),
            "database_max_connections" => self.database_max_connections = number(&value).map_err(invalid)?,
            "jwt_secret" => self.jwt_secret = non_empty(value).map(Secret),
            "jwt_secret_file" => self.jwt_secret_file = non_empty(value).map(PathBuf::from),
            "master_key" => self.master_key = non_empty(value).map(Secret),
            "master_key_file" => self.master_key_file = non_empty(value).map(PathBuf::from),
            "previous_master_keys" => self.previous_master_keys = non_empty(value).map(Secret),
            "access_token_ttl_seconds" => self.access_token_ttl_seconds = number(&value).map_err(invalid)?,
            "refresh_token_ttl_seconds" => {
                self.refresh_token_ttl_seconds = number(&value).map_err(invalid)?
            }
            "max_body_bytes" => self.max_body_bytes = number(&value).map_err(invalid)?,
            "log_format" => {
                self.log_format = match value.as_str() {
                    "pretty" => LogFormat::Pretty,
                    "json" => LogFormat::Json,
                    other => return Err(invalid(format!("`{other}` is neither `pretty` nor `json`"))),
                }
            }
            "log_level" => self.log_level = value,
            "bootstrap_admin_email" => self.bootstrap_admin_email = non_empty(value),
            "bootstrap_admin_password" => self.bootstrap_admin_password = non_empty(value).map(Secret),
            "shutdown_timeout_seconds" => self.shutdown_timeout_seconds = number(&value).map_err(invalid)?,
            "workers" => self.workers = Some(number(&value).map_err(invalid)?),
            "connectwise_client_id" => self.connectwise_client_id = value,
            "connectwise_timeout_seconds" => {
                self.connectwise_timeout_seconds = number(&value).map_err(invalid)?
            }
            "connectwise_cache_seconds" => {
                self.connectwise_cache_seconds = number(&value).map_err(invalid)?
            }
            "connectwise_allow_http" => self.connectwise_allow_http = boolean(&value).map_err(invalid)?,
            "jobs_enabled" => self.jobs_enabled = boolean(&value).map_err(invalid)?,
            "stale_grace_seconds" => self.stale_grace_seconds = number(&value).map_err(invalid)?,
            "offline_after_seconds" => self.offline_after_seconds = number(&value).map_err(invalid)?,
            "checkin_flush_interval_ms" => {
                self.checkin_flush_interval_ms = number(&value).map_err(invalid)?
            }
            "checkin_buffer_capacity" => self.checkin_buffer_capacity = number(&value).map_err(invalid)?,
            "job_connectivity_interval_seconds" => {
                self.job_connectivity_interval_seconds = number(&value).map_err(invalid)?
            }
            "job_retention_interval_seconds" => {
                self.job_retention_interval_seconds = number(&value).map_err(invalid)?
            }
            "job_rollout_interval_seconds" => {
                self.job_rollout_interval_seconds = number(&value).map_err(invalid)?
            }
            "job_expiry_interval_seconds" => {
                self.job_expiry_interval_seconds = number(&value).map_err(invalid)?
            }
            "retention_days" => self.retention_days = number(&value).map_err(invalid)?,
            "pull_cache_bytes" => self.pull_cache_bytes = number(&value).map_err(invalid)?,
            "device_cache_bytes" => self.device_cache_bytes = number(&value).map_err(invalid)?,
            "metrics_bind" => self.metrics_bind = non_empty(value),
            "metrics_per_tenant" => self.metrics_per_tenant = boolean(&value).map_err(invalid)?,
            "tls_cert_file" => self.tls_cert_file = non_empty(value).map(PathBuf::from),
            "tls_key_file" => self.tls_key_file = non_empty(value).map(PathBuf::from),
            "password_hash_concurrency" => {
                self.password_hash_concurrency = Some(number(&value).map_err(invalid)?)
            }
            "trusted_proxies" => {
                self.trusted_proxies = value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        IpRange::parse(p)
                            .ok_or_else(|| invalid(format!("`{p}` is not an IP address or CIDR range")))
                    })
                    .collect::<Result<_, _>>()?
            }
            "connectwise_allowed_hosts" => {
                self.connectwise_allowed_hosts = value
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            unknown => {
                return Err(ConfigError::UnknownKey {
                    key: unknown.to_owned(),
                    source_name: source_name.to_owned(),
                    known: KEYS.join(", "),
                });
            }
        }
        Ok(())
    }

    /// The database to use: the configured URL, or an SQLite file in the data directory.
    pub fn database_url(&self) -> Secret {
        match &self.database_url {
            Some(url) => url.clone(),
            None => Secret(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("gmp.db").display()
            )),
        }
    }

    /// When devices count as stale and offline.
    pub fn thresholds(&self) -> crate::domain::device::Thresholds {
        crate::domain::device::Thresholds {
            grace: chrono::Duration::seconds(self.stale_grace_seconds as i64),
            offline_after: chrono::Duration::seconds(self.offline_after_seconds as i64),
        }
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_seconds)
    }

    pub fn refresh_token_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_seconds)
    }

    /// Creates the data directory (owner-only) when it does not exist.
    pub fn ensure_data_dir(&self) -> Result<(), ConfigError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.data_dir)
            .map_err(|e| {
                ConfigError::Secrets(format!(
                    "cannot create data directory {}: {e}",
                    self.data_dir.display()
                ))
            })
    }

    /// The TLS certificate and key files, when TLS is configured; one without the other is an
    /// error, so a typo never silently serves plain HTTP.
    pub fn tls_files(&self) -> Result<Option<(&Path, &Path)>, ConfigError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::Missing {
                key: "tls_key_file",
                with: "tls_cert_file",
            }),
            (None, Some(_)) => Err(ConfigError::Missing {
                key: "tls_cert_file",
                with: "tls_key_file",
            }),
        }
    }
}

fn scalar_to_string(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The allowed range of each numeric key.
fn numeric_range(key: &str) -> Option<(u64, u64)> {
    const DAY: u64 = 86_400;
    Some(match key {
        "database_max_connections" => (1, 1_000),
        "access_token_ttl_seconds" => (60, DAY),
        "refresh_token_ttl_seconds" => (300, 365 * DAY),
        "max_body_bytes" => (1_024, 1 << 30),
        "shutdown_timeout_seconds" => (0, 3_600),
        "workers" => (1, 1_024),
        "connectwise_timeout_seconds" => (1, 300),
        "connectwise_cache_seconds" => (0, DAY),
        "stale_grace_seconds" => (0, 365 * DAY),
        "offline_after_seconds" => (60, 3_650 * DAY),
        "checkin_flush_interval_ms" => (0, 3_600_000),
        "checkin_buffer_capacity" => (1, 10_000_000),
        "job_connectivity_interval_seconds"
        | "job_retention_interval_seconds"
        | "job_expiry_interval_seconds"
        | "job_rollout_interval_seconds" => (1, 7 * DAY),
        "retention_days" => (1, 36_500),
        "pull_cache_bytes" => (1 << 20, 1 << 34),
        "password_hash_concurrency" => (1, 64),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
