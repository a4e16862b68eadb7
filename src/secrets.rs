//! Secrets at rest: AES-256-GCM under the master key, with the key id stored beside each
//! ciphertext so keys can rotate, and the tenant and field bound in as associated data so a
//! ciphertext copied to another tenant or field does not decrypt. Also the passphrase boxes
//! that carry secrets in exported policy documents.

use crate::auth::password;
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

/// The key-derivation parameters of every box this server writes, and the only ones it opens:
/// a document cannot choose what an import costs. They are the password parameters, so the
/// derivation runs in the server's bounded hashing pool with its buffers.
const KDF_PARAMS: argon2::Params = password::PARAMS;

fn derive(passphrase: &str, salt: &[u8], memory: &mut password::Memory) -> Option<Aes256Gcm> {
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, KDF_PARAMS);
    let mut key = [0u8; 32];
    argon
        .hash_password_into_with_memory(passphrase.as_bytes(), salt, &mut key, memory)
        .ok()?;
    Some(Aes256Gcm::new((&key).into()))
}

/// Why a passphrase box does not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BoxError {
    #[error("the passphrase is wrong, or the secrets were tampered with")]
    WrongPassphrase,
    /// `field` of the box is not what this server accepts.
    #[error("`{field}` {message}")]
    Invalid { field: &'static str, message: String },
}

/// A box's parts, decoded and checked: everything but the passphrase is known to be right.
pub struct CheckedBox {
    salt: Vec<u8>,
    nonce: [u8; 12],
    ciphertext: Vec<u8>,
}

impl PassphraseBox {
    pub fn seal(passphrase: &str, plaintext: &[u8], memory: &mut password::Memory) -> Self {
        let salt = random::<16>();
        let nonce = random::<12>();
        let cipher = derive(passphrase, &salt, memory).expect("the export KDF parameters are valid");
        let ciphertext = cipher
            .encrypt(&Nonce::from(nonce), plaintext)
            .expect("AES-GCM encryption of a bounded plaintext cannot fail");
        Self {
            kdf: KDF.into(),
            salt: BASE64.encode(salt),
            memory_kib: KDF_PARAMS.m_cost(),
            iterations: KDF_PARAMS.t_cost(),
            parallelism: KDF_PARAMS.p_cost(),
            cipher: CIPHER.into(),
            nonce: BASE64.encode(nonce),
            ciphertext: BASE64.encode(ciphertext),
        }
    }

    /// Checks everything that costs nothing, before any key derivation: the algorithms, the
    /// KDF parameters (exactly those this server writes) and the encodings.
    pub fn check(&self) -> Result<CheckedBox, BoxError> {
        let invalid = |field: &'static str, message: String| BoxError::Invalid { field, message };
        if self.kdf != KDF {
            return Err(invalid("kdf", format!("must be `{KDF}`")));
        }
        if self.cipher != CIPHER {
            return Err(invalid("cipher", format!("must be `{CIPHER}`")));
        }
        for (field, value, accepted) in [
            ("memory_kib", self.memory_kib, KDF_PARAMS.m_cost()),
            ("iterations", self.iterations, KDF_PARAMS.t_cost()),
            ("parallelism", self.parallelism, KDF_PARAMS.p_cost()),
        ] {
            if value != accepted {
                return Err(invalid(
                    field,
                    format!("must be {accepted}, the value this server exports with"),
                ));
            }
        }
        let salt = BASE64
            .decode(&self.salt)
            .ok()
            .filter(|salt| (argon2::MIN_SALT_LEN..=64).contains(&salt.len()))
            .ok_or_else(|| invalid("salt", "must be 8 to 64 base64-encoded bytes".into()))?;
        let nonce: [u8; 12] = BASE64
            .decode(&self.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| invalid("nonce", "must be 12 base64-encoded bytes".into()))?;
        let ciphertext = BASE64
            .decode(&self.ciphertext)
            .map_err(|_| invalid("ciphertext", "is not base64".into()))?;
        Ok(CheckedBox {
            salt,
            nonce,
            ciphertext,
        })
    }

    /// [`check`](Self::check) and open with working memory of its own, for tools and tests;
    /// the server opens boxes in its bounded hashing pool instead.
    pub fn open(&self, passphrase: &str) -> Result<Vec<u8>, BoxError> {
        let mut memory = vec![argon2::Block::default(); KDF_PARAMS.block_count()];
        self.check()?.open(passphrase, &mut memory)
    }
}

impl CheckedBox {
    /// Derives the key from `passphrase` (the expensive part) and decrypts.
    pub fn open(&self, passphrase: &str, memory: &mut password::Memory) -> Result<Vec<u8>, BoxError> {
        let cipher = derive(passphrase, &self.salt, memory).ok_or(BoxError::WrongPassphrase)?;
        cipher
            .decrypt(&Nonce::from(self.nonce), self.ciphertext.as_slice())
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

    fn memory() -> Box<password::Memory> {
        vec![argon2::Block::default(); KDF_PARAMS.block_count()].into_boxed_slice()
    }

    #[test]
    fn passphrase_boxes_open_with_the_passphrase_only() {
        let mut memory = memory();
        let sealed = PassphraseBox::seal("correct horse battery", b"{\"k\":\"v\"}", &mut memory);
        let checked = sealed.check().unwrap();
        assert_eq!(
            checked.open("correct horse battery", &mut memory).unwrap(),
            b"{\"k\":\"v\"}"
        );
        assert_eq!(
            checked.open("wrong horse battery", &mut memory),
            Err(BoxError::WrongPassphrase)
        );
    }

    #[test]
    fn only_the_parameters_the_server_writes_are_accepted() {
        let mut memory = memory();
        let sealed = PassphraseBox::seal("correct horse battery", b"{}", &mut memory);
        let field_of = |change: fn(&mut PassphraseBox)| {
            let mut changed = sealed.clone();
            change(&mut changed);
            match changed.check() {
                Err(BoxError::Invalid { field, .. }) => field,
                other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
            }
        };
        assert_eq!(field_of(|b| b.memory_kib = 256 * 1024), "memory_kib");
        assert_eq!(field_of(|b| b.memory_kib = 8), "memory_kib");
        assert_eq!(field_of(|b| b.iterations = 10), "iterations");
        assert_eq!(field_of(|b| b.parallelism = 8), "parallelism");
        assert_eq!(field_of(|b| b.kdf = "scrypt".into()), "kdf");
        assert_eq!(field_of(|b| b.cipher = "rot13".into()), "cipher");
        assert_eq!(field_of(|b| b.salt = "!".into()), "salt");
        assert_eq!(field_of(|b| b.salt = BASE64.encode([0u8; 4])), "salt");
        assert_eq!(field_of(|b| b.nonce = BASE64.encode([0u8; 4])), "nonce");
        assert_eq!(field_of(|b| b.ciphertext = "!".into()), "ciphertext");
    }
}
