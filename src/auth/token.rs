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
    to_hex(&raw_digest(token))
}

/// The SHA-256 of the token as bytes: what a device pull looks its credential up by in memory,
/// before (and mostly without) needing the stored hex form.
pub fn raw_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The stored hex form of a [`raw_digest`].
pub fn to_hex(digest: &[u8; 32]) -> String {
    let mut hex = [0u8; 64];
    hex::encode_to_slice(digest, &mut hex).expect("64 hex digits for 32 bytes");
    String::from_utf8(hex.to_vec()).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hex_digest_is_the_sha256_of_the_token() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(to_hex(&raw_digest("abc")), digest("abc"));
    }

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
