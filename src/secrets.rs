//! Secrets at rest: AES-256-GCM under the master key, with the key id stored beside each
//! ciphertext so keys can rotate, and the tenant and field bound in as associated data so a
//! ciphertext copied to another tenant or field does not decrypt. Also the passphrase boxes
//! that carry secrets in exported policy documents.

use crate::domain::TenantId;
use crate::domain::policy::Sealed;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the secret was sealed with key `{0}`, which is not configured")]
    UnknownKey(String),
    #[error("the secret does not decrypt (wrong key, or tampered with)")]
    Undecryptable,
}

/// The master keys: the current one seals, every configured one opens.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("kids", &kids)
            .finish()
    }
}

/// A stable, non-secret name for a key.
pub fn key_id(key: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"gmp master key id\0")
        .chain_update(key)
        .finalize();
    hex::encode(&digest[..8])
}

fn associated_data(tenant: TenantId, path: &str) -> Vec<u8> {
    format!("gmp/v1/{tenant}/{path}").into_bytes()
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

impl Keyring {
    /// `current` seals; `previous` keys still open what they sealed until `gmp keys rotate`.
    pub fn new(current: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        let keys = std::iter::once(current)
            .chain(previous)
            .map(|key| (key_id(key), Aes256Gcm::new(key.into())))
            .collect();
        Self {
            current: key_id(current),
            keys,
        }
    }

    pub fn current_kid(&self) -> &str {
        &self.current
    }

    pub fn seal(&self, tenant: TenantId, path: &str, plaintext: &str) -> Sealed {
        let nonce = random::<12>();
        let cipher = &self.keys[0].1;
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &associated_data(tenant, path),
                },
            )
            .expect("AES-GCM encryption of a bounded plaintext cannot fail");
        Sealed {
            kid: self.current.clone(),
            nonce: BASE64.encode(nonce),
            ciphertext: BASE64.encode(ciphertext),
        }
    }

    pub fn open(&self, tenant: TenantId, path: &str, sealed: &Sealed) -> Result<String, SecretError> {
        let cipher = self
            .keys
            .iter()
            .find(|(kid, _)| *kid == sealed.kid)
            .map(|(_, cipher)| cipher)
            .ok_or_else(|| SecretError::UnknownKey(sealed.kid.clone()))?;
        let nonce: [u8; 12] = BASE64
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(SecretError::Undecryptable)?;
        let ciphertext = BASE64
            .decode(&sealed.ciphertext)
            .map_err(|_| SecretError::Undecryptable)?;
        let plaintext = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &associated_data(tenant, path),
                },
            )
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plaintext).map_err(|_| SecretError::Undecryptable)
    }

    /// Re-seals under the current key when another key sealed it; `None` when already current.
    pub fn reseal(
        &self,
        tenant: TenantId,
        path: &str,
        sealed: &Sealed,
    ) -> Result<Option<Sealed>, SecretError> {
        if sealed.kid == self.current {
            return Ok(None);
        }
        let plaintext = self.open(tenant, path, sealed)?;
        Ok(Some(self.seal(tenant, path, &plaintext)))
    }
}

/// Secrets encrypted under a key derived from a passphrase (argon2id, then AES-256-GCM), as
/// carried inside an exported policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassphraseBox {
    /// Always `argon2id`.
    pub kdf: String,
    pub salt: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Always `aes-256-gcm`.
    pub cipher: String,
    pub nonce: String,
    pub ciphertext: String,
}

const KDF: &str = "argon2id";
const CIPHER: &str = "aes-256-gcm";
const EXPORT_MEMORY_KIB: u32 = 19 * 1024;
const EXPORT_ITERATIONS: u32 = 2;
// An imported document chooses its own KDF cost; cap it so a file cannot make the server
// spend unbounded memory or time.
const MAX_MEMORY_KIB: u32 = 256 * 1024;
const MAX_ITERATIONS: u32 = 10;
const MAX_PARALLELISM: u32 = 8;

fn derive(
    passphrase: &str,
    salt: &[u8],
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
) -> Option<Aes256Gcm> {
    let params = argon2::Params::new(memory_kib, iterations, parallelism, Some(32)).ok()?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .ok()?;
    Some(Aes256Gcm::new((&key).into()))
}

/// Why a passphrase box does not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BoxError {
    #[error("the passphrase is wrong, or the secrets were tampered with")]
    WrongPassphrase,
    #[error("{0}")]
    Malformed(String),
}

impl PassphraseBox {
    pub fn seal(passphrase: &str, plaintext: &[u8]) -> Self {
        let salt = random::<16>();
        let nonce = random::<12>();
        let cipher = derive(passphrase, &salt, EXPORT_MEMORY_KIB, EXPORT_ITERATIONS, 1)
            .expect("the export KDF parameters are valid");
        let ciphertext = cipher
            .encrypt(&Nonce::from(nonce), plaintext)
            .expect("AES-GCM encryption of a bounded plaintext cannot fail");
        Self {
            kdf: KDF.into(),
            salt: BASE64.encode(salt),
            memory_kib: EXPORT_MEMORY_KIB,
            iterations: EXPORT_ITERATIONS,
            parallelism: 1,
            cipher: CIPHER.into(),
            nonce: BASE64.encode(nonce),
            ciphertext: BASE64.encode(ciphertext),
        }
    }

    pub fn open(&self, passphrase: &str) -> Result<Vec<u8>, BoxError> {
        let malformed = |what: &str| BoxError::Malformed(what.to_owned());
        if self.kdf != KDF || self.cipher != CIPHER {
            return Err(malformed("only argon2id with aes-256-gcm is supported"));
        }
        if self.memory_kib > MAX_MEMORY_KIB
            || self.iterations > MAX_ITERATIONS
            || self.parallelism > MAX_PARALLELISM
        {
            return Err(malformed(
                "the key-derivation parameters exceed what this server accepts",
            ));
        }
        let salt = BASE64
            .decode(&self.salt)
            .map_err(|_| malformed("`salt` is not base64"))?;
        let nonce: [u8; 12] = BASE64
            .decode(&self.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| malformed("`nonce` must be 12 base64-encoded bytes"))?;
        let ciphertext = BASE64
            .decode(&self.ciphertext)
            .map_err(|_| malformed("`ciphertext` is not base64"))?;
        let cipher = derive(
            passphrase,
            &salt,
            self.memory_kib,
            self.iterations,
            self.parallelism,
        )
        .ok_or_else(|| malformed("invalid key-derivation parameters"))?;
        cipher
            .decrypt(&Nonce::from(nonce), ciphertext.as_slice())
            .map_err(|_| BoxError::WrongPassphrase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "connectwise.private_key";

    #[test]
    fn sealed_secrets_open_only_for_their_tenant_and_field() {
        let keyring = Keyring::new(&[1u8; 32], &[]);
        let tenant = TenantId::new();
        let sealed = keyring.seal(tenant, PATH, "s3cret-private-key");
        assert!(!sealed.ciphertext.contains("s3cret"));
        assert_eq!(sealed.kid, key_id(&[1u8; 32]));
        assert_eq!(keyring.open(tenant, PATH, &sealed).unwrap(), "s3cret-private-key");
        assert_eq!(
            keyring.open(TenantId::new(), PATH, &sealed),
            Err(SecretError::Undecryptable)
        );
        assert_eq!(
            keyring.open(tenant, "connectwise.public_key", &sealed),
            Err(SecretError::Undecryptable)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext = BASE64.encode(b"not the ciphertext at all");
        assert_eq!(
            keyring.open(tenant, PATH, &tampered),
            Err(SecretError::Undecryptable)
        );
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let keyring = Keyring::new(&[1u8; 32], &[]);
        let tenant = TenantId::new();
        let a = keyring.seal(tenant, PATH, "same");
        let b = keyring.seal(tenant, PATH, "same");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn rotation_reseals_under_the_new_key_and_old_keys_still_open() {
        let tenant = TenantId::new();
        let old = Keyring::new(&[1u8; 32], &[]);
        let sealed = old.seal(tenant, PATH, "rotate me");
        let rotated = Keyring::new(&[2u8; 32], &[[1u8; 32]]);
        assert_eq!(rotated.open(tenant, PATH, &sealed).unwrap(), "rotate me");
        let resealed = rotated.reseal(tenant, PATH, &sealed).unwrap().unwrap();
        assert_eq!(resealed.kid, rotated.current_kid());
        assert_eq!(rotated.reseal(tenant, PATH, &resealed).unwrap(), None);
        let new_only = Keyring::new(&[2u8; 32], &[]);
        assert_eq!(new_only.open(tenant, PATH, &resealed).unwrap(), "rotate me");
        assert!(matches!(
            new_only.open(tenant, PATH, &sealed),
            Err(SecretError::UnknownKey(_))
        ));
    }

    #[test]
    fn passphrase_boxes_open_with_the_passphrase_only() {
        let sealed = PassphraseBox::seal("correct horse battery", b"{\"k\":\"v\"}");
        assert_eq!(sealed.open("correct horse battery").unwrap(), b"{\"k\":\"v\"}");
        assert_eq!(sealed.open("wrong horse battery"), Err(BoxError::WrongPassphrase));
        let mut greedy = sealed.clone();
        greedy.memory_kib = 4 * 1024 * 1024;
        assert!(matches!(
            greedy.open("correct horse battery"),
            Err(BoxError::Malformed(_))
        ));
        let mut other_cipher = sealed;
        other_cipher.cipher = "rot13".into();
        assert!(matches!(
            other_cipher.open("correct horse battery"),
            Err(BoxError::Malformed(_))
        ));
    }
}
