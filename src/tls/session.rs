//! One server connection's TLS session on rustls's unbuffered API: rustls keeps its
//! state and keys, and every byte lives in buffers we own. Ciphertext that ends in the
//! middle of a record waits in `partial` (allocated only then; an idle connection has
//! none); plaintext goes straight into the reader's buffer; records for the socket go
//! into the caller's output. Sans-IO: the reader and the flush path do the I/O.

use bytes::BytesMut;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};

/// A server connection's TLS session (see the module doc).
pub struct ServerTls {
    conn: UnbufferedServerConnection,
    /// Ciphertext of a record not yet complete.
    partial: Vec<u8>,
    /// Records rustls produced while reading after the handshake (a KeyUpdate answer):
    /// sent ahead of the next flush's records.
    owed: Vec<u8>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("partial", &self.partial.len())
            .field("owed", &self.owed.len())
            .finish_non_exhaustive()
    }
}

/// What [`ServerTls::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// More may come.
    Open,
    /// The peer sent close_notify, or the session is closed: the connection is over.
    Closed,
}

impl ServerTls {
    pub fn new(config: std::sync::Arc<rustls::ServerConfig>) -> Result<ServerTls, rustls::Error> {
        Ok(ServerTls {
            conn: UnbufferedServerConnection::new(config)?,
            partial: Vec::new(),
            owed: Vec::new(),
        })
    }

    /// Takes the ciphertext of one read: appends its plaintext to `plain` and what must
    /// go back to the peer (handshake flights, alerts) to `out`.
    pub fn feed(
        &mut self,
        cipher: &[u8],
        plain: &mut BytesMut,
        out: &mut Vec<u8>,
    ) -> Result<Fed, rustls::Error> {
        self.partial.extend_from_slice(cipher);
        let mut fed = Fed::Open;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.partial);
            let mut more = false;
            match state? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record?;
                        discard += record.discard;
                        plain.extend_from_slice(record.payload);
                    }
                    more = true;
                }
                ConnectionState::ReadEarlyData(mut early) => {
                    // Never enabled (no tickets): dropped if a client sends some anyway.
                    while let Some(record) = early.next_record() {
                        discard += record?.discard;
                    }
                    more = true;
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(out, |buf| encode.encode(buf))?;
                    more = true;
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    // `out` is written by the caller once this returns, in order.
                    transmit.done();
                    more = true;
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => fed = Fed::Closed,
                // BlockedHandshake (needs more bytes), WriteTraffic (all read).
                _ => {}
            }
            self.partial.drain(..discard);
            if !more || fed == Fed::Closed {
                break;
            }
        }
        if self.partial.is_empty() && self.partial.capacity() > 0 {
            self.partial = Vec::new();
        }
        Ok(fed)
    }

    /// Like [`ServerTls::feed`] after the handshake: records owed to the peer wait for
    /// the next [`ServerTls::encrypt`].
    pub fn feed_traffic(
        &mut self,
        cipher: &[u8],
        plain: &mut BytesMut,
    ) -> Result<Fed, rustls::Error> {
        let mut owed = std::mem::take(&mut self.owed);
        let fed = self.feed(cipher, plain, &mut owed);
        self.owed = owed;
        fed
    }

    /// Encrypts `plain` (after the handshake) into records appended to `out`, after
    /// any records owed. Plaintext over 16 KiB is cut into several records.
    pub fn encrypt(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), rustls::Error> {
        out.append(&mut self.owed);
        self.owed = Vec::new();
        loop {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
            match state? {
                ConnectionState::WriteTraffic(mut traffic) => {
                    return encrypt_into(out, |buf| traffic.encrypt(plain, buf));
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(out, |buf| encode.encode(buf))?;
                }
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                _ => return Err(rustls::Error::General("TLS session not writable".into())),
            }
        }
    }
}

/// Runs `encode` on the spare end of `out`, growing it to the size rustls asks for.
fn encode_into(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), rustls::Error> {
    let start = out.len();
    loop {
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(size)) => out.resize(start + size.required_size, 0),
            Err(error) => return Err(rustls::Error::General(error.to_string())),
        }
    }
}

/// [`encode_into`] for application data.
fn encrypt_into(
    out: &mut Vec<u8>,
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), rustls::Error> {
    let start = out.len();
    loop {
        match encrypt(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(size)) => out.resize(start + size.required_size, 0),
            Err(error) => return Err(rustls::Error::General(error.to_string())),
        }
    }
}
