//! The client side's TLS config: trusted roots from `--ca FILE` or the bundled
//! webpki roots. The blocking client (`client::websocket`) and the load tool use it.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;

use super::{provider, TlsError};

/// A client config trusting the certificates in `ca` (PEM), or the Mozilla roots
/// bundled by webpki-roots when `ca` is `None`.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in super::read_certs(path)? {
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

/// Appends to `plain` the `available` bytes of plaintext a client session has
/// decrypted (`IoState::plaintext_bytes_to_read`). The blocking client's and the load
/// tool's read paths both end here.
pub(crate) fn take_plaintext(
    session: &mut rustls::ClientConnection,
    available: usize,
    plain: &mut bytes::BytesMut,
) -> std::io::Result<()> {
    use std::io::Read;
    if available > 0 {
        let len = plain.len();
        plain.resize(len + available, 0);
        let n = session.reader().read(&mut plain[len..])?;
        plain.truncate(len + n);
    }
    Ok(())
}
