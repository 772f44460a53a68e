//! The client side's TLS config: trusted roots from `--ca FILE` or the bundled
//! webpki roots. The blocking client (`client::websocket`) and the load tool use it.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::{provider, TlsError};

/// A client config trusting the certificates in `ca` (PEM), or the Mozilla roots
/// bundled by webpki-roots when `ca` is `None`.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|source| TlsError::Cert {
                    path: path.to_path_buf(),
                    source,
                })?;
            if certs.is_empty() {
                return Err(TlsError::NoCert(path.to_path_buf()));
            }
            for cert in certs {
                roots.add(cert).map_err(|source| TlsError::Config {
                    cert: path.to_path_buf(),
                    key: path.to_path_buf(),
                    source,
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            cert: Default::default(),
            key: Default::default(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
