//! Native TLS for the main listener (rustls with ring, TLS 1.2 and 1.3): the certificate chain
//! and key come from `tls_cert_file` and `tls_key_file`, and are read again on SIGHUP so a
//! renewed certificate (certbot, cert-manager) is served without a restart. A renewal that
//! cannot be read keeps the certificate being served.

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The certificate being served, and the files it came from.
#[derive(Debug)]
pub struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertificateFiles {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, String> {
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(read(cert, key)?)),
            cert: cert.to_owned(),
            key: key.to_owned(),
        }))
    }

    /// Reads both files again; on any error the current certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = Arc::new(read(&self.cert, &self.key)?);
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        Ok(())
    }
}

impl ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        )
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The chain (leaf first) and its private key, checked to belong together.
fn read(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let cert_pem = std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key_pem = std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{} holds no PEM private key: {e}", key.display()))?;
    CertifiedKey::from_der(chain, private_key, &provider()).map_err(|e| {
        format!(
            "the key in {} does not fit the certificate in {}: {e}",
            key.display(),
            cert.display()
        )
    })
}

/// The server side of TLS, answering every handshake with the current certificate.
pub fn server_config(certificates: Arc<CertificateFiles>) -> Result<ServerConfig, String> {
    Ok(ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(certificates))
}

/// Reloads the certificate on every SIGHUP, until the returned task is aborted.
pub fn reload_on_hangup(certificates: Arc<CertificateFiles>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match certificates.reload() {
                Ok(()) => tracing::info!("reloaded the TLS certificate"),
                Err(error) => {
                    tracing::error!(%error, "kept the TLS certificate being served: cannot load the new one")
                }
            }
        }
    }))
}
