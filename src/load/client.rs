//! One load-generating WebSocket client connection on a monoio runtime: TCP connect
//! (optionally from a chosen source address), the upgrade, then a reader half that
//! decodes with the project's codec in the client role and an [`SendQueue`] that a
//! writer task flushes in one write per wake-up. What to send is the scenario's call.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::target::Target;
use super::tls::LoadTls;
use crate::ws::deflate;
use crate::ws::handshake::{client_request_with_headers, parse_response, UpgradeRejected};
use crate::ws::{put_masked, Decoder, Incoming, Opcode, ProtocolError, Role, SeededMasks};

/// Largest upgrade response we wait for before calling it malformed.
const MAX_RESPONSE: usize = 8 * 1024;
/// Smallest free space offered to a read.
const READ_CHUNK: usize = 4 * 1024;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connection refused by {0}: is the server listening there?")]
    Refused(SocketAddr),
    #[error(
        "no free local port/address to connect from {source_ip:?}: {err} (use more --sources)"
    )]
    NoLocalAddress {
        source_ip: Option<IpAddr>,
        err: io::Error,
    },
    #[error("connecting to {addr}: {err}")]
    Io { addr: SocketAddr, err: io::Error },
    #[error("server refused the WebSocket upgrade: {reason} (first line: {first_line:?})")]
    Rejected {
        reason: UpgradeRejected,
        first_line: String,
    },
    #[error("server closed the connection during the upgrade")]
    ClosedDuringUpgrade,
    #[error("no upgrade response within {0:?}")]
    Timeout(Duration),
}

impl ConnectError {
    /// Short category for counting failures.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectError::Refused(_) => "refused",
            ConnectError::NoLocalAddress { .. } => "no local address",
            ConnectError::Io { .. } => "io",
            ConnectError::Rejected { .. } => "upgrade rejected",
            ConnectError::ClosedDuringUpgrade => "closed during upgrade",
            ConnectError::Timeout(_) => "timeout",
        }
    }
}

/// Why an open connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("server closed the TCP connection without a close frame")]
    Eof,
    #[error("server sent a close frame ({})", close_code_text(*.0))]
    ServerClose(Option<u16>),
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    #[error("server broke the protocol: {0}")]
    Protocol(#[from] ProtocolError),
}

fn close_code_text(code: Option<u16>) -> String {
    code.map_or_else(|| "no status code".into(), |code| format!("code {code}"))
}

/// An upgraded connection, before it is split.
pub struct WsStream {
    stream: TcpStream,
    /// wss://: the session the reader and writer share.
    tls: Option<LoadTls>,
    /// Bytes the server sent after its 101 response.
    leftover: BytesMut,
    /// The server agreed to permessage-deflate.
    deflate: bool,
}

/// Opens a TCP connection to `target` (from `source` if given) and upgrades it, all
/// within `timeout`. `nonce` seeds the Sec-WebSocket-Key.
pub async fn connect(
    target: &Target,
    source: Option<IpAddr>,
    nonce: [u8; 16],
    timeout: Duration,
) -> Result<WsStream, ConnectError> {
    match monoio::time::timeout(timeout, connect_inner(target, source, nonce)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout(timeout)),
    }
}

async fn connect_inner(
    target: &Target,
    source: Option<IpAddr>,
    nonce: [u8; 16],
) -> Result<WsStream, ConnectError> {
    let addr = target.addr;
    let classify = |err: io::Error| match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => ConnectError::Refused(addr),
        Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => ConnectError::NoLocalAddress {
            source_ip: source,
            err,
        },
        _ => ConnectError::Io { addr, err },
    };
    let mut stream = match source {
        None => TcpStream::connect_addr(addr).await.map_err(classify)?,
        Some(ip) => connect_from(ip, addr).await.map_err(classify)?,
    };
    stream.set_nodelay(true).map_err(classify)?;
    let offer: &[(&str, &str)] = match target.deflate {
        true => &[("Sec-WebSocket-Extensions", "permessage-deflate")],
        false => &[],
    };
    let tls = LoadTls::new(target).map_err(classify)?;
    let (request, key) = client_request_with_headers(&target.host, &target.path, nonce, offer);
    // Through TLS the request waits in the session until the handshake is done.
    let request = match &tls {
        Some(tls) => tls.encrypt(&request).map_err(classify)?,
        None => request,
    };
    let (written, _) = stream.write_all(request).await;
    written.map_err(classify)?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        buf = match &tls {
            None => {
                let (read, back) = read_more(&mut stream, buf, 512).await;
                if read.map_err(classify)? == 0 {
                    return Err(ConnectError::ClosedDuringUpgrade);
                }
                back
            }
            Some(tls) => {
                let (read, cipher) = read_more(&mut stream, BytesMut::new(), READ_CHUNK).await;
                if read.map_err(classify)? == 0
                    || !tls.decrypt(&cipher, &mut buf).map_err(classify)?
                {
                    return Err(ConnectError::ClosedDuringUpgrade);
                }
                // Handshake answers, then the request held back until now.
                let out = tls.encrypt(&[]).map_err(classify)?;
                if !out.is_empty() {
                    stream.write_all(out).await.0.map_err(classify)?;
                }
                buf
            }
        };
        if tls.as_ref().is_some_and(|tls| tls.is_handshaking()) {
            continue;
        }
        match parse_response(&buf, &key) {
            Ok(Some(len)) => {
                let head = buf.split_to(len);
                return Ok(WsStream {
                    stream,
                    tls,
                    leftover: buf,
                    deflate: target.deflate && deflate::agreed_in_response(&head),
                });
            }
            Ok(None) if buf.len() < MAX_RESPONSE => {}
            Ok(None) => return Err(rejected(UpgradeRejected::Malformed, &buf)),
            Err(reason) => return Err(rejected(reason, &buf)),
        }
    }
}

fn rejected(reason: UpgradeRejected, buf: &[u8]) -> ConnectError {
    let first_line = buf
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let first_line = String::from_utf8_lossy(&first_line[..first_line.len().min(200)]).into_owned();
    ConnectError::Rejected { reason, first_line }
}

/// A non-blocking connect from a bound source address. IP_BIND_ADDRESS_NO_PORT lets
/// the kernel pick the port at connect time per 4-tuple, not per address at bind.
async fn connect_from(source: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    if source.is_ipv4() {
        super::sys::set_bind_address_no_port(socket.as_raw_fd())?;
    }
    socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
    stream.writable(false).await?;
    // The connect's outcome is in SO_ERROR; a refused connect also shows as writable.
    match super::sys::take_socket_error(stream.as_raw_fd())? {
        Some(err) => Err(err),
        None => Ok(stream),
    }
}

/// Reads into the free space after `buf`'s bytes (monoio reads write from the start of
/// the buffer they are given), making room for at least `min_free` bytes first.
async fn read_more<R: AsyncReadRent>(
    reader: &mut R,
    mut buf: BytesMut,
    min_free: usize,
) -> (io::Result<usize>, BytesMut) {
    if buf.capacity() - buf.len() < min_free {
        buf.reserve(min_free);
    }
    let len = buf.len();
    let cap = buf.capacity();
    let (result, slice) = reader.read(buf.slice_mut(len..cap)).await;
    (result, slice.into_inner())
}

impl WsStream {
    /// Splits into the reading half and the outbox its writer task drains.
    pub fn split(
        self,
        max_message: usize,
        mask_seed: u64,
    ) -> (FrameReader, Rc<SendQueue>, FrameWriter) {
        let (read, write) = self.stream.into_split();
        let outbox = Rc::new(SendQueue::new(mask_seed));
        let mut decoder = Decoder::new(Role::Client, max_message);
        if self.deflate {
            decoder.enable_deflate();
        }
        let reader = FrameReader {
            half: read,
            tls: self.tls.clone(),
            buf: self.leftover,
            decoder,
            read_at: Instant::now(),
        };
        let writer = FrameWriter {
            half: write,
            tls: self.tls,
            outbox: outbox.clone(),
        };
        (reader, outbox, writer)
    }
}

/// The receiving half: whole messages and control frames.
pub struct FrameReader {
    half: OwnedReadHalf<TcpStream>,
    tls: Option<LoadTls>,
    buf: BytesMut,
    decoder: Decoder,
    read_at: Instant,
}

impl FrameReader {
    /// When the last read completed: the arrival time of every message it brought,
    /// one clock read per read rather than per message.
    pub fn read_at(&self) -> Instant {
        self.read_at
    }

    /// The next message or control frame. A close frame from the server is an error
    /// here: in the load scenarios the server never has a reason to close.
    pub async fn next(&mut self) -> Result<Incoming, ReadError> {
        loop {
            match self.decoder.decode(&mut self.buf)? {
                Some(Incoming::Close(close)) => {
                    return Err(ReadError::ServerClose(close.map(|(code, _)| code)))
                }
                Some(item) => return Ok(item),
                None => {}
            }
            let wanted = self.decoder.bytes_wanted().saturating_sub(self.buf.len());
            if let Some(tls) = &self.tls {
                let (read, cipher) = read_more(&mut self.half, BytesMut::new(), READ_CHUNK).await;
                self.read_at = Instant::now();
                if read? == 0 || !tls.decrypt(&cipher, &mut self.buf)? {
                    return Err(ReadError::Eof);
                }
                continue;
            }
            let buf = std::mem::take(&mut self.buf);
            let (read, buf) = read_more(&mut self.half, buf, wanted.max(READ_CHUNK)).await;
            self.buf = buf;
            self.read_at = Instant::now();
            if read? == 0 {
                return Err(ReadError::Eof);
            }
        }
    }
}

/// Frames waiting to be written, encoded and masked as they are queued. The writer
/// task takes the whole buffer per wake-up, so frames queued together go in one write.
pub struct SendQueue {
    inner: RefCell<SendQueueInner>,
}

struct SendQueueInner {
    buf: BytesMut,
    waker: Option<Waker>,
    closed: bool,
    /// Mask keys (RFC 6455 §5.3 wants them unpredictable; a load tool only needs them
    /// to vary, and cheaply).
    masks: SeededMasks,
}

impl SendQueue {
    fn new(seed: u64) -> Self {
        SendQueue {
            inner: RefCell::new(SendQueueInner {
                buf: BytesMut::with_capacity(256),
                waker: None,
                closed: false,
                masks: SeededMasks::new(seed),
            }),
        }
    }

    /// Queues a masked frame whose `len`-byte payload `fill` writes in place.
    pub fn push_with(&self, opcode: Opcode, len: usize, fill: impl FnOnce(&mut [u8])) {
        let mut inner = self.inner.borrow_mut();
        let mask = inner.masks.next_mask();
        put_masked(&mut inner.buf, opcode, true, len, mask, fill);
        if let Some(waker) = inner.waker.take() {
            waker.wake();
        }
    }

    pub fn push(&self, opcode: Opcode, payload: &[u8]) {
        self.push_with(opcode, payload.len(), |out| out.copy_from_slice(payload));
    }

    /// Lets the writer task finish once the queue is empty.
    pub fn close(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.closed = true;
        if let Some(waker) = inner.waker.take() {
            waker.wake();
        }
    }
}

/// The writing half: run [`FrameWriter::run`] as its own task.
pub struct FrameWriter {
    half: OwnedWriteHalf<TcpStream>,
    tls: Option<LoadTls>,
    outbox: Rc<SendQueue>,
}

impl FrameWriter {
    /// Writes whatever the outbox holds until it is closed and empty, or a write fails.
    pub async fn run(mut self) -> io::Result<()> {
        let mut spare = BytesMut::with_capacity(256);
        loop {
            let ready = poll_fn(|cx| {
                let mut inner = self.outbox.inner.borrow_mut();
                if !inner.buf.is_empty() {
                    std::mem::swap(&mut inner.buf, &mut spare);
                    Poll::Ready(true)
                } else if inner.closed {
                    Poll::Ready(false)
                } else {
                    inner.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            if !ready {
                return Ok(());
            }
            if let Some(tls) = &self.tls {
                // Everything queued since the last write: one TLS record per 16 KiB.
                let cipher = tls.encrypt(&spare)?;
                spare.clear();
                self.half.write_all(cipher).await.0?;
                continue;
            }
            let (written, back) = self.half.write_all(spare).await;
            spare = back;
            spare.clear();
            written?;
        }
    }
}
