//! The rustls client configurations for STARTTLS to next hops, built once at start from
//! [`DeliveryConfig::ca_file`](crate::config::DeliveryConfig) and shared by every connection of
//! [`super::client`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why the client TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the trust anchors in {}: {detail}", path.display())]
    CaFile { path: PathBuf, detail: String },
    #[error("{} holds no usable CA certificate", path.display())]
    NoCertificates { path: PathBuf },
    #[error("TLS client configuration: {0}")]
    Rustls(rustls::Error),
}

/// The two client configurations: `required` verifies the peer, `may` only encrypts.
#[derive(Clone)]
pub struct TlsConfigs {
    verified: Arc<ClientConfig>,
    unverified: Arc<ClientConfig>,
}

impl fmt::Debug for TlsConfigs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfigs").finish_non_exhaustive()
    }
}

impl TlsConfigs {
    /// Trust anchors from the PEM bundle `ca_file`, or the bundled web PKI roots when `None`.
    pub fn new(ca_file: Option<&Path>) -> Result<TlsConfigs, TlsSetupError> {
        let roots = match ca_file {
            Some(path) => roots_from_file(path)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verified = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsSetupError::Rustls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let verifier = AcceptAnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        };
        let unverified = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsSetupError::Rustls)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(TlsConfigs {
            verified: Arc::new(verified),
            unverified: Arc::new(unverified),
        })
    }

    /// For `required`: the certificate chain and the host name are checked.
    pub fn verified(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.verified)
    }

    /// For `may`: opportunistic encryption, any certificate accepted.
    pub fn unverified(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.unverified)
    }
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let ca_error = |detail: String| TlsSetupError::CaFile {
        path: path.to_path_buf(),
        detail,
    };
    // Read first so that a missing file reports the I/O error, not a PEM one.
    let pem = std::fs::read(path).map_err(|e: io::Error| ca_error(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_error(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsSetupError::NoCertificates {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

/// `may` mode: a peer's certificate is not checked (self-signed certificates are the norm between
/// MTAs), but the handshake signatures still are, so the session is bound to the key presented.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `TLSv1.3`, the way gateways' logs name protocol versions.
pub(crate) fn protocol_name(version: Option<rustls::ProtocolVersion>) -> String {
    match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_roots_build() {
        TlsConfigs::new(None).unwrap();
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let err = TlsConfigs::new(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error() {
        let dir = std::env::temp_dir().join(format!("postern-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = TlsConfigs::new(Some(&path)).unwrap_err();
        assert!(matches!(err, TlsSetupError::NoCertificates { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
