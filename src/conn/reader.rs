//! The reading task of a connection, which also owns its life: registers it in the
//! core's slab, does the HTTP upgrade, spawns the writer, decodes frames and hands
//! messages to the app, answers pings and closes, and cleans up when the peer goes.
//! Timeouts are not kept here: the core's sweep shuts the socket, ending the read.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::shutdown_socket;
use crate::app::{App, Message};
use crate::runtime::Core;
use crate::ws::handshake::{self, Request};
use crate::ws::{Decoder, Incoming, Opcode, OutFrame, Role};
use crate::ConnId;

/// A read buffer this many times its first size is replaced once drained.
const SHRINK_FACTOR: usize = 4;

/// How the read side ended.
enum ReadEnd {
    /// The peer is gone (EOF, reset, or our sweep shut the socket): drop what is queued.
    PeerGone,
    /// A close frame is queued (reply or error): flush it, then shut the socket.
    Flush,
}

/// Serves one accepted connection from handshake to cleanup.
pub(crate) async fn run_connection<A: App>(core: Rc<Core<A>>, stream: TcpStream) {
    let ctx = &core.ctx;
    let fd = stream.as_raw_fd();
    let id = ctx.insert_conn(fd, Instant::now());
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(ctx.config.read_buffer_bytes);
    if !upgrade(&core, &mut rd, &mut wr, &mut buf).await {
        shutdown_socket(fd);
        ctx.remove_conn(id);
        return;
    }
    ctx.mark_open(id, Instant::now());
    let writer = monoio::spawn(super::writer::run_writer(core.clone(), id, wr));
    core.app.borrow_mut().on_open(ctx, id);
    let end = read_frames(&core, id, &mut rd, buf).await;
    ctx.with_conn(id, |conn| conn.finish_reading(matches!(end, ReadEnd::PeerGone)));
    core.app.borrow_mut().on_close(ctx, id);
    writer.await;
    // Removed before `rd` drops and closes the fd, so the sweep never touches a reused fd.
    ctx.remove_conn(id);
    drop(rd);
}

/// Reads and answers the HTTP upgrade request. Returns whether the connection is a
/// WebSocket now; pipelined bytes after the request stay in `buf`.
async fn upgrade<A: App>(
    core: &Core<A>,
    rd: &mut OwnedReadHalf<TcpStream>,
    wr: &mut OwnedWriteHalf<TcpStream>,
    buf: &mut BytesMut,
) -> bool {
    let max = core.ctx.config.max_handshake_bytes;
    loop {
        let response = match handshake::parse_request(buf, max) {
            Ok(Some((Request::Upgrade { key, .. }, len))) => {
                buf.advance(len);
                let (result, _) = wr.write_all(handshake::accept_response(&key)).await;
                return result.is_ok();
            }
            Ok(Some((Request::Health, _))) => handshake::health_response().to_vec(),
            Ok(None) => {
                if buf.len() == buf.capacity() {
                    buf.reserve(buf.capacity().min(max));
                }
                if !read_more(rd, buf).await {
                    return false;
                }
                continue;
            }
            Err(error) => {
                core.ctx.stats.count_rejected_handshake();
                error.response()
            }
        };
        let _ = wr.write_all(response).await;
        return false;
    }
}

/// Reads into the spare capacity of `buf`, appending. False on EOF or error.
async fn read_more(rd: &mut OwnedReadHalf<TcpStream>, buf: &mut BytesMut) -> bool {
    let (len, cap) = (buf.len(), buf.capacity());
    let taken = std::mem::take(buf);
    let (result, slice) = rd.read(taken.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    matches!(result, Ok(n) if n > 0)
}

/// Decodes frames until the connection ends.
async fn read_frames<A: App>(core: &Core<A>, id: ConnId, rd: &mut OwnedReadHalf<TcpStream>, mut buf: BytesMut) -> ReadEnd {
    let ctx = &core.ctx;
    let initial = ctx.config.read_buffer_bytes;
    let mut decoder = Decoder::new(Role::Server, ctx.config.max_message_bytes);
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => {
                    if let Some(end) = handle_incoming(core, id, item) {
                        return end;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    ctx.stats.count_protocol_error();
                    ctx.close(id, error.close_code(), &error.to_string());
                    return ReadEnd::Flush;
                }
            }
        }
        if ctx.outbox.is_congested() {
            ctx.outbox.drained().await;
        }
        make_room(&mut buf, decoder.bytes_wanted(), initial);
        if !read_more(rd, &mut buf).await {
            return ReadEnd::PeerGone;
        }
        ctx.with_conn(id, |conn| conn.heard(Instant::now()));
    }
}

/// Ensures `buf` can take the rest of the frame being read (bounded by the message
/// limit, which the decoder checked) and gives a grown buffer back once drained.
fn make_room(buf: &mut BytesMut, wanted: usize, initial: usize) {
    if buf.is_empty() && buf.capacity() > initial * SHRINK_FACTOR {
        *buf = BytesMut::with_capacity(initial);
    }
    let target = wanted.max(buf.len() + initial / 2);
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
            ctx.with_conn(id, |conn| conn.push_control(OutFrame::new(Opcode::Pong, payload)));
            return None;
        }
        Incoming::Pong(_) => return None,
        Incoming::Close(frame) => {
            // RFC 6455 §5.5.1: echo the status code, then the server closes TCP first.
            // If we sent our close first, this completes the handshake.
            let code = frame.map_or(1000, |(code, _)| code);
            ctx.close(id, code, "");
            return Some(ReadEnd::Flush);
        }
    };
    core.app.borrow_mut().on_message(ctx, id, message);
    None
}
