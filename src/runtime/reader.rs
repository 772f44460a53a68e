//! The reading task of a connection, which also owns its life: registers it in the
//! core's slab, does the HTTP upgrade, spawns the writer, decodes frames and hands
//! messages to the app, answers pings and closes, and cleans up when the peer goes.
//! Timeouts are not kept here: the core's sweep shuts the socket, ending the read.

use std::future::{poll_fn, Future};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;

use super::Core;
use crate::app::{App, Identity, Message};
use crate::auth;
use crate::conn::shutdown_socket;
use crate::stats::{render_backlogs, render_cluster, render_distributions, render_metrics};
use crate::ws::deflate;
use crate::ws::handshake::{self, HttpRequest};
use crate::ws::{close_code, Decoder, Incoming, Opcode, OutFrame, Role};
use crate::ConnId;

/// First buffer for the upgrade request (browsers send ~500 bytes); transient.
const HANDSHAKE_BUFFER: usize = 1024;
/// Read size while the TLS handshake runs (a ClientHello is ~300-1500 bytes); transient.
const TLS_HANDSHAKE_READ: usize = 4096;
/// Most bytes read and dropped after an HTTP error answer before closing anyway.
const LINGER_BYTES: usize = 64 * 1024;
/// Largest read a busy connection grows to.
const MAX_READ_SIZE: usize = 64 * 1024;
/// A read buffer this many times its first size is replaced once drained.
const SHRINK_FACTOR: usize = 4;

/// What an upgrade agreed to: permessage-deflate (when negotiated) and who the
/// client's JWT says it is (when JWT is on).
struct Upgraded {
    deflate: Option<deflate::Agreement>,
    identity: Option<Box<Identity>>,
}

/// How the read side ended.
enum ReadEnd {
    /// The peer is gone (EOF, reset, or our sweep shut the socket): drop what is queued.
    PeerGone,
    /// A close frame is queued (reply or error): flush it, then shut the socket.
    Flush,
}

/// Serves one accepted connection from handshake to cleanup.
///
/// The returned future is the connection's largest allocation, so it is kept small
/// (see `idle_connection_state_stays_small`): one flat async fn, because nested async
/// fns each keep copies of their arguments (824 bytes nested), and the stream is
/// split before it starts, because an async fn keeps its arguments for its whole life
/// (a `TcpStream` with its cached addresses is ~80 bytes).
pub(crate) fn run_connection<A: App>(
    core: Rc<Core<A>>,
    stream: TcpStream,
) -> impl Future<Output = ()> {
    let fd = stream.as_raw_fd();
    let (rd, wr) = stream.into_split();
    serve_connection(core, fd, rd, wr)
}

async fn serve_connection<A: App>(
    core: Rc<Core<A>>,
    fd: RawFd,
    mut rd: OwnedReadHalf<TcpStream>,
    mut wr: OwnedWriteHalf<TcpStream>,
) {
    let ctx = &core.ctx;
    let id = ctx.insert_conn(fd, Instant::now());
    let mut buf = BytesMut::with_capacity(core.config.read_buffer_bytes.max(HANDSHAKE_BUFFER));
    // Boxed: the handshake's state is needed once, not for the connection's life.
    let Some(upgraded) = Box::pin(upgrade(&core, id, &mut rd, &mut wr, &mut buf)).await else {
        shutdown_socket(fd);
        ctx.remove_conn(id);
        return;
    };
    ctx.mark_open(id, wr, Instant::now());
    let initial = core.config.read_buffer_bytes;
    if buf.is_empty() {
        // The handshake buffer is larger; an idle connection keeps only `initial`.
        buf = BytesMut::with_capacity(initial);
    }
    let Upgraded { deflate, identity } = upgraded;
    core.app.borrow_mut().on_open(ctx, id, identity);
    let mut decoder = Decoder::new(Role::Server, core.config.max_message_bytes);
    if let Some(agreement) = deflate {
        decoder.enable_deflate();
        ctx.with_conn(id, |conn| {
            conn.deflate_window_bits = agreement.server_max_window_bits;
        });
    }
    let mut read_size = initial;
    let end = loop {
        if let Some(end) = decode_buffered(&core, id, &mut decoder, &mut buf) {
            break end;
        }
        if ctx.outbox.is_congested() {
            ctx.outbox.drained().await;
        }
        make_room(&mut buf, decoder.bytes_wanted(), read_size);
        let (len, cap) = (buf.len(), buf.capacity());
        let (result, slice) = rd.read(std::mem::take(&mut buf).slice_mut(len..cap)).await;
        buf = slice.into_inner();
        let Ok(n @ 1..) = result else {
            break ReadEnd::PeerGone;
        };
        ctx.stats().count_bytes_received(n);
        if !decrypt_read(&core, id, &mut buf, len) {
            break ReadEnd::PeerGone;
        }
        read_size = next_read_size(read_size, n, cap - len, initial);
        ctx.with_conn(id, |conn| conn.heard(Instant::now()));
    };
    drop((decoder, buf));
    ctx.with_conn(id, |conn| {
        conn.finish_reading(matches!(end, ReadEnd::PeerGone));
        ctx.kick(id.slot as usize, conn);
    });
    core.app.borrow_mut().on_close(ctx, id);
    // Wait until what is queued (the close frame) is written or given up.
    poll_fn(|cx| {
        ctx.with_conn(id, |conn| {
            if conn.writer_idle() {
                Poll::Ready(())
            } else {
                conn.writer_exit = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    })
    .await;
    shutdown_socket(fd);
    // Removed before `rd` drops and closes the fd, so the sweep never touches a reused fd.
    ctx.remove_conn(id);
    drop(rd);
}

/// Handles every complete item in `buf`. `Some` ends the read side.
fn decode_buffered<A: App>(
    core: &Core<A>,
    id: ConnId,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
) -> Option<ReadEnd> {
    loop {
        match decoder.decode(buf) {
            Ok(Some(item)) => {
                if let Some(end) = handle_incoming(core, id, item) {
                    return Some(end);
                }
            }
            Ok(None) => return None,
            Err(error) => {
                core.ctx.stats().count_protocol_error();
                core.ctx.close(id, error.close_code(), &error.to_string());
                return Some(ReadEnd::Flush);
            }
        }
    }
}

/// On a TLS connection, decrypts what the last read appended to `buf` (from `from`)
/// in place of the ciphertext. False when the session is over (error, close_notify).
fn decrypt_read<A: App>(core: &Core<A>, id: ConnId, buf: &mut BytesMut, from: usize) -> bool {
    core.ctx.with_conn(id, |conn| {
        let Some(tls) = conn.tls.as_mut() else {
            return true;
        };
        // Plaintext is never longer than its ciphertext: it goes where the ciphertext
        // was, which waits meanwhile in a copy (or, for a partial record, in the session).
        let cipher = buf[from..].to_vec();
        buf.truncate(from);
        matches!(tls.feed_traffic(&cipher, buf), Ok(crate::tls::Fed::Open))
    })
}

/// Reads and answers the HTTP upgrade request (after the TLS handshake, on a TLS
/// server). Returns `None` if the connection is not a WebSocket, else what it agreed
/// to (permessage-deflate) and who its JWT says it is (when JWT is on); pipelined
/// bytes after the request stay in `buf`.
async fn upgrade<A: App>(
    core: &Core<A>,
    id: ConnId,
    rd: &mut OwnedReadHalf<TcpStream>,
    wr: &mut OwnedWriteHalf<TcpStream>,
    buf: &mut BytesMut,
) -> Option<Upgraded> {
    let mut tls = match core.config.tls() {
        Some(slot) => match slot.session() {
            Some(session) => Some(session),
            None => return None,
        },
        None => None,
    };
    let max = core.config.max_handshake_bytes;
    let allowed_origins = &core.config.allowed_origins;
    loop {
        let mut identity = None;
        let request = handshake::parse_request(buf, max).and_then(|request| {
            if let Some((HttpRequest::Upgrade { origin, .. }, _)) = &request {
                handshake::check_origin(origin.as_deref(), allowed_origins)?;
            }
            if let (
                Some((
                    HttpRequest::Upgrade {
                        path,
                        authorization,
                        ..
                    },
                    _,
                )),
                Some(verifier),
            ) = (&request, core.config.jwt())
            {
                let token = auth::token_in(path, authorization.as_deref());
                identity = Some(Box::new(authenticate(verifier, token)?));
            }
            Ok(request)
        });
        let response = match request {
            Ok(Some((HttpRequest::Upgrade { key, .. }, len))) => {
                let agreement = match core.config.deflate {
                    true => deflate::negotiate_request(&buf[..len]),
                    false => None,
                };
                buf.advance(len);
                let extra = agreement.map_or(String::new(), |a| a.response_header());
                let response = handshake::accept_response_with(&key, &extra);
                if !send(wr, &mut tls, response).await {
                    return None;
                }
                core.ctx.with_conn(id, |conn| conn.tls = tls);
                let upgraded = Upgraded {
                    deflate: agreement,
                    identity,
                };
                return Some(upgraded);
            }
            Ok(Some((HttpRequest::Health, _))) => match &core.cluster {
                Some(cluster) if !cluster.is_up() => handshake::unhealthy_response(),
                _ => handshake::health_response(),
            }
            .to_vec(),
            Ok(Some((HttpRequest::Page(asset), _))) if core.config.page => {
                crate::page::response(asset)
            }
            Ok(Some((HttpRequest::Page(_), _))) => {
                core.ctx.stats().count_rejected_handshake();
                handshake::HandshakeError::NotAnUpgrade.response()
            }
            Ok(Some((HttpRequest::Metrics, _))) => {
                let mut text = render_metrics(&core.ctx.all_stats);
                render_distributions(&mut text, &core.ctx.all_stats);
                render_backlogs(&mut text, &core.ctx.outbox.backlogs());
                if let Some(cluster) = &core.cluster {
                    render_cluster(&mut text, cluster);
                }
                handshake::metrics_response(&text)
            }
            Ok(None) => {
                if buf.len() == buf.capacity() {
                    buf.reserve(buf.capacity().min(max));
                }
                if !receive(rd, wr, &mut tls, buf).await {
                    return None;
                }
                continue;
            }
            Err(error) => {
                if let handshake::HandshakeError::Unauthorized(refusal) = error {
                    core.ctx.stats().count_auth_refused(refusal);
                }
                core.ctx.stats().count_rejected_handshake();
                core.ctx.stats().count_handshake_failure(error.status());
                error.response()
            }
        };
        if send(wr, &mut tls, response).await {
            linger(rd, wr, buf).await;
        }
        return None;
    }
}

/// Verifies an upgrade's JWT (from `?token=` or `Authorization: Bearer`) now; only
/// upgrades need one (`/healthz` and `/metrics` do not).
fn authenticate(
    verifier: &auth::Verifier,
    token: Option<&str>,
) -> Result<Identity, handshake::HandshakeError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    verifier
        .verify(token, now)
        .map_err(handshake::HandshakeError::Unauthorized)
}

/// Writes `bytes` during the upgrade, encrypted on a TLS connection.
async fn send(
    wr: &mut OwnedWriteHalf<TcpStream>,
    tls: &mut Option<Box<crate::tls::ServerTls>>,
    bytes: Vec<u8>,
) -> bool {
    let bytes = match tls {
        Some(session) => {
            let mut cipher = Vec::with_capacity(bytes.len() + 64);
            if session.encrypt(&bytes, &mut cipher).is_err() {
                return false;
            }
            cipher
        }
        None => bytes,
    };
    wr.write_all(bytes).await.0.is_ok()
}

/// [`read_more`] through TLS: reads records (answering the TLS handshake as it goes)
/// until some plaintext was appended to `buf`. False on EOF, error or a TLS failure.
async fn receive(
    rd: &mut OwnedReadHalf<TcpStream>,
    wr: &mut OwnedWriteHalf<TcpStream>,
    tls: &mut Option<Box<crate::tls::ServerTls>>,
    buf: &mut BytesMut,
) -> bool {
    let Some(session) = tls else {
        return read_more(rd, buf).await;
    };
    let start = buf.len();
    loop {
        let (result, cipher) = rd.read(Vec::with_capacity(TLS_HANDSHAKE_READ)).await;
        if !matches!(result, Ok(n) if n > 0) {
            return false;
        }
        let mut out = Vec::new();
        let fed = session.feed(&cipher, buf, &mut out);
        // Handshake flights.
        if !out.is_empty() && wr.write_all(out).await.0.is_err() {
            return false;
        }
        if !matches!(fed, Ok(crate::tls::Fed::Open)) {
            return false;
        }
        if buf.len() > start {
            return true;
        }
    }
}

/// After an HTTP answer: sends FIN and reads (discarding) until the client closes, so
/// unread request bytes do not make the kernel reset the connection and destroy the
/// answer before the client reads it. Bounded by `LINGER_BYTES` and by the handshake
/// deadline (the sweep shuts the socket).
async fn linger(
    rd: &mut OwnedReadHalf<TcpStream>,
    wr: &mut OwnedWriteHalf<TcpStream>,
    buf: &mut BytesMut,
) {
    let _ = wr.shutdown().await;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        buf.clear();
        if !read_more(rd, buf).await {
            return;
        }
        discarded += buf.len();
    }
}

/// Reads into the spare capacity of `buf`, appending. False on EOF or error.
async fn read_more(rd: &mut OwnedReadHalf<TcpStream>, buf: &mut BytesMut) -> bool {
    let (len, cap) = (buf.len(), buf.capacity());
    let (result, slice) = rd.read(std::mem::take(buf).slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    matches!(result, Ok(n) if n > 0)
}

/// Adapts the read size to the sender: a read that filled its space doubles it (a
/// publisher's burst then arrives in a few reads and fans out in few writes); a read
/// that used under a quarter of it falls back to `initial` (idle connections stay small).
fn next_read_size(current: usize, read: usize, space: usize, initial: usize) -> usize {
    if read == space {
        (current * 2).min(MAX_READ_SIZE.max(initial))
    } else if read < space / 4 {
        initial
    } else {
        current
    }
}

/// Ensures `buf` can take the rest of the frame being read (bounded by the message
/// limit, which the decoder checked) and gives a grown buffer back once drained.
fn make_room(buf: &mut BytesMut, wanted: usize, read_size: usize) {
    if buf.is_empty() && buf.capacity() > read_size * SHRINK_FACTOR {
        *buf = BytesMut::with_capacity(read_size);
    }
    let target = wanted.max(buf.len() + read_size / 2);
    if buf.capacity() < target {
        buf.reserve(target - buf.len());
    }
}

/// Acts on one decoded item. `Some` ends the read side.
fn handle_incoming<A: App>(core: &Core<A>, id: ConnId, item: Incoming) -> Option<ReadEnd> {
    let ctx = &core.ctx;
    let open = ctx.with_conn(id, |conn| conn.is_open());
    let message = match item {
        // After our close frame, data is read and ignored (RFC 6455 §5.5.1).
        Incoming::Text(_) | Incoming::Binary(_) if !open => return None,
        Incoming::Text(payload) => Message {
            opcode: Opcode::Text,
            payload,
        },
        Incoming::Binary(payload) => Message {
            opcode: Opcode::Binary,
            payload,
        },
        Incoming::Ping(payload) => {
            // RFC 6455 §5.5.2: answer with a pong carrying the same payload.
            ctx.send_control(id, OutFrame::new(Opcode::Pong, payload));
            return None;
        }
        Incoming::Pong(_) => return None,
        Incoming::Close(frame) => {
            // RFC 6455 §5.5.1: echo the status code, then the server closes TCP first.
            // If we sent our close first, this completes the handshake.
            let code = frame.map_or(close_code::NORMAL, |(code, _)| code);
            ctx.close(id, code, "");
            return Some(ReadEnd::Flush);
        }
    };
    ctx.count_input();
    ctx.stats().count_message_received();
    core.app.borrow_mut().on_message(ctx, id, message);
    None
}

#[cfg(test)]
mod tests {
    use crate::app::EchoApp;
    use crate::config::Config;
    use crate::runtime::Core;

    /// Regression guard for idle memory: the connection task's state is most of what an
    /// idle connection costs (BENCHMARKS.md has the measured RSS per connection).
    #[test]
    fn idle_connection_state_stays_small() {
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let core = Core::for_tests(EchoApp, Config::default());
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let stream = monoio::net::TcpStream::from_std(stream).unwrap();
            let task = super::run_connection(core, stream);
            let size = std::mem::size_of_val(&task);
            eprintln!("connection task state: {size} bytes");
            // With monoio's task header and trailer (~48 bytes) this stays inside the
            // allocator's 512-byte class; at 460+ it would cost 640 per connection.
            assert!(size <= 448, "connection task state grew to {size} bytes");
        });
    }
}
