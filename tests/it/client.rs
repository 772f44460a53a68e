//! A blocking WebSocket client for tests, on `std::net::TcpStream` with read
//! deadlines, built on the crate's codec in the client role. It can also send raw
//! bytes, to play a broken peer. It does no I/O on its own: each call waits for
//! exactly what it names, under a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcast::ws::handshake::{client_request, parse_response};
use ringcast::ws::{encode_masked, Decoder, Incoming, Opcode, ProtocolError, Role};

use crate::WAIT;

/// The client decoder's message limit: far above anything the tests send.
const CLIENT_MAX_MESSAGE: usize = 64 << 20;

/// Why [`TestClient::recv`] returned no frame.
#[derive(Debug)]
#[expect(
    dead_code,
    reason = "the fields are read through Debug, in failure messages"
)]
pub enum RecvError {
    /// Nothing complete arrived before the deadline.
    Timeout,
    /// The server closed the TCP connection (FIN or reset).
    Closed,
    /// The server sent bytes the client-role decoder refuses.
    Protocol(ProtocolError),
    Io(io::Error),
}

pub struct TestClient {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
    /// Xorshift state for frame masks: masks vary, runs repeat.
    mask_state: u32,
}

impl TestClient {
    /// The socket, for tests that look at it without reading (e.g. its TCP state).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Connects and completes the upgrade; panics if the server refuses it.
    pub fn connect(addr: SocketAddr) -> TestClient {
        let stream = TcpStream::connect(addr).expect("connect");
        TestClient::upgrade(stream, &[])
    }

    /// Completes the upgrade on an already connected stream (e.g. one with socket
    /// options set before connecting). `pipelined` goes out in the same write as the
    /// request.
    pub fn upgrade(mut stream: TcpStream, pipelined: &[u8]) -> TestClient {
        stream.set_nodelay(true).expect("nodelay");
        let addr = stream.peer_addr().expect("peer addr");
        let (mut request, key) = client_request(&addr.to_string(), "/", nonce(addr));
        request.extend_from_slice(pipelined);
        stream.write_all(&request).expect("send upgrade request");
        let mut client = TestClient {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(Role::Client, CLIENT_MAX_MESSAGE),
            mask_state: 0x9E37_79B9,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            match parse_response(&client.buf, &key) {
                Ok(Some(len)) => {
                    let _ = client.buf.split_to(len);
                    return client;
                }
                Ok(None) => client.fill(deadline).expect("read the upgrade response"),
                Err(rejected) => panic!("upgrade refused: {rejected}: {:?}", client.buf),
            }
        }
    }

    /// Sends one final masked frame.
    pub fn send(&mut self, opcode: Opcode, payload: &[u8]) {
        self.send_frame(opcode, true, payload);
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(Opcode::Text, text.as_bytes());
    }

    /// Sends several final masked text frames in one write, so the server reads them
    /// together.
    pub fn send_texts_at_once(&mut self, texts: &[&str]) {
        let mut bytes = Vec::new();
        for text in texts {
            let mask = self.next_mask();
            bytes.extend(encode_masked(Opcode::Text, true, text.as_bytes(), mask));
        }
        self.send_raw(&bytes);
    }

    /// Sends one masked frame, final or not (for fragmentation).
    pub fn send_frame(&mut self, opcode: Opcode, fin: bool, payload: &[u8]) {
        let mask = self.next_mask();
        self.send_raw(&encode_masked(opcode, fin, payload, mask));
    }

    /// Sends a close frame with `code` and `reason`.
    pub fn send_close(&mut self, code: u16, reason: &str) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send(Opcode::Close, &payload);
    }

    /// Ends the connection with a TCP reset (SO_LINGER 0), no close frame, no FIN:
    /// a peer that crashed or lost its network.
    pub fn reset(self) {
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
        drop(self);
    }

    /// Sends bytes as they are: no framing, no masking.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to server");
    }

    /// The next frame or message, waiting up to [`WAIT`].
    pub fn recv(&mut self) -> Result<Incoming, RecvError> {
        self.recv_until(Instant::now() + WAIT)
    }

    /// The next frame or message, waiting until `deadline`.
    pub fn recv_until(&mut self, deadline: Instant) -> Result<Incoming, RecvError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(item)) => return Ok(item),
                Ok(None) => self.fill(deadline)?,
                Err(error) => return Err(RecvError::Protocol(error)),
            }
        }
    }

    /// The next item, which must be a whole text or binary message: its payload.
    pub fn recv_message(&mut self) -> Bytes {
        match self.recv() {
            Ok(Incoming::Text(payload) | Incoming::Binary(payload)) => payload,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next item, which must be a close frame: its code (1005 for none).
    pub fn expect_close(&mut self) -> u16 {
        match self.recv() {
            Ok(Incoming::Close(frame)) => frame.map_or(1005, |(code, _)| code),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// Waits for the server to end the TCP connection, with nothing sent before it.
    pub fn expect_eof(&mut self) {
        match self.recv() {
            Err(RecvError::Closed) => {}
            other => panic!("expected the server to close the connection, got {other:?}"),
        }
    }

    /// Reads more bytes into the buffer, waiting until `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<(), RecvError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RecvError::Timeout);
        }
        // A zero read timeout means "block forever": never pass one.
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(RecvError::Io)?;
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(RecvError::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(RecvError::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Err(RecvError::Closed),
            Err(e) => Err(RecvError::Io(e)),
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x.to_be_bytes()
    }
}

/// A key nonce that differs per connection (by local port) but is reproducible.
fn nonce(peer: SocketAddr) -> [u8; 16] {
    let mut nonce = [0x5Au8; 16];
    nonce[..2].copy_from_slice(&peer.port().to_be_bytes());
    nonce
}

/// A plain HTTP answer, read to the end of the connection.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` on a new connection and reads the answer until the server closes
/// the connection (which it must, within [`WAIT`]).
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(request).expect("send request");
    read_http_response(&mut stream)
}

/// Reads an HTTP answer on `stream` until the server closes the connection (which it
/// must, within [`WAIT`]).
pub fn read_http_response(stream: &mut TcpStream) -> HttpResponse {
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("the server answers and closes the connection");
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(&raw) {
        Ok(httparse::Status::Complete(len)) => len,
        other => panic!(
            "not a complete HTTP response ({other:?}): {:?}",
            String::from_utf8_lossy(&raw)
        ),
    };
    HttpResponse {
        status: response.code.expect("status code"),
        headers: response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: raw[len..].to_vec(),
    }
}

/// The kernel's TCP state of a socket (`TCP_INFO`): 7 is `TCP_CLOSE`, which a client
/// socket reaches when it receives a reset.
pub fn tcp_state(stream: &TcpStream) -> u8 {
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, a live local.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_state
}

pub const TCP_CLOSE: u8 = 7;
