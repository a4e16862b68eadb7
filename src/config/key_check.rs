//! Refuses keys anyone could know: every value this repository has ever shipped as an example,
//! and values that look like a placeholder or hold too little randomness. A deployment that
//! kept such a key would let whoever read the repository forge a platform admin's token or
//! open the secrets at rest.

use std::collections::BTreeSet;

/// How to make a key that passes: said in every refusal.
pub const HOW_TO_GENERATE_JWT: &str =
    "generate one with `openssl rand -base64 48` (or `head -c 48 /dev/urandom | base64`)";
pub const HOW_TO_GENERATE_MASTER: &str =
    "generate one with `openssl rand -base64 32` (or `head -c 32 /dev/urandom | base64`)";

/// Every key value written in this repository's deploy files, examples or documentation, now
/// or before. Compared case-insensitively after trimming.
const PUBLISHED: &[&str] = &[
    // deploy/compose.yaml before the keys were removed.
    "change-me-to-at-least-32-random-bytes-0000",
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    // deploy/k8s/secret.yaml before the keys were removed.
    "CHANGE-ME-to-at-least-32-random-bytes",
    "CHANGE-ME-base64-of-32-bytes",
    // What the deploy files ship now.
    "REPLACE_ME",
];

/// Words that mark a value somebody was meant to replace.
const PLACEHOLDER_WORDS: &[&str] = &[
    "change-me",
    "change_me",
    "changeme",
    "replace",
    "example",
    "secret",
    "placeholder",
];

/// Why `text` (a key as configured) cannot be used, if it cannot.
pub fn text_problem(text: &str) -> Option<String> {
    let trimmed = text.trim();
    if PUBLISHED.iter().any(|known| known.eq_ignore_ascii_case(trimmed)) {
        return Some("is a value published in the GMP repository".into());
    }
    let lower = trimmed.to_ascii_lowercase();
    PLACEHOLDER_WORDS
        .iter()
        .find(|word| lower.contains(*word))
        .map(|word| format!("looks like a placeholder (it contains `{word}`)"))
}

/// Why the bytes of a JWT signing key are too weak, if they are: too short, or too predictable.
pub fn jwt_problem(key: &[u8]) -> Option<String> {
    if key.len() < 32 {
        return Some("is shorter than 32 bytes".into());
    }
    pattern_problem(key, 8).or_else(|| {
        let bits = entropy_bits(key);
        (bits < 80.0)
            .then(|| format!("holds too little randomness (about {bits:.0} bits; at least 80 needed)"))
    })
}

/// Why the 32 bytes of a master key are too weak, if they are.
pub fn master_key_problem(key: &[u8; 32]) -> Option<String> {
    // 32 random bytes have about 30 distinct values; fewer than 16 happens by chance with a
    // probability far below 10^-12.
    pattern_problem(key, 16)
}

/// All-same bytes, too few distinct bytes, a repeated pattern or a run (`abcd…`, `0123…`).
fn pattern_problem(key: &[u8], min_distinct: usize) -> Option<String> {
    let distinct = key.iter().collect::<BTreeSet<_>>().len();
    if distinct == 1 {
        return Some("repeats one byte".into());
    }
    if distinct < min_distinct {
        return Some(format!("has only {distinct} distinct bytes"));
    }
    if (1..=key.len() / 2).any(|period| key.iter().zip(&key[period..]).all(|(a, b)| a == b)) {
        return Some("repeats a short pattern".into());
    }
    let steps = key
        .windows(2)
        .filter(|pair| pair[0].abs_diff(pair[1]) <= 1)
        .count();
    (steps * 2 >= key.len() - 1).then(|| "is mostly a run of consecutive bytes".into())
}

/// The randomness of `key` as if each byte were drawn independently from the frequencies seen
/// in it (an upper bound for anything a person typed).
fn entropy_bits(key: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for byte in key {
        counts[*byte as usize] += 1;
    }
    let len = key.len() as f64;
    let per_byte: f64 = counts
        .iter()
        .filter(|n| **n > 0)
        .map(|n| {
            let p = *n as f64 / len;
            -p * p.log2()
        })
        .sum();
    per_byte * len
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use rand::RngCore;

    #[test]
    fn published_and_placeholder_values_are_refused() {
        for value in PUBLISHED {
            assert!(text_problem(value).is_some(), "{value}");
            assert!(text_problem(&value.to_ascii_lowercase()).is_some(), "{value}");
        }
        for value in [
            "my-jwt-SECRET-for-production-use-only-xyz",
            "ChangeMe-ChangeMe-ChangeMe-ChangeMe!",
            "please replace this with a real value",
            "an example value that is long enough",
        ] {
            assert!(text_problem(value).unwrap().contains("placeholder"), "{value}");
        }
    }

    #[test]
    fn weak_jwt_keys_are_refused() {
        for (value, why) in [
            ("short".to_owned(), "shorter"),
            ("x".repeat(64), "one byte"),
            ("abab".repeat(16), "distinct"),
            ("Zq8#mK2p".repeat(8), "pattern"),
            ("0123456789abcdefghijklmnopqrstuvwxyz".to_owned(), "run"),
            ("acaeagaiakamaoacaeaiakamaoagacae".to_owned(), "randomness"),
        ] {
            let problem = jwt_problem(value.as_bytes()).unwrap_or_default();
            assert!(problem.contains(why), "{value}: `{problem}`");
        }
    }

    #[test]
    fn weak_master_keys_are_refused() {
        assert!(master_key_problem(&[7; 32]).unwrap().contains("one byte"));
        assert!(master_key_problem(&std::array::from_fn(|i| i as u8)).is_some());
        assert!(master_key_problem(&std::array::from_fn(|i| (i % 4) as u8)).is_some());
    }

    #[test]
    fn random_keys_pass() {
        for _ in 0..200 {
            let mut bytes = [0u8; 48];
            rand::rng().fill_bytes(&mut bytes);
            let text = BASE64.encode(bytes);
            assert_eq!(text_problem(&text), None, "{text}");
            assert_eq!(jwt_problem(text.as_bytes()), None, "{text}");
            let hex = hex::encode(&bytes[..16]);
            assert_eq!(jwt_problem(hex.as_bytes()), None, "{hex}");
            let master: [u8; 32] = bytes[..32].try_into().unwrap();
            assert_eq!(master_key_problem(&master), None);
            assert_eq!(jwt_problem(&master), None, "raw random bytes");
        }
    }
}
