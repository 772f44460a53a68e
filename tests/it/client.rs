//! The integration tests' WebSocket client: a thin wrapper over the library's blocking
//! connection ([`ringcast::client::WsConnection`]) that panics on what a test does not
//! expect and maps reads to [`RecvError`], plus raw HTTP exchanges and the socket's TCP
//! state. The raw mode (any bytes, any frame) plays a broken peer. It does no I/O on
//! its own: each call waits for exactly what it names, under a deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use bytes::Bytes;
use ringcast::client::{ClientError, ConnectOptions, RawFrame, UpgradeRequest, WsConnection};
use ringcast::ws::frame::close_payload;
use ringcast::ws::{Incoming, Opcode, ProtocolError};

use crate::WAIT;

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
    /// Anything else the connection reports.
    Other(ClientError),
}

pub struct TestClient {
    ws: WsConnection,
}

impl TestClient {
    /// The socket, for tests that look at it without reading (e.g. its TCP state).
    pub fn stream(&self) -> &TcpStream {
        self.ws.stream()
    }

    /// Connects and completes the upgrade; panics if the server refuses it.
    pub fn connect(addr: SocketAddr) -> TestClient {
        let stream = TcpStream::connect(addr).expect("connect");
        TestClient::upgrade(stream, &[])
    }

    /// Completes the upgrade on an already connected stream (e.g. one with socket
    /// options set before connecting). `pipelined` goes out in the same write as the
    /// request.
    pub fn upgrade(stream: TcpStream, pipelined: &[u8]) -> TestClient {
        let addr = stream.peer_addr().expect("peer addr");
        let request = UpgradeRequest::new(addr.to_string(), "/").pipelined(pipelined);
        TestClient::upgrade_with(stream, &request)
    }

    /// Connects and upgrades with `request` (its own path and headers); panics if the
    /// server refuses it.
    pub fn connect_with(addr: SocketAddr, request: &UpgradeRequest) -> TestClient {
        let stream = TcpStream::connect(addr).expect("connect");
        TestClient::upgrade_with(stream, request)
    }

    fn upgrade_with(stream: TcpStream, request: &UpgradeRequest) -> TestClient {
        let options = ConnectOptions {
            handshake_timeout: WAIT,
            // Far above anything the tests send.
            max_message_bytes: 64 << 20,
            ..ConnectOptions::default()
        };
        match WsConnection::upgrade(stream, request, &options) {
            Ok(ws) => TestClient { ws },
            Err(error) => panic!("upgrade refused: {error}"),
        }
    }

    /// Sends one final masked frame (even after a close frame: the raw mode).
    pub fn send(&mut self, opcode: Opcode, payload: &[u8]) {
        self.send_frames(&[RawFrame::new(opcode, payload)]);
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(Opcode::Text, text.as_bytes());
    }

    /// Sends several final masked text frames in one write, so the server reads them
    /// together.
    pub fn send_texts_at_once(&mut self, texts: &[&str]) {
        let frames: Vec<RawFrame> = texts
            .iter()
            .map(|text| RawFrame::new(Opcode::Text, text.as_bytes()))
            .collect();
        self.send_frames(&frames);
    }

    /// Sends one masked frame, final or not (for fragmentation).
    pub fn send_frame(&mut self, opcode: Opcode, fin: bool, payload: &[u8]) {
        self.send_frames(&[RawFrame {
            fin,
            ..RawFrame::new(opcode, payload)
        }]);
    }

    /// Sends a close frame with `code` and `reason`.
    pub fn send_close(&mut self, code: u16, reason: &str) {
        self.send(Opcode::Close, &close_payload(code, reason));
    }

    /// Ends the connection with a TCP reset (SO_LINGER 0), no close frame, no FIN:
    /// a peer that crashed or lost its network.
    pub fn reset(self) {
        self.ws.reset().expect("SO_LINGER 0");
    }

    /// Sends bytes as they are: no framing, no masking.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.ws.writer().send_raw(bytes).expect("send to server");
    }

    fn send_frames(&mut self, frames: &[RawFrame]) {
        self.ws
            .writer()
            .send_raw_frames(frames)
            .expect("send to server");
    }

    /// The next frame or message, waiting up to [`WAIT`].
    pub fn recv(&mut self) -> Result<Incoming, RecvError> {
        self.recv_until(Instant::now() + WAIT)
    }

    /// The next frame or message, waiting until `deadline`.
    pub fn recv_until(&mut self, deadline: Instant) -> Result<Incoming, RecvError> {
        match self.ws.reader().recv_until(deadline) {
            Ok(Some(item)) => Ok(item),
            Ok(None) => Err(RecvError::Timeout),
            Err(ClientError::ConnectionLost) => Err(RecvError::Closed),
            Err(ClientError::Protocol(error)) => Err(RecvError::Protocol(error)),
            Err(other) => Err(RecvError::Other(other)),
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
