//! wss:// for the load tool: a rustls client session (buffered API; the load tool's
//! own memory is not what is measured) shared by a connection's reading and writing
//! tasks on one thread. Sans-IO helpers; `client.rs` does the reads and writes.

use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;

use bytes::BytesMut;
use rustls::ClientConnection;

use super::target::Target;

/// A connection's TLS session, shared by its reader and writer (one thread).
#[derive(Clone)]
pub struct LoadTls(Rc<RefCell<ClientConnection>>);

impl LoadTls {
    /// A session for `target` (its host is a loopback IP or `localhost`).
    pub fn new(target: &Target) -> io::Result<Option<LoadTls>> {
        let Some(config) = &target.tls else {
            return Ok(None);
        };
        let host = target.addr.ip().to_string();
        let name = rustls_pki_types::ServerName::try_from(host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut session =
            ClientConnection::new(config.0.clone(), name).map_err(io::Error::other)?;
        session.set_buffer_limit(None);
        Ok(Some(LoadTls(Rc::new(RefCell::new(session)))))
    }

    pub fn is_handshaking(&self) -> bool {
        self.0.borrow().is_handshaking()
    }

    /// Encrypts `plain` (buffered until the handshake is done) and returns every
    /// record waiting to go out.
    pub fn encrypt(&self, plain: &[u8]) -> io::Result<Vec<u8>> {
        let mut session = self.0.borrow_mut();
        if !plain.is_empty() {
            session.writer().write_all(plain)?;
        }
        let mut out = Vec::new();
        while session.wants_write() {
            session.write_tls(&mut out)?;
        }
        Ok(out)
    }

    /// Decrypts the bytes of one read into `plain`. `Ok(false)`: the server closed.
    pub fn decrypt(&self, mut cipher: &[u8], plain: &mut BytesMut) -> io::Result<bool> {
        let mut session = self.0.borrow_mut();
        while !cipher.is_empty() {
            session.read_tls(&mut cipher)?;
            let state = session
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            crate::tls::client::take_plaintext(
                &mut session,
                state.plaintext_bytes_to_read(),
                plain,
            )?;
            if state.peer_has_closed() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
