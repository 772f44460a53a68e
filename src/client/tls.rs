//! TLS for the blocking client (wss://): one rustls client session shared by the
//! reading and the sending half (a mutex, held while the bytes of one read are
//! decrypted or one write is encrypted and written). Every socket write of the session
//! happens under the lock, so records leave in order whichever half wrote them.

use std::io::{self, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use rustls::ClientConnection;
use rustls_pki_types::ServerName;

use super::error::ClientError;

/// A client session, shared by [`super::WsReader`] and [`super::WsWriter`].
#[derive(Clone, Debug)]
pub(crate) struct ClientTls {
    session: Arc<Mutex<ClientConnection>>,
}

impl ClientTls {
    /// A session for `host`, trusting `ca` (PEM) or the bundled webpki roots.
    pub(crate) fn new(host: &str, ca: Option<&Path>) -> Result<ClientTls, ClientError> {
        let config = crate::tls::client::client_config(ca)
            .map_err(|e| ClientError::TlsSetup(e.to_string()))?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| ClientError::TlsSetup(format!("server name {host:?}: {e}")))?;
        let mut session = ClientConnection::new(config, name)
            .map_err(|e| ClientError::TlsSetup(e.to_string()))?;
        // Each write is written out whole right away (`write_all`): no limit needed.
        session.set_buffer_limit(None);
        Ok(ClientTls {
            session: Arc::new(Mutex::new(session)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClientConnection> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encrypts `bytes` and writes the records (and anything else pending).
    pub(crate) fn write_all(&self, mut stream: &TcpStream, bytes: &[u8]) -> io::Result<()> {
        let mut session = self.lock();
        session.writer().write_all(bytes)?;
        while session.wants_write() {
            session.write_tls(&mut stream)?;
        }
        Ok(())
    }

    /// Decrypts the bytes of one read into `plain`, answering the handshake as it
    /// goes. The peer's close_notify reads as the end of the stream (`Ok(false)`).
    pub(crate) fn read(
        &self,
        mut stream: &TcpStream,
        mut cipher: &[u8],
        plain: &mut BytesMut,
    ) -> io::Result<bool> {
        let mut session = self.lock();
        let mut open = true;
        while !cipher.is_empty() {
            session.read_tls(&mut cipher)?;
            let processed = session.process_new_packets();
            // Handshake messages, or the alert that explains a failure.
            while session.wants_write() {
                session.write_tls(&mut stream)?;
            }
            let state = processed.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            crate::tls::client::take_plaintext(
                &mut session,
                state.plaintext_bytes_to_read(),
                plain,
            )?;
            if state.peer_has_closed() {
                open = false;
            }
        }
        Ok(open)
    }
}
