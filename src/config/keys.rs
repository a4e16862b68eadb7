//! The signing key for operator JWTs and the master key for secrets at rest: read from the
//! configuration or generated into the data directory, and refused when anyone could know them.

use super::{Config, ConfigError, key_check};
use crate::secrets::Keyring;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

impl Config {
    /// The signing key for operator JWTs and the master key for secrets at rest: from the
    /// configuration when given, otherwise from (or newly generated into) the data directory, so
    /// that `gmp serve` works with no setup and keeps its keys across restarts.
    pub fn load_keys(&self) -> Result<Keys, ConfigError> {
        let (jwt_secret, name) = match (&self.jwt_secret, &self.jwt_secret_file) {
            (Some(secret), _) => (secret.expose().to_owned(), "`jwt_secret`".to_owned()),
            (None, Some(path)) => (
                read_key_file(path)?,
                format!("`jwt_secret_file` ({})", path.display()),
            ),
            (None, None) => (
                self.load_or_generate("jwt-secret", "GMP_JWT_SECRET")?,
                format!("the key in {}", self.data_dir.join("jwt-secret").display()),
            ),
        };
        if let Some(problem) =
            key_check::text_problem(&jwt_secret).or_else(|| key_check::jwt_problem(jwt_secret.as_bytes()))
        {
            return Err(weak_key(&name, &problem, key_check::HOW_TO_GENERATE_JWT));
        }
        let (master_key_text, name) = match (&self.master_key, &self.master_key_file) {
            (Some(key), _) => (key.expose().to_owned(), "`master_key`".to_owned()),
            (None, Some(path)) => (
                read_key_file(path)?,
                format!("`master_key_file` ({})", path.display()),
            ),
            (None, None) => (
                self.load_or_generate("master-key", "GMP_MASTER_KEY")?,
                format!("the key in {}", self.data_dir.join("master-key").display()),
            ),
        };
        // A placeholder is named as such before it fails to decode.
        if let Some(problem) = key_check::text_problem(&master_key_text) {
            return Err(weak_key(&name, &problem, key_check::HOW_TO_GENERATE_MASTER));
        }
        let master_key = decode_master_key(&master_key_text, &name)?;
        if let Some(problem) = key_check::master_key_problem(&master_key) {
            return Err(weak_key(&name, &problem, key_check::HOW_TO_GENERATE_MASTER));
        }
        let previous_master_keys = self
            .previous_master_key_texts()
            .map(|(name, text)| decode_master_key(text, &name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keys {
            jwt_secret: SecretBytes(jwt_secret.into_bytes()),
            keyring: Keyring::new(&master_key, &previous_master_keys),
        })
    }

    /// Refuses a published or weak key among `previous_master_keys`. `gmp serve` calls this;
    /// `gmp keys rotate` does not, because re-sealing is how a deployment leaves such a key.
    pub fn check_previous_master_keys(&self) -> Result<(), ConfigError> {
        for (name, text) in self.previous_master_key_texts() {
            let problem = match decode_master_key(text, &name) {
                Ok(key) => key_check::master_key_problem(&key),
                Err(_) => None,
            };
            if let Some(problem) = key_check::text_problem(text).or(problem) {
                return Err(ConfigError::Secrets(format!(
                    "{name} {problem}: anyone could open the secrets sealed under it. Run `gmp keys \
                     rotate` to re-seal them under `master_key`, then remove it"
                )));
            }
        }
        Ok(())
    }

    fn previous_master_key_texts(&self) -> impl Iterator<Item = (String, &str)> {
        self.previous_master_keys
            .iter()
            .flat_map(|list| list.expose().split(','))
            .filter(|key| !key.trim().is_empty())
            .enumerate()
            .map(|(i, key)| (format!("`previous_master_keys` entry {}", i + 1), key))
    }

    fn load_or_generate(&self, file_name: &str, variable: &str) -> Result<String, ConfigError> {
        let path = self.data_dir.join(file_name);
        if path.exists() {
            return read_key_file(&path);
        }
        self.ensure_data_dir()?;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let encoded = BASE64.encode(bytes);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| file.write_all(encoded.as_bytes()).map(|_| file))
            .map_err(|e| ConfigError::Secrets(format!("cannot write {}: {e}", path.display())))?;
        file.flush().ok();
        tracing::warn!(
            path = %path.display(),
            "generated a new {file_name} because none was configured; back it up, or set {variable} to manage it yourself (every replica needs the same one)"
        );
        Ok(encoded)
    }
}

fn decode_master_key(text: &str, name: &str) -> Result<[u8; 32], ConfigError> {
    BASE64
        .decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            ConfigError::Secrets(format!(
                "{name}: a master key must be the base64 encoding of exactly 32 bytes; {}",
                key_check::HOW_TO_GENERATE_MASTER
            ))
        })
}

fn weak_key(name: &str, problem: &str, how: &str) -> ConfigError {
    ConfigError::Secrets(format!("{name} {problem}, so it cannot protect anything; {how}"))
}

fn read_key_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|e| ConfigError::Secrets(format!("cannot read key file {}: {e}", path.display())))
}

/// Key material; `Debug` never shows it.
#[derive(Clone)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted {} bytes]", self.0.len())
    }
}

#[derive(Debug, Clone)]
pub struct Keys {
    pub jwt_secret: SecretBytes,
    /// Seals and opens secrets at rest.
    pub keyring: Keyring,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn generated_keys_are_persisted_owner_only_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let first = config.load_keys().unwrap();
        for name in ["jwt-secret", "master-key"] {
            let mode = std::fs::metadata(config.data_dir.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let second = config.load_keys().unwrap();
        assert_eq!(first.jwt_secret.expose(), second.jwt_secret.expose());
        assert_eq!(first.keyring.current_kid(), second.keyring.current_kid());
    }

    #[test]
    fn weak_or_malformed_keys_are_refused() {
        let short = Config {
            jwt_secret: Some(Secret::new("short")),
            master_key: Some(Secret::new(BASE64.encode([1u8; 32]))),
            ..Config::default()
        };
        assert!(short.load_keys().unwrap_err().to_string().contains("32 bytes"));
        let bad_master = Config {
            jwt_secret: Some(Secret::new("Vq3n8ZK1sX0pL7dT2mW9yB4cF6hJ5gRe")),
            master_key: Some(Secret::new("not base64!")),
            ..Config::default()
        };
        assert!(
            bad_master
                .load_keys()
                .unwrap_err()
                .to_string()
                .contains("master key")
        );
    }
}
