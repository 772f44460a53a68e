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
                    return encode_into(out, |buf| traffic.encrypt(plain, buf));
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

/// What rustls's unbuffered encoders say when `out` is too short: how long it must be.
/// Any other error is the session's failure.
trait TooShort: std::fmt::Display {
    fn required(&self) -> Option<usize>;
}

impl TooShort for EncodeError {
    fn required(&self) -> Option<usize> {
        match self {
            EncodeError::InsufficientSize(size) => Some(size.required_size),
            _ => None,
        }
    }
}

impl TooShort for EncryptError {
    fn required(&self) -> Option<usize> {
        match self {
            EncryptError::InsufficientSize(size) => Some(size.required_size),
            _ => None,
        }
    }
}

/// Runs `encode` (a handshake message's or application data's) on the spare end of
/// `out`, growing it to the size rustls asks for.
fn encode_into<E: TooShort>(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<(), rustls::Error> {
    let start = out.len();
    loop {
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(error) => match error.required() {
                Some(required) => out.resize(start + required, 0),
                None => return Err(rustls::Error::General(error.to_string())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use super::*;

    /// A server config for 127.0.0.1 and a client config trusting it.
    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = made.cert.der().clone();
        let key = rustls_pki_types::PrivateKeyDer::try_from(made.key_pair.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// Moves the client's pending records to the server in pieces of `step` bytes,
    /// and the server's answer back; returns the plaintext the server got.
    fn client_to_server(
        client: &mut rustls::ClientConnection,
        server: &mut ServerTls,
        step: usize,
    ) -> Vec<u8> {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let mut plain = BytesMut::new();
        let mut back = Vec::new();
        for piece in wire.chunks(step.max(1)) {
            assert_eq!(
                server.feed(piece, &mut plain, &mut back).unwrap(),
                Fed::Open
            );
        }
        let mut back = &back[..];
        while !back.is_empty() {
            client.read_tls(&mut back).unwrap();
            client.process_new_packets().unwrap();
        }
        plain.to_vec()
    }

    #[test]
    fn handshake_and_data_survive_records_split_at_every_byte_boundary() {
        let (server_config, client_config) = configs();
        for step in [1, 2, 3, 7, 64, 1000, usize::MAX] {
            let mut server = ServerTls::new(server_config.clone()).unwrap();
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let mut client = rustls::ClientConnection::new(client_config.clone(), name).unwrap();
            // ClientHello, then the client's Finished with the request behind it.
            client
                .writer()
                .write_all(b"GET / HTTP/1.1\r\n\r\n")
                .unwrap();
            let mut got = client_to_server(&mut client, &mut server, step);
            got.extend(client_to_server(&mut client, &mut server, step));
            assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n", "step {step}");
            assert!(!client.is_handshaking());
            assert!(
                server.partial.capacity() == 0,
                "nothing kept once records are whole"
            );

            // Server to client: one batch, several records when over 16 KiB.
            let big = vec![b'x'; 40_000];
            let mut cipher = Vec::new();
            server.encrypt(&big, &mut cipher).unwrap();
            let mut wire = &cipher[..];
            let mut echoed = Vec::new();
            while !wire.is_empty() {
                client.read_tls(&mut wire).unwrap();
                let state = client.process_new_packets().unwrap();
                let mut chunk = vec![0; state.plaintext_bytes_to_read()];
                client.reader().read_exact(&mut chunk).unwrap();
                echoed.extend(chunk);
            }
            assert_eq!(echoed, big);

            // A close_notify ends the session.
            client.send_close_notify();
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            let mut plain = BytesMut::new();
            assert_eq!(server.feed_traffic(&wire, &mut plain).unwrap(), Fed::Closed);
        }
    }

    #[test]
    fn a_plain_text_request_is_a_tls_error() {
        let (server_config, _) = configs();
        let mut server = ServerTls::new(server_config).unwrap();
        let (mut plain, mut out) = (BytesMut::new(), Vec::new());
        assert!(server
            .feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut plain, &mut out)
            .is_err());
        assert!(plain.is_empty());
    }
}
