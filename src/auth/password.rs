//! Operator passwords, hashed with argon2id (PHC string format, parameters inside the hash),
//! and the bounded pool every argon2 computation of the server runs in.
//!
//! One argon2id hash with the parameters below needs 19 MiB of working memory. Allocating it
//! per call lets the allocator keep a 19 MiB arena per thread that ever hashed, so a burst of
//! parallel sign-ins left the process that much larger for good. Instead, [`HashPool`] lets at
//! most `concurrency` computations run at once (a semaphore) and lends each one a working
//! buffer it keeps for the next: the memory spent on hashing is at most `concurrency × 19 MiB`,
//! allocated once, whatever the load.

use crate::error::{ApiError, Code};
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordVerifier, Version};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The parameters every password hash and every export key is made with (argon2's defaults:
/// 19 MiB, 2 passes, 1 lane).
pub const PARAMS: Params = Params::DEFAULT;

/// A working buffer for one argon2 computation with [`PARAMS`].
pub type Memory = [Block];

const ALGORITHM: Algorithm = Algorithm::Argon2id;
const VERSION: Version = Version::V0x13;

fn argon2(params: Params) -> Argon2<'static> {
    Argon2::new(ALGORITHM, VERSION, params)
}

/// Hashes `password` into a PHC string, using `memory` as argon2's working memory.
pub fn hash_with(password: &str, memory: &mut Memory) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2(PARAMS).hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, memory)?;
    let phc = PasswordHash {
        algorithm: ALGORITHM.ident(),
        version: Some(VERSION.into()),
        params: ParamsString::try_from(&PARAMS)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    };
    Ok(phc.to_string())
}

/// True when `password` matches the PHC string `hash`. A malformed stored hash never matches.
/// A hash made with larger parameters than [`PARAMS`] (none is ever written) is checked with
/// memory of its own.
pub fn verify_with(password: &str, hash: &str, memory: &mut Memory) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(params), Some(expected), Some(salt)) = (Params::try_from(&parsed), parsed.hash, parsed.salt)
    else {
        return false;
    };
    let algorithm_matches = Algorithm::try_from(parsed.algorithm) == Ok(ALGORITHM);
    let version_matches = parsed.version.map(Version::try_from).unwrap_or(Ok(VERSION)) == Ok(VERSION);
    if !algorithm_matches || !version_matches || params.block_count() > memory.len() {
        return Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
    }
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    argon2(params)
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, memory)
        .ok()
        .and_then(|()| Output::new(&out).ok())
        // `Output`'s equality is constant-time.
        .is_some_and(|computed| computed == expected)
}

/// A hash of a password nobody has, checked when the email is unknown: a sign-in for an unknown
/// email costs the same time as a wrong password, so latency does not tell them apart.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$yNs0bp9Tl2cp2Yk4gQxOdYkaFSK6Hrb0ewVdM3ZkPqc";

/// The server's bounded argon2 pool: at most `concurrency` computations at once, each with a
/// reused working buffer. A caller that cannot get a turn within `max_wait` gets
/// `503 service_unavailable` with `Retry-After` instead of queueing without end.
#[derive(Clone)]
pub struct HashPool {
    permits: Arc<Semaphore>,
    buffers: Arc<Mutex<Vec<Box<Memory>>>>,
    max_wait: Duration,
}

impl HashPool {
    /// How long a computation waits for a turn before the request is answered `503`.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);

    pub fn new(concurrency: usize, max_wait: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            buffers: Arc::new(Mutex::new(Vec::new())),
            max_wait,
        }
    }

    /// The default size: one computation per core, at most 3 (57 MiB of hashing memory, so
    /// the server stays under 100 MB resident after any burst of sign-ins).
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .min(3)
    }

    /// Runs `job` on the blocking pool once a turn is free, lending it a working buffer. The
    /// turn is held until the job ends, even when the request that asked for it goes away, so
    /// dropped connections cannot push more computations through than the bound.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(ApiError::internal)?;
        let buffers = self.buffers.clone();
        tokio::task::spawn_blocking(move || {
            let taken = buffers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut memory =
                taken.unwrap_or_else(|| vec![Block::default(); PARAMS.block_count()].into_boxed_slice());
            let result = job(&mut memory);
            buffers.lock().unwrap_or_else(|e| e.into_inner()).push(memory);
            drop(permit);
            result
        })
        .await
        .map_err(ApiError::internal)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move |memory| hash_with(&password, memory))
            .await?
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Checks a password against a stored hash. `hash: None` (unknown operator) spends the same
    /// time and answers `false`.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, ApiError> {
        self.run(move |memory| {
            let matches = verify_with(&password, hash.as_deref().unwrap_or(DUMMY_HASH), memory);
            matches && hash.is_some()
        })
        .await
    }
}

fn busy() -> ApiError {
    ApiError::new(
        Code::Unavailable,
        "the server is busy checking passwords; retry shortly",
    )
    .with_retry_after(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Box<Memory> {
        vec![Block::default(); PARAMS.block_count()].into_boxed_slice()
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verifiable() {
        let mut memory = memory();
        let first = hash_with("correct horse battery", &mut memory).unwrap();
        let second = hash_with("correct horse battery", &mut memory).unwrap();
        assert!(first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{first}");
        assert_ne!(first, second, "each hash has its own salt");
        assert!(verify_with("correct horse battery", &first, &mut memory));
        assert!(!verify_with("wrong horse battery", &first, &mut memory));
        assert!(!verify_with("correct horse battery", "not a hash", &mut memory));
    }

    #[test]
    fn hashes_interoperate_with_the_argon2_crate() {
        use argon2::PasswordHasher;
        let mut memory = memory();
        let ours = hash_with("interoperable", &mut memory).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"interoperable", &parsed)
                .is_ok()
        );
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let theirs = Argon2::default()
            .hash_password(b"interoperable", &salt)
            .unwrap()
            .to_string();
        assert!(verify_with("interoperable", &theirs, &mut memory));
        // A hash with other parameters is still checked, with its own memory.
        let small = Argon2::new(ALGORITHM, VERSION, Params::new(64, 1, 1, None).unwrap())
            .hash_password(b"small", &salt)
            .unwrap()
            .to_string();
        assert!(verify_with("small", &small, &mut memory));
        assert!(!verify_with("smal", &small, &mut memory));
    }

    #[test]
    fn the_dummy_hash_is_well_formed_and_matches_nothing_common() {
        let mut memory = memory();
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(
            Params::try_from(&parsed).unwrap().block_count(),
            PARAMS.block_count()
        );
        assert!(!verify_with("", DUMMY_HASH, &mut memory));
        assert!(!verify_with("password", DUMMY_HASH, &mut memory));
    }

    #[tokio::test]
    async fn unknown_operators_never_verify() {
        let pool = HashPool::new(1, HashPool::DEFAULT_MAX_WAIT);
        assert!(!pool.verify("anything".into(), None).await.unwrap());
        let hash = pool.hash("a real password".into()).await.unwrap();
        assert!(pool.verify("a real password".into(), Some(hash)).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_pool_answers_503_with_retry_after_and_reuses_its_buffers() {
        let pool = HashPool::new(1, Duration::from_millis(50));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move |_| wait.recv().ok()).await })
        };
        // Wait until the first job holds the only turn.
        while pool.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|_| ()).await.unwrap_err();
        assert_eq!(refused.code, Code::Unavailable);
        assert_eq!(refused.retry_after, Some(1));
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        pool.run(|_| ()).await.unwrap();
        assert_eq!(pool.buffers.lock().unwrap().len(), 1, "one buffer, reused");
    }
}
