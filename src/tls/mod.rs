//! TLS termination (rustls, `ring` provider): loading and reloading the server's
//! certificate, and the per-connection steps the reader and the flush path call to
//! decrypt what was read and encrypt what is flushed. It does no I/O of its own: the
//! runtime's reader and writer keep doing every read and write on the socket.
//!
//! Design (see README "TLS"): each connection's session ([`ServerTls`], rustls's
//! unbuffered API, so rustls holds no buffers of its own) lives in its slab entry,
//! boxed, so a plain connection pays one pointer. The core's reader decrypts each read
//! in place in its read buffer; the flush path turns a batch of queued frames into TLS records
//! (one record per 16 KiB of the batch) written in one `writev`, as plain frames are.

pub mod client;
mod session;

pub use session::{Fed, ServerTls};

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ws::OutFrame;

/// What went wrong loading a certificate or key: the server refuses to start (or, on
/// SIGHUP, keeps the certificate it has).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate {path}: {source}")]
    Cert {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("no certificate in {0} (expected PEM `BEGIN CERTIFICATE` blocks)")]
    NoCert(PathBuf),
    #[error("cannot read TLS private key {path}: {source} (expected a PEM private key)")]
    Key {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("TLS certificate {cert} and key {key} do not make a server config: {source}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// The rustls provider every TLS config here uses: `ring` (builds without cmake or a C
/// toolchain beyond cc, and faster than aws-lc-rs).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, in order; none is an error.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.to_path_buf()));
    }
    Ok(certs)
}

/// Reads a PEM certificate chain and private key into a server config.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = read_certs(cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    let config_error = |source| TlsError::Config {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(config_error)?;
    // WebSocket only; no ALPN needed. No session tickets: resumption would keep
    // server state per client for little gain on long-lived connections.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The server's current TLS config, shared by every core: a core takes the current
/// one for each new connection (a read lock at accept, never on the data path), and
/// SIGHUP swaps it. Connections keep the config they started with.
pub struct TlsSlot {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for TlsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSlot")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl TlsSlot {
    /// Loads the certificate and key once; an error refuses the start.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsSlot, TlsError> {
        Ok(TlsSlot {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(load_server_config(cert, key)?),
        })
    }

    /// Reads the files again; on success new connections use them, on error the
    /// current certificate stays (the error says why).
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_server_config(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A server session for a new connection.
    pub(crate) fn session(&self) -> Option<Box<ServerTls>> {
        ServerTls::new(self.current()).ok().map(Box::new)
    }
}

/// Replaces a batch of frames by the TLS records that carry them: one frame of
/// ciphertext (one record per 16 KiB), written like any pre-encoded frame, in one
/// `writev`. False when the session failed: the caller shuts the socket.
pub(crate) fn encrypt_frames(tls: &mut ServerTls, frames: &mut Vec<OutFrame>) -> bool {
    let len = frames
        .iter()
        .map(|frame| frame.header.as_slice().len() + frame.payload.len())
        .sum();
    // The unbuffered API encrypts from one slice: the batch is gathered once here
    // (rustls copies it into the output buffer anyway, and encrypts it there).
    let mut plain = Vec::with_capacity(len);
    for frame in frames.iter() {
        plain.extend_from_slice(frame.header.as_slice());
        plain.extend_from_slice(&frame.payload[..]);
    }
    frames.clear();
    let mut cipher = Vec::with_capacity(len + 64);
    if tls.encrypt(&plain, &mut cipher).is_err() {
        return false;
    }
    frames.push(OutFrame::preencoded(Bytes::from(cipher)));
    true
}
