//! TLS for the submission listeners: load the operator's certificate, or
//! make a self-signed one on first start so the defaults work out of the box.
//!
//! One crypto provider for the whole relay: aws-lc-rs (also behind DKIM).

pub mod der;
pub mod selfsigned;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

/// The process-wide rustls provider.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a PEM certificate chain; the error says what is wrong with it.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{} holds no usable private key: {e}", path.display()))
}

/// Writes a self-signed certificate for `hostname` to `cert`/`key`
/// ([`selfsigned::generate`]), the key readable by its owner only.
pub fn generate_self_signed(hostname: &str, cert: &Path, key: &Path, now_secs: i64) -> Result<(), String> {
    let (cert_pem, key_pem) = selfsigned::generate(hostname, now_secs)?;
    for p in [cert, key] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
    }
    std::fs::write(cert, cert_pem).map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    write_private(key, key_pem.as_bytes()).map_err(|e| format!("cannot write {}: {e}", key.display()))?;
    Ok(())
}

/// Whether `cert` is a certificate herald made itself that has expired
/// by `now_secs` (then it may be made again; an operator's certificate
/// is never replaced).
pub fn own_certificate_expired(cert: &Path, now_secs: i64) -> bool {
    let Ok(certs) = load_certs(cert) else { return false };
    certs.first().and_then(|c| selfsigned::facts(c)).is_some_and(|f| f.herald_made && f.not_after <= now_secs)
}

/// Writes a secret file with mode 0600 from the start.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Builds the acceptor shared by every TLS-capable listener.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit together: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
