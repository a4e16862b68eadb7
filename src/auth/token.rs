//! Opaque bearer tokens (refresh tokens, later device credentials and enrollment tokens):
//! 256 random bits, shown once, stored only as a SHA-256 hash. They have full entropy, so a
//! fast hash is enough; a slow password hash would only slow every request down.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new random token with a readable prefix saying what it is (`gmp_rt_…`).
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Hex SHA-256 of the token, the only form in which it is stored.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_unique_and_long() {
        let a = generate("gmp_rt_");
        let b = generate("gmp_rt_");
        assert!(a.starts_with("gmp_rt_"));
        assert_ne!(a, b);
        assert_eq!(a.len(), "gmp_rt_".len() + 43);
    }

    #[test]
    fn digest_is_stable_and_does_not_contain_the_token() {
        let token = generate("gmp_rt_");
        assert_eq!(digest(&token), digest(&token));
        assert_eq!(digest(&token).len(), 64);
        assert!(!digest(&token).contains(&token[7..]));
    }
}
