//! Operator passwords, hashed with argon2id (PHC string format, parameters inside the hash).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::LazyLock;

pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// True when `password` matches `hash`. A malformed stored hash never matches.
pub fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Spends the same time as a real verification, so a login for an unknown email cannot be
/// told apart from a wrong password by its latency.
pub fn verify_against_dummy(password: &str) {
    static DUMMY: LazyLock<String> =
        LazyLock::new(|| hash("dummy password for timing").expect("hashing a constant cannot fail"));
    let _ = verify(password, &DUMMY);
}

/// [`hash`] off the async workers: argon2 is deliberately slow.
pub async fn hash_blocking(password: String) -> Result<String, crate::error::ApiError> {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(crate::error::ApiError::internal)?
        .map_err(|e| crate::error::ApiError::internal(e.to_string()))
}

/// [`verify`] off the async workers. `hash: None` (unknown user) still spends the time.
pub async fn verify_blocking(password: String, hash: Option<String>) -> Result<bool, crate::error::ApiError> {
    tokio::task::spawn_blocking(move || match hash {
        Some(hash) => verify(&password, &hash),
        None => {
            verify_against_dummy(&password);
            false
        }
    })
    .await
    .map_err(crate::error::ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verifiable() {
        let first = hash("correct horse battery").unwrap();
        let second = hash("correct horse battery").unwrap();
        assert!(first.starts_with("$argon2id$"));
        assert_ne!(first, second, "each hash has its own salt");
        assert!(verify("correct horse battery", &first));
        assert!(!verify("wrong horse battery", &first));
        assert!(!verify("correct horse battery", "not a hash"));
    }
}
