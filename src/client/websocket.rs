//! One blocking WebSocket connection in the client role, [`WsConnection`]: TCP
//! connect, the upgrade, then frames both ways over `std::net` with deadlines. It is
//! built on the sans-IO `ws` helpers the load tool's monoio connection uses too
//! (`client_request_with_headers`, `parse_response`, `put_masked`, the client-role
//! `Decoder`) and masks every frame with a fresh key from the operating system's
//! secure random source (RFC 6455 §5.3). Besides a correct peer's calls it has a raw
//! mode (any bytes, any frame, even after a close) for tests that play a broken peer.
//! It knows nothing of messages' meaning, pings or keepalive: `conn.rs` builds the
//! room protocol on top.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};

use super::config::ConnectOptions;
use super::error::{ClientError, Phase};
use super::tls::ClientTls;
use super::url::WsUrl;
use crate::ws::handshake::{client_request_with_headers, parse_response, UpgradeRejected};
use crate::ws::{put_masked, Decoder, HeaderBytes, Incoming, Opcode, Role};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// What the upgrade request asks for, beyond what every request carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpgradeRequest {
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    pipelined: Vec<u8>,
}

impl UpgradeRequest {
    /// A request for `path` with `Host: host` (e.g. `127.0.0.1:8080`).
    pub fn new(host: impl Into<String>, path: impl Into<String>) -> Self {
        UpgradeRequest {
            host: host.into(),
            path: path.into(),
            ..UpgradeRequest::default()
        }
    }

    /// The request for a `ws://` URL.
    pub fn for_url(url: &WsUrl) -> Self {
        UpgradeRequest::new(url.host_header(), url.path.clone())
    }

    /// Adds a header (e.g. `Origin`), sent as given.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Bytes sent in the same write right after the request, before the server has
    /// answered (e.g. frames, to test pipelining).
    pub fn pipelined(mut self, bytes: &[u8]) -> Self {
        self.pipelined.extend_from_slice(bytes);
        self
    }
}

/// An upgraded connection: a [`WsReader`] and a [`WsWriter`] on one socket.
///
/// ```no_run
/// use ringcast::client::{ConnectOptions, WsConnection, WsUrl};
/// use ringcast::ws::{Incoming, Opcode};
/// let url = WsUrl::parse("ws://127.0.0.1:8080/")?;
/// let mut ws = WsConnection::open(&url, &ConnectOptions::default())?;
/// ws.writer().send(Opcode::Text, b"hello")?;
/// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
/// if let Some(Incoming::Text(text)) = ws.reader().recv_until(deadline)? {
///     println!("{}", String::from_utf8_lossy(&text));
/// }
/// # Ok::<(), ringcast::client::ClientError>(())
/// ```
#[derive(Debug)]
pub struct WsConnection {
    reader: WsReader,
    writer: WsWriter,
    peer: SocketAddr,
}

impl WsConnection {
    /// Resolves the URL's host, connects to the first address that accepts (each
    /// within `connect_timeout`) and upgrades.
    pub fn open(url: &WsUrl, options: &ConnectOptions) -> Result<WsConnection, ClientError> {
        let stream = open_stream(url, options.connect_timeout)?;
        let tls = match url.tls {
            true => Some(ClientTls::new(&url.host, options.tls_ca.as_deref())?),
            false => None,
        };
        WsConnection::upgrade_over(stream, tls, &UpgradeRequest::for_url(url), options)
    }

    /// Upgrades an open stream (e.g. one with socket options set before connecting):
    /// sends `request`, then waits up to `handshake_timeout` for the server's 101.
    /// Bytes the server sent after it stay buffered for the reader.
    pub fn upgrade(
        stream: TcpStream,
        request: &UpgradeRequest,
        options: &ConnectOptions,
    ) -> Result<WsConnection, ClientError> {
        WsConnection::upgrade_over(stream, None, request, options)
    }

    /// [`WsConnection::upgrade`], through TLS when `tls` is given (the TLS handshake
    /// runs within `handshake_timeout`, with the upgrade).
    fn upgrade_over(
        stream: TcpStream,
        tls: Option<ClientTls>,
        request: &UpgradeRequest,
        options: &ConnectOptions,
    ) -> Result<WsConnection, ClientError> {
        // Frames go out in one write each; Nagle would hold back the small ones.
        let _ = stream.set_nodelay(true);
        let opening = |e| ClientError::io(Phase::Connecting, Duration::ZERO, e);
        let peer = stream.peer_addr().map_err(opening)?;
        let read_half = stream.try_clone().map_err(opening)?;
        let mut writer = WsWriter::new(stream, tls.clone(), options.write_timeout)?;
        let mut reader = WsReader::new(read_half, tls, options.max_message_bytes);
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let (mut bytes, key) =
            client_request_with_headers(&request.host, &request.path, random_nonce()?, &headers);
        bytes.extend_from_slice(&request.pipelined);
        writer.write(&bytes, Phase::Handshake)?;
        reader.read_upgrade_response(&key, options.handshake_timeout)?;
        Ok(WsConnection {
            reader,
            writer,
            peer,
        })
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The socket, for looking at it without reading (e.g. its TCP state).
    pub fn stream(&self) -> &TcpStream {
        &self.writer.stream
    }

    pub fn reader(&mut self) -> &mut WsReader {
        &mut self.reader
    }

    pub fn writer(&mut self) -> &mut WsWriter {
        &mut self.writer
    }

    /// Separate halves, for a reading thread and a sending one.
    pub fn split(self) -> (WsReader, WsWriter) {
        (self.reader, self.writer)
    }

    /// Ends the connection with a TCP reset (SO_LINGER 0): no close frame, no FIN, as
    /// a peer that crashed or lost its network.
    pub fn reset(self) -> Result<(), ClientError> {
        socket2::SockRef::from(&self.writer.stream)
            .set_linger(Some(Duration::ZERO))
            .map_err(|e| ClientError::io(Phase::Closing, Duration::ZERO, e))
        // Dropping both halves closes the socket's last descriptor: the reset.
    }
}

/// The receiving half: socket bytes in, frames and whole messages out.
#[derive(Debug)]
pub struct WsReader {
    stream: TcpStream,
    tls: Option<ClientTls>,
    buf: BytesMut,
    decoder: Decoder,
}

impl WsReader {
    fn new(stream: TcpStream, tls: Option<ClientTls>, max_message: usize) -> Self {
        WsReader {
            stream,
            tls,
            buf: BytesMut::new(),
            decoder: Decoder::new(Role::Client, max_message),
        }
    }

    /// The next whole message or control frame (pings, pongs and closes are not
    /// answered here); `Ok(None)` when `deadline` passed first. The end of the stream
    /// (or a reset) is [`ClientError::ConnectionLost`]; bytes the client-role decoder
    /// refuses are [`ClientError::Protocol`], and the caller should then close with
    /// the violation's code (RFC 6455 §7.1.7).
    pub fn recv_until(&mut self, deadline: Instant) -> Result<Option<Incoming>, ClientError> {
        loop {
            if let Some(item) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(item));
            }
            if !self.fill(deadline, Phase::Reading)? {
                return Ok(None);
            }
        }
    }

    /// After the close frames crossed: waits (until `deadline`) for the server to end
    /// the TCP connection, as the server should go first (RFC 6455 §7.1.1). Anything
    /// still arriving is discarded.
    pub fn wait_for_end(&mut self, deadline: Instant) {
        while let Ok(true) = self.fill(deadline, Phase::Closing) {
            self.buf.clear();
        }
    }

    /// Reads until the server's answer to the upgrade request is complete and checks
    /// it (RFC 6455 §4.1); bytes after it stay in the buffer.
    fn read_upgrade_response(&mut self, key: &str, timeout: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            match parse_response(&self.buf, key) {
                Ok(Some(len)) => {
                    self.buf.advance(len);
                    return Ok(());
                }
                Ok(None) => {
                    if !self.fill(deadline, Phase::Handshake)? {
                        return Err(ClientError::TimedOut {
                            during: Phase::Handshake,
                            after: timeout,
                        });
                    }
                }
                Err(UpgradeRejected::Status(status)) => {
                    return Err(ClientError::HandshakeRejected { status })
                }
                Err(other) => return Err(ClientError::BadHandshake(other)),
            }
        }
    }

    /// Reads more bytes, waiting until `deadline`. `Ok(false)`: the deadline passed.
    /// The end of the stream is [`ClientError::ConnectionLost`].
    fn fill(&mut self, deadline: Instant, phase: Phase) -> Result<bool, ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // A zero read timeout means "block forever": never pass one.
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| ClientError::io(phase, left, e))?;
        let mut chunk = [0u8; READ_CHUNK];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ClientError::ConnectionLost),
            Ok(n) => match &self.tls {
                None => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    Ok(true)
                }
                Some(tls) => match tls.read(&self.stream, &chunk[..n], &mut self.buf) {
                    Ok(true) => Ok(true),
                    Ok(false) => Err(ClientError::ConnectionLost),
                    Err(e) => Err(ClientError::io(phase, left, e)),
                },
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(ClientError::io(phase, left, e)),
        }
    }
}

/// A frame for [`WsWriter::send_raw_frames`], valid or not.
#[derive(Clone, Copy, Debug)]
pub struct RawFrame<'a> {
    pub opcode: Opcode,
    /// False for every fragment but the last (RFC 6455 §5.4).
    pub fin: bool,
    pub mask: RawMask,
    pub payload: &'a [u8],
}

/// How a [`RawFrame`] is masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawMask {
    /// A fresh key, as a correct client sends.
    Fresh,
    /// This key.
    Key([u8; 4]),
    /// No mask, which a server must refuse (RFC 6455 §5.1).
    Unmasked,
}

impl<'a> RawFrame<'a> {
    /// A final frame with a fresh mask: what [`WsWriter::send`] sends.
    pub fn new(opcode: Opcode, payload: &'a [u8]) -> Self {
        RawFrame {
            opcode,
            fin: true,
            mask: RawMask::Fresh,
            payload,
        }
    }

    /// The same frame as a fragment that more follow.
    pub fn not_final(self) -> Self {
        RawFrame { fin: false, ..self }
    }

    /// The same frame without a mask.
    pub fn unmasked(self) -> Self {
        RawFrame {
            mask: RawMask::Unmasked,
            ..self
        }
    }
}

/// The sending half. Every frame is masked with a new key, unless the raw mode says
/// otherwise.
#[derive(Debug)]
pub struct WsWriter {
    stream: TcpStream,
    tls: Option<ClientTls>,
    write_timeout: Duration,
    masks: MaskSource,
    close_sent: bool,
    /// Frames being encoded; kept to reuse its allocation.
    out: BytesMut,
}

impl WsWriter {
    fn new(
        stream: TcpStream,
        tls: Option<ClientTls>,
        write_timeout: Duration,
    ) -> Result<Self, ClientError> {
        stream
            .set_write_timeout(Some(write_timeout))
            .map_err(|e| ClientError::io(Phase::Sending, write_timeout, e))?;
        Ok(WsWriter {
            stream,
            tls,
            write_timeout,
            masks: MaskSource::default(),
            close_sent: false,
            out: BytesMut::new(),
        })
    }

    /// Sends one final frame. After our close frame nothing more may be sent
    /// (RFC 6455 §5.5.1): [`ClientError::NotConnected`].
    pub fn send(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), ClientError> {
        if self.close_sent {
            return Err(ClientError::NotConnected);
        }
        self.send_raw_frames(&[RawFrame::new(opcode, payload)])
    }

    /// Sends a close frame (once); `None` sends one without a status code.
    pub fn send_close(&mut self, code: Option<u16>) -> Result<(), ClientError> {
        if self.close_sent {
            return Ok(());
        }
        let code = code.map(u16::to_be_bytes);
        let result = self.send(Opcode::Close, code.as_ref().map_or(&[], |code| &code[..]));
        self.close_sent = true;
        result
    }

    /// Ends the TCP connection both ways at once; a read blocked on it returns.
    pub fn shutdown(&mut self) {
        self.close_sent = true;
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Raw mode: sends bytes as they are, no framing, no masking, no checks.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.write(bytes, Phase::Sending)
    }

    /// Raw mode: sends `frames` in one write, as told, with no checks (after our
    /// close too), so the server reads them together.
    pub fn send_raw_frames(&mut self, frames: &[RawFrame<'_>]) -> Result<(), ClientError> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        for frame in frames {
            let mask = match frame.mask {
                RawMask::Fresh => self.masks.next_mask()?,
                RawMask::Key(key) => key,
                RawMask::Unmasked => {
                    let header =
                        HeaderBytes::new(frame.opcode, frame.fin, frame.payload.len(), None);
                    out.put_slice(header.as_slice());
                    out.put_slice(frame.payload);
                    continue;
                }
            };
            let payload = frame.payload;
            put_masked(
                &mut out,
                frame.opcode,
                frame.fin,
                payload.len(),
                mask,
                |p| p.copy_from_slice(payload),
            );
        }
        let result = self.write(&out, Phase::Sending);
        self.out = out;
        result
    }

    fn write(&mut self, bytes: &[u8], phase: Phase) -> Result<(), ClientError> {
        match &self.tls {
            None => self.stream.write_all(bytes),
            Some(tls) => tls.write_all(&self.stream, bytes),
        }
        .map_err(|e| ClientError::io(phase, self.write_timeout, e))
    }
}

/// Mask keys from the operating system's CSPRNG, fetched 64 keys at a time.
#[derive(Debug)]
struct MaskSource {
    bytes: [u8; 256],
    used: usize,
}

impl Default for MaskSource {
    fn default() -> Self {
        MaskSource {
            bytes: [0; 256],
            used: 256,
        }
    }
}

impl MaskSource {
    fn next_mask(&mut self) -> Result<[u8; 4], ClientError> {
        if self.used == self.bytes.len() {
            getrandom::fill(&mut self.bytes).map_err(ClientError::Random)?;
            self.used = 0;
        }
        let mask = self.bytes[self.used..self.used + 4]
            .try_into()
            .expect("4 bytes");
        self.used += 4;
        Ok(mask)
    }
}

/// 16 random bytes for the upgrade's `Sec-WebSocket-Key` (RFC 6455 §4.1).
fn random_nonce() -> Result<[u8; 16], ClientError> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(ClientError::Random)?;
    Ok(nonce)
}

/// Resolves the host and connects to the first address that accepts.
fn open_stream(url: &WsUrl, timeout: Duration) -> Result<TcpStream, ClientError> {
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|source| ClientError::Resolve {
            host: url.host.clone(),
            source,
        })?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                last = Some(ClientError::Refused { addr })
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                last = Some(ClientError::TimedOut {
                    during: Phase::Connecting,
                    after: timeout,
                })
            }
            Err(source) => last = Some(ClientError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Resolve {
        host: url.host.clone(),
        source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
    }))
}

#[cfg(test)]
mod tests;
