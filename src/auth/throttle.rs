//! Throttling of password guesses, per account and per client address.
//!
//! Each key (an account, an address) has a failure count. The first `free` failures cost
//! nothing; from then on the key is blocked for `base × 2^(failures − free)` after its last
//! failure, capped at `cap`: a guesser gets a few tries, then one every few minutes at most,
//! and a real operator is never locked out for longer than `cap`. A key with no failure for
//! `forget_after` starts afresh.
//!
//! An attempt counts as a failure from the moment it is let through until it succeeds, so a
//! burst of parallel guesses cannot all pass the check before the first one is judged.
//!
//! The state lives in this process's memory, bounded to `capacity` keys per kind (the oldest
//! are evicted). Replicas do not share it: behind a balancer each replica counts on its own.

use crate::error::{ApiError, Code};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the throttle reads the time; tests turn it by hand.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How one kind of key is throttled.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed before any wait.
    pub free: u32,
    /// The first wait; each further failure doubles it.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
    /// A key quiet this long is forgotten.
    pub forget_after: Duration,
}

impl Policy {
    /// One account: five tries, then 5 s, 10 s, … up to 5 minutes between tries.
    pub const ACCOUNT: Policy = Policy {
        free: 5,
        base: Duration::from_secs(5),
        cap: Duration::from_secs(300),
        forget_after: Duration::from_secs(3600),
    };
    /// One client address (an office behind NAT shares one): twenty tries over any accounts,
    /// then the same back-off.
    pub const ADDRESS: Policy = Policy {
        free: 20,
        ..Policy::ACCOUNT
    };
    /// One tenant creating operators with emails that turn out to be unavailable: five, then
    /// 1 minute, 2, … up to an hour between creations.
    pub const EMAIL_PROBES: Policy = Policy {
        free: 5,
        base: Duration::from_secs(60),
        cap: Duration::from_secs(3600),
        forget_after: Duration::from_secs(24 * 3600),
    };

    fn wait_after(&self, failures: u32) -> Duration {
        if failures < self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free).min(31);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }
}

/// A fixed-size digest of a key: no email or address is kept in clear, and a huge key cannot
/// make an entry huge.
type Key = [u8; 32];

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
}

/// The counts of one kind of key.
pub struct Throttle {
    policy: Policy,
    capacity: usize,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Throttle {
    pub fn new(policy: Policy, capacity: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            policy,
            capacity: capacity.max(1),
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `key` must still wait; zero when it may try now.
    fn wait(&self, entries: &HashMap<Key, Entry>, key: &Key, now: Instant) -> Duration {
        match entries.get(key) {
            Some(entry) if now.duration_since(entry.last_failure) < self.policy.forget_after => {
                let until = entry.last_failure + self.policy.wait_after(entry.failures);
                until.saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        }
    }

    /// Counts one failure for `key` now.
    fn record_failure(&self, entries: &mut HashMap<Key, Entry>, key: Key, now: Instant) {
        let forget_after = self.policy.forget_after;
        if !entries.contains_key(&key) && entries.len() >= self.capacity {
            entries.retain(|_, e| now.duration_since(e.last_failure) < forget_after);
            if entries.len() >= self.capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_failure)
                    .map(|(k, _)| *k)
            {
                entries.remove(&oldest);
            }
        }
        let entry = entries.entry(key).or_insert(Entry {
            failures: 0,
            last_failure: now,
        });
        if now.duration_since(entry.last_failure) >= forget_after {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
    }

    /// Lets one try for `key` through, counting it as a failure until [`forgive`](Self::forgive)
    /// takes it back; or says how long to wait.
    pub fn begin(&self, key: &str) -> Result<(), Duration> {
        let key = digest("key", key.as_bytes());
        let now = self.clock.now();
        let mut entries = self.entries();
        let wait = self.wait(&entries, &key, now);
        if !wait.is_zero() {
            return Err(wait);
        }
        self.record_failure(&mut entries, key, now);
        Ok(())
    }

    /// Takes back the failure [`begin`](Self::begin) counted for a try that was no failure.
    pub fn forgive(&self, key: &str) {
        self.forgive_one(&digest("key", key.as_bytes()));
    }

    /// Takes back one failure (an attempt that succeeded after all).
    fn forgive_one(&self, key: &Key) {
        let mut entries = self.entries();
        if let Some(entry) = entries.get_mut(key) {
            entry.failures = entry.failures.saturating_sub(1);
            if entry.failures == 0 {
                entries.remove(key);
            }
        }
    }

    fn reset(&self, key: &Key) {
        self.entries().remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

fn digest(kind: &str, value: &[u8]) -> Key {
    Sha256::new()
        .chain_update(kind.as_bytes())
        .chain_update([0])
        .chain_update(value)
        .finalize()
        .into()
}

/// The part of a client address that identifies one client: an IPv4 address, or the /64 an
/// IPv6 host gets (a host owns its whole /64, so single addresses would be free to rotate).
fn address_key(ip: IpAddr) -> Key {
    match ip.to_canonical() {
        IpAddr::V4(v4) => digest("v4", &v4.octets()),
        IpAddr::V6(v6) => digest("v6", &v6.octets()[..8]),
    }
}

/// Password checks, throttled by account and by client address.
pub struct PasswordThrottle {
    accounts: Throttle,
    addresses: Throttle,
}

/// The largest number of accounts and of addresses tracked at once (about 65 bytes each, so
/// at most ~3.3 MB per kind).
pub const CAPACITY: usize = 50_000;

impl PasswordThrottle {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with(Policy::ACCOUNT, Policy::ADDRESS, CAPACITY, clock)
    }

    pub fn with(account: Policy, address: Policy, capacity: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            accounts: Throttle::new(account, capacity, clock.clone()),
            addresses: Throttle::new(address, capacity, clock),
        }
    }

    /// Lets one password check for `account` (a normalised email, or another stable name of
    /// the account) from `address` (when known) through, counting it as a failure until
    /// [`Attempt::succeeded`]; or says how long to wait.
    pub fn begin(&self, account: &str, address: Option<IpAddr>) -> Result<Attempt<'_>, Duration> {
        let account = digest("account", account.as_bytes());
        let address = address.map(address_key);
        let now = self.accounts.clock.now();
        // Both locks in one fixed order, so two checks cannot both slip through.
        let mut accounts = self.accounts.entries();
        let mut addresses = self.addresses.entries();
        let wait = self
            .accounts
            .wait(&accounts, &account, now)
            .max(address.map_or(Duration::ZERO, |a| self.addresses.wait(&addresses, &a, now)));
        if !wait.is_zero() {
            return Err(wait);
        }
        self.accounts.record_failure(&mut accounts, account, now);
        if let Some(address) = address {
            self.addresses.record_failure(&mut addresses, address, now);
        }
        Ok(Attempt {
            throttle: self,
            account,
            address,
        })
    }
}

/// One password check let through. Dropped without [`Attempt::succeeded`], it stays counted as
/// a failure.
#[must_use = "an attempt counts as a failure unless it succeeds"]
pub struct Attempt<'a> {
    throttle: &'a PasswordThrottle,
    account: Key,
    address: Option<Key>,
}

impl Attempt<'_> {
    /// The password was right: the account starts afresh, and the address gets this attempt
    /// back (only this one, so one valid account cannot clear an address that sprays others).
    pub fn succeeded(self) {
        self.throttle.accounts.reset(&self.account);
        if let Some(address) = &self.address {
            self.throttle.addresses.forgive_one(address);
        }
    }
}

/// Seconds for `Retry-After`: the wait rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// `429 rate_limited` with `Retry-After` for a throttled try; `what` says what was too many.
pub fn rate_limited(what: &str, wait: Duration) -> ApiError {
    let seconds = retry_after_seconds(wait);
    ApiError::new(Code::RateLimited, format!("{what}; retry in {seconds} s")).with_retry_after(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock turned by hand.
    struct ManualClock {
        start: Instant,
        offset: Mutex<Duration>,
    }

    impl ManualClock {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                start: Instant::now(),
                offset: Mutex::new(Duration::ZERO),
            })
        }

        fn advance(&self, by: Duration) {
            *self.offset.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.start + *self.offset.lock().unwrap()
        }
    }

    const ALICE: &str = "alice@example.com";

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn fail(throttle: &PasswordThrottle, account: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        throttle.begin(account, address).map(drop)
    }

    #[test]
    fn free_attempts_then_doubling_waits_up_to_the_cap() {
        let clock = ManualClock::new();
        let throttle = PasswordThrottle::new(clock.clone());
        for _ in 0..5 {
            fail(&throttle, ALICE, ip("192.0.2.1")).unwrap();
        }
        let mut expected = Duration::from_secs(5);
        for _ in 0..10 {
            assert_eq!(fail(&throttle, ALICE, ip("192.0.2.1")), Err(expected));
            clock.advance(expected - Duration::from_millis(1));
            assert_eq!(
                fail(&throttle, ALICE, ip("192.0.2.1")),
                Err(Duration::from_millis(1))
            );
            clock.advance(Duration::from_millis(1));
            fail(&throttle, ALICE, ip("192.0.2.1")).unwrap();
            expected = (expected * 2).min(Policy::ACCOUNT.cap);
        }
        assert_eq!(fail(&throttle, ALICE, None), Err(Duration::from_secs(300)));
    }

    #[test]
    fn a_blocked_attempt_costs_nothing_and_never_locks_out_for_good() {
        let clock = ManualClock::new();
        let throttle = PasswordThrottle::new(clock.clone());
        for _ in 0..5 {
            fail(&throttle, ALICE, None).unwrap();
        }
        // Hammering while blocked neither extends nor deepens the block.
        for _ in 0..1000 {
            assert!(fail(&throttle, ALICE, None).is_err());
        }
        clock.advance(Duration::from_secs(5));
        throttle.begin(ALICE, None).unwrap().succeeded();
        fail(&throttle, ALICE, None).unwrap();
    }

    #[test]
    fn success_resets_the_account_and_returns_only_its_own_attempt_to_the_address() {
        let clock = ManualClock::new();
        let throttle = PasswordThrottle::new(clock.clone());
        for _ in 0..4 {
            fail(&throttle, ALICE, ip("192.0.2.1")).unwrap();
        }
        throttle.begin(ALICE, ip("192.0.2.1")).unwrap().succeeded();
        for _ in 0..5 {
            fail(&throttle, ALICE, ip("192.0.2.2")).unwrap();
        }
        assert!(fail(&throttle, ALICE, ip("192.0.2.2")).is_err());

        // The address still holds the four failures the success did not undo.
        for n in 0..16 {
            fail(&throttle, &format!("user{n}@example.com"), ip("192.0.2.1")).unwrap();
        }
        assert!(fail(&throttle, "fresh@example.com", ip("192.0.2.1")).is_err());
        fail(&throttle, "fresh@example.com", ip("192.0.2.3")).unwrap();
    }

    #[test]
    fn a_burst_is_counted_before_any_attempt_is_judged() {
        let throttle = PasswordThrottle::new(ManualClock::new());
        let attempts: Vec<_> = (0..5).map(|_| throttle.begin(ALICE, None).unwrap()).collect();
        assert!(throttle.begin(ALICE, None).is_err());
        drop(attempts);
    }

    #[test]
    fn ipv6_hosts_are_counted_by_their_64() {
        let throttle = PasswordThrottle::new(ManualClock::new());
        for n in 0..20 {
            fail(
                &throttle,
                &format!("u{n}@example.com"),
                ip(&format!("2001:db8:1:2::{n:x}")),
            )
            .unwrap();
        }
        assert!(fail(&throttle, "other@example.com", ip("2001:db8:1:2:ffff::1")).is_err());
        fail(&throttle, "other@example.com", ip("2001:db8:1:3::1")).unwrap();
        // An IPv4-mapped address is the IPv4 address.
        for n in 0..20 {
            fail(&throttle, &format!("v{n}@example.com"), ip("::ffff:192.0.2.9")).unwrap();
        }
        assert!(fail(&throttle, "other2@example.com", ip("192.0.2.9")).is_err());
    }

    #[test]
    fn quiet_keys_are_forgotten() {
        let clock = ManualClock::new();
        let throttle = PasswordThrottle::new(clock.clone());
        for _ in 0..5 {
            fail(&throttle, ALICE, None).unwrap();
        }
        clock.advance(Policy::ACCOUNT.forget_after);
        for _ in 0..5 {
            fail(&throttle, ALICE, None).unwrap();
        }
        assert!(fail(&throttle, ALICE, None).is_err());
    }

    #[test]
    fn the_state_is_bounded_and_evicts_the_oldest() {
        let clock = ManualClock::new();
        let throttle = PasswordThrottle::with(Policy::ACCOUNT, Policy::ADDRESS, 3, clock.clone());
        for _ in 0..5 {
            fail(&throttle, ALICE, None).unwrap();
        }
        for n in 0..3 {
            clock.advance(Duration::from_millis(1));
            fail(&throttle, &format!("u{n}@example.com"), None).unwrap();
        }
        assert_eq!(throttle.accounts.len(), 3);
        // Alice was the oldest, so she was evicted and starts afresh.
        fail(&throttle, ALICE, None).unwrap();
        assert_eq!(throttle.accounts.len(), 3);
    }

    #[test]
    fn a_plain_throttle_counts_each_try_until_forgiven() {
        let clock = ManualClock::new();
        let probes = Throttle::new(Policy::EMAIL_PROBES, 10, clock.clone());
        for _ in 0..10 {
            probes.begin("tenant a").unwrap();
            probes.forgive("tenant a");
        }
        for _ in 0..5 {
            probes.begin("tenant a").unwrap();
        }
        assert_eq!(probes.begin("tenant a"), Err(Duration::from_secs(60)));
        assert_eq!(probes.begin("tenant a"), Err(Duration::from_secs(60)));
        probes.begin("tenant b").unwrap();
        clock.advance(Duration::from_secs(60));
        probes.begin("tenant a").unwrap();
        assert_eq!(probes.begin("tenant a"), Err(Duration::from_secs(120)));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(5)), 5);
        assert_eq!(retry_after_seconds(Duration::from_millis(5001)), 6);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }
}
