//! The one piece of shared application state, registered once as `web::Data<AppState>`.

use crate::auth::JwtKeys;
use crate::auth::password::HashPool;
use crate::auth::throttle::{self, PasswordThrottle, SystemClock, Throttle};
use crate::cache::Bounds;
use crate::clock::Clock;
use crate::config::{Config, Keys};
use crate::connectwise::guard::OutboundPolicy;
use crate::connectwise::{
    ClientSettings, ConnectWiseClient, LOOKUP_CACHE_BYTES, LOOKUP_ENTRY_BYTES, LookupCache,
};
use crate::metrics::Metrics;
use crate::secrets::Keyring;
use crate::services::checkins::CheckinBuffer;
use crate::services::device_directory::DeviceDirectory;
use crate::services::device_reads::DeviceReads;
use crate::services::effective::EffectiveCache;
use crate::services::registration_queue::RegistrationQueue;
use crate::services::served_audit::ServedQueue;
use crate::services::sessions::SessionEpochs;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    /// The time services and jobs go by (manual in tests).
    pub clock: Clock,
    pub jwt: JwtKeys,
    pub config: Arc<Config>,
    pub keyring: Keyring,
    pub connectwise: Arc<ConnectWiseClient>,
    pub lookups: Arc<LookupCache>,
    pub metrics: Arc<Metrics>,
    /// Set when shutdown begins: `/readyz` fails so load balancers stop sending traffic.
    pub draining: Arc<AtomicBool>,
    pub checkins: Arc<CheckinBuffer>,
    /// Effective configs built once per policy revision (see `services::effective`).
    pub effective: Arc<EffectiveCache>,
    /// Devices behind credentials and tenants' pull facts, in memory (see
    /// `services::device_directory`).
    pub directory: Arc<DeviceDirectory>,
    /// What pulls served, waiting to be written to the field audit.
    pub served: Arc<ServedQueue>,
    /// Registrations waiting to be written together.
    pub registrations: Arc<RegistrationQueue>,
    /// Directory misses waiting to be read together.
    pub device_reads: Arc<DeviceReads>,
    /// Current session epochs of operators, cached briefly (see `services::sessions`).
    pub sessions: Arc<SessionEpochs>,
    /// Every argon2 computation (passwords, export keys) runs here, a bounded number at once.
    pub hashing: HashPool,
    /// Password checks throttled per account and per client address.
    pub password_throttle: Arc<PasswordThrottle>,
    /// Operator creations refused for an unavailable email, per tenant.
    pub email_probes: Arc<Throttle>,
}

impl AppState {
    pub fn new(db: DatabaseConnection, config: Config, keys: Keys, clock: Clock) -> Self {
        let connectwise = ConnectWiseClient::new(ClientSettings {
            client_id: config.connectwise_client_id.clone(),
            policy: OutboundPolicy {
                allow_http: config.connectwise_allow_http,
                allowed_hosts: config.connectwise_allowed_hosts.clone(),
            },
            connect_timeout: Duration::from_secs(config.connectwise_timeout_seconds.clamp(1, 10)),
            timeout: Duration::from_secs(config.connectwise_timeout_seconds.max(1)),
            page_size: 1000,
            max_pages: 50,
            max_retry_wait: Duration::from_secs(10),
            backoff: Duration::from_millis(200),
            max_body_bytes: 8 * 1024 * 1024,
            max_request_bytes: 24 * 1024 * 1024,
        })
        .expect("the outbound HTTP client builds");
        Self {
            jwt: JwtKeys::new(keys.jwt_secret.expose(), config.access_token_ttl()),
            lookups: Arc::new(LookupCache::new(Bounds {
                ttl: Duration::from_secs(config.connectwise_cache_seconds),
                max_bytes: LOOKUP_CACHE_BYTES,
                max_entry_bytes: LOOKUP_ENTRY_BYTES,
            })),
            connectwise: Arc::new(connectwise),
            metrics: Arc::new(Metrics::default()),
            draining: Arc::new(AtomicBool::new(false)),
            checkins: Arc::new(CheckinBuffer::new(config.checkin_buffer_capacity)),
            sessions: Arc::new(SessionEpochs::default()),
            effective: Arc::new(EffectiveCache::new(config.pull_cache_bytes)),
            directory: Arc::new(DeviceDirectory::new(config.device_cache_bytes)),
            served: Arc::new(ServedQueue::new(config.checkin_buffer_capacity)),
            registrations: Arc::default(),
            device_reads: Arc::new(DeviceReads::new(db.clone())),
            hashing: HashPool::new(
                config
                    .password_hash_concurrency
                    .unwrap_or_else(HashPool::default_concurrency),
                HashPool::DEFAULT_MAX_WAIT,
            ),
            password_throttle: Arc::new(PasswordThrottle::new(Arc::new(SystemClock))),
            email_probes: Arc::new(Throttle::new(
                throttle::Policy::EMAIL_PROBES,
                throttle::CAPACITY,
                Arc::new(SystemClock),
            )),
            db,
            clock,
            config: Arc::new(config),
            keyring: keys.keyring,
        }
    }
}
