//! STARTTLS for listeners: a `TlsAcceptor` built from the PEM files of [`ServerTls`] (TLS 1.2 and
//! 1.3 only, ring provider), and the [`TlsInfo`] a finished handshake gives the envelope and the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerTls;
use crate::envelope::TlsInfo;

/// Why a listener's TLS settings cannot be used. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate file {}: {cause}", path.display())]
    Certificate { path: PathBuf, cause: pem::Error },
    #[error("TLS certificate file {} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("cannot read TLS private key file {}: {cause}", path.display())]
    PrivateKey { path: PathBuf, cause: pem::Error },
    #[error("TLS certificate {} and key {} do not fit together: {cause}", certificate.display(), private_key.display())]
    Config {
        certificate: PathBuf,
        private_key: PathBuf,
        cause: rustls::Error,
    },
}

/// Reads the certificate chain and key and builds the acceptor STARTTLS hands the stream to.
pub fn acceptor(tls: &ServerTls) -> Result<TlsAcceptor, TlsError> {
    let certificates = read_certificates(&tls.certificate)?;
    let key =
        PrivateKeyDer::from_pem_file(&tls.private_key).map_err(|cause| TlsError::PrivateKey {
            path: tls.private_key.clone(),
            cause,
        })?;
    let config_error = |cause| TlsError::Config {
        certificate: tls.certificate.clone(),
        private_key: tls.private_key.clone(),
        cause,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(config_error)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |cause| TlsError::Certificate {
        path: path.to_path_buf(),
        cause,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

/// The negotiated protocol and cipher suite, in the names the mail log uses (`TLSv1.3`,
/// `TLS13_AES_256_GCM_SHA384`).
pub fn tls_info(connection: &rustls::ServerConnection) -> TlsInfo {
    let protocol = match connection.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    };
    let cipher = connection
        .negotiated_cipher_suite()
        .map(|suite| {
            let id = suite.suite();
            id.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{id:?}"))
        })
        .unwrap_or_else(|| "unknown".to_string());
    TlsInfo { protocol, cipher }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("postern-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = ServerTls {
            certificate: dir.join("missing-cert.pem"),
            private_key: dir.join("missing-key.pem"),
        };
        let err = acceptor(&missing).err().expect("no files").to_string();
        assert!(err.contains("missing-cert.pem"), "{err}");

        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert_path = dir.join("cert.pem");
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        let no_key = ServerTls {
            certificate: cert_path.clone(),
            private_key: dir.join("nokey.pem"),
        };
        let err = acceptor(&no_key).err().expect("no key").to_string();
        assert!(err.contains("nokey.pem"), "{err}");

        let key_path = dir.join("key.pem");
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let no_cert = ServerTls {
            certificate: empty,
            private_key: key_path.clone(),
        };
        assert!(matches!(
            acceptor(&no_cert),
            Err(TlsError::NoCertificate { .. })
        ));

        assert!(
            acceptor(&ServerTls {
                certificate: cert_path,
                private_key: key_path
            })
            .is_ok()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
