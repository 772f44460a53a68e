//! TLS termination (rustls, `ring` provider): loading and reloading the server's
//! certificate, and the per-connection steps the reader and the flush path call to
//! decrypt what was read and encrypt what is flushed. It does no I/O of its own: the
//! runtime's reader and writer keep doing every read and write on the socket.
//!
//! Design (see README "TLS"): each connection's `rustls::ServerConnection` (buffered
//! API) lives in its slab entry, boxed, so a plain connection pays one pointer. The
//! reader decrypts each read into its own read buffer (ciphertext copied once into
//! rustls); the flush path turns a batch of queued frames into TLS records (one
//! record per batch up to 16 KiB) written in one `writev`, as plain frames are.

pub mod client;

use std::io::{IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};
use rustls::server::ServerConnection;
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

/// Reads a PEM certificate chain and private key into a server config.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: cert.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cert.to_path_buf()));
    }
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
    pub(crate) fn session(&self) -> Option<Box<ServerConnection>> {
        let mut tls = ServerConnection::new(self.current()).ok()?;
        // The outbound queue is bounded by `max_outbound_bytes` already.
        tls.set_buffer_limit(None);
        Some(Box::new(tls))
    }
}

/// Feeds `cipher` to the session and appends the plaintext it yields to `plain`.
/// Returns false when the connection is over: a TLS error, or the peer's close_notify.
pub(crate) fn decrypt(tls: &mut ServerConnection, mut cipher: &[u8], plain: &mut BytesMut) -> bool {
    while !cipher.is_empty() {
        if tls.read_tls(&mut cipher).is_err() {
            return false;
        }
        let state = match tls.process_new_packets() {
            Ok(state) => state,
            Err(_) => return false,
        };
        let available = state.plaintext_bytes_to_read();
        if available > 0 {
            let len = plain.len();
            plain.resize(len + available, 0);
            match tls.reader().read(&mut plain[len..]) {
                Ok(n) => plain.truncate(len + n),
                Err(_) => return false,
            }
        }
        if state.peer_has_closed() {
            return false;
        }
    }
    true
}

/// What the session has to send (handshake flights, alerts, records), if anything.
pub(crate) fn take_output(tls: &mut ServerConnection) -> Option<Vec<u8>> {
    if !tls.wants_write() {
        return None;
    }
    let mut out = Vec::new();
    while tls.wants_write() {
        if tls.write_tls(&mut out).is_err() {
            break;
        }
    }
    Some(out)
}

/// Encrypts `plain` into records, returned with any other pending output.
pub(crate) fn encrypt(tls: &mut ServerConnection, plain: &[&[u8]]) -> Vec<u8> {
    let slices: Vec<IoSlice<'_>> = plain.iter().map(|part| IoSlice::new(part)).collect();
    // With no buffer limit (see `session`) rustls takes all of it at once, cut into
    // records of at most 16 KiB.
    let _ = tls.writer().write_vectored(&slices);
    take_output(tls).unwrap_or_default()
}

/// Replaces a batch of frames by the TLS records that carry them: one frame of
/// ciphertext, written like any pre-encoded frame (one `writev` per batch).
pub(crate) fn encrypt_frames(tls: &mut ServerConnection, frames: &mut Vec<OutFrame>) {
    let parts: Vec<&[u8]> = frames
        .iter()
        .flat_map(|frame| [frame.header.as_slice(), &frame.payload[..]])
        .filter(|part| !part.is_empty())
        .collect();
    let cipher = encrypt(tls, &parts);
    frames.clear();
    if !cipher.is_empty() {
        frames.push(OutFrame::preencoded(Bytes::from(cipher)));
    }
}
