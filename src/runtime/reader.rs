//! The core's read side for every upgraded connection: one task per core waits on the
//! core's poller, reads each ready socket into the core's own buffer, decodes frames,
//! hands messages to the app, answers pings and closes, and ends a connection when its
//! peer goes. Nothing here is per connection while it is idle: a connection keeps
//! bytes of its own (`conn::Reading`) only while a frame is partly received.
//! Timeouts are not kept here: the core's sweep shuts the socket, which the poller
//! then reports.

use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::poller::{Ready, READABLE};
use super::upgrade::Upgraded;
use super::writer;
use super::Core;
use crate::app::{App, Message};
use crate::conn::{shutdown_socket, Reading, Writer};
use crate::ws::{close_code, Decoder, Incoming, Opcode, OutFrame, Role};
use crate::ConnId;

/// Ready sockets taken from the poller per pass.
const READY_BATCH: usize = 256;
/// The core's read buffer, at first. Payloads over 4 KiB are split from it without a
/// copy, smaller ones are copied out (`ws::Decoder`), so a message kept by the app pins
/// at most 64 times its size of this buffer.
const CORE_BUFFER: usize = 256 * 1024;
/// A partly received frame's buffer grows by at least this much per read.
const CARRY_READ: usize = 4096;

/// How the read side ended.
enum ReadEnd {
    /// The peer is gone (EOF, reset, or our sweep shut the socket): drop what is queued.
    PeerGone,
    /// A close frame is queued (reply or error): flush it, then close the socket.
    Flush,
}

/// The outcome of one `read(2)`.
enum Read {
    /// This many bytes were appended.
    Bytes(usize),
    /// Nothing to read after all (another event consumed it).
    WouldBlock,
    /// EOF or an error: the peer is gone.
    Gone,
}

/// A connection just upgraded (by `upgrade::run_handshake`, which gave up the socket):
/// opens it, tells the app, starts watching it, and handles what the client sent
/// right after its upgrade request (`pipelined`).
pub(crate) fn open<A: App>(
    core: &Rc<Core<A>>,
    id: ConnId,
    fd: RawFd,
    upgraded: Upgraded,
    mut pipelined: BytesMut,
    admitted: Option<super::admission::Admitted>,
) {
    let ctx = &core.ctx;
    ctx.mark_open(id, Instant::now());
    if let Some(admitted) = admitted {
        core.admitted.borrow_mut().insert(id.slot, admitted);
    }
    let Upgraded { deflate, identity } = upgraded;
    if let Some(agreement) = deflate {
        ctx.with_conn(id, |conn| {
            conn.deflate_window_bits = agreement.server_max_window_bits;
        });
    }
    core.app.borrow_mut().on_open(ctx, id, identity);
    if core.poller.add(fd, id, READABLE).is_err() {
        end_reading(core, id, ReadEnd::PeerGone);
        return;
    }
    ctx.with_conn(id, |conn| conn.interest = READABLE);
    if !pipelined.is_empty() {
        let deflate = ctx.with_conn(id, |conn| conn.deflate_window_bits != 0);
        let mut decoder = new_decoder(core, deflate);
        let end = decode_buffered(core, id, &mut decoder, &mut pipelined);
        settle(core, id, end, decoder, &mut pipelined);
    }
}

/// The core's reader: runs until the core stops.
pub(crate) async fn run_reader<A: App>(core: Rc<Core<A>>) {
    let mut events = Vec::with_capacity(READY_BATCH);
    let mut ready = Vec::with_capacity(READY_BATCH);
    let mut buf = BytesMut::with_capacity(CORE_BUFFER);
    loop {
        // Through the runtime, every pass: its timers (the sweep, flush pacing) and
        // completions are served between passes even while sockets stay ready.
        if let Err(error) = core.poller.wait().await {
            tracing::error!(
                core = core.ctx.core().0,
                "waiting for sockets failed: {error}"
            );
            monoio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        if core.ctx.outbox.is_congested() {
            // Other cores are behind: read no more until they catch up. Sockets not
            // read are reported again (level-triggered).
            core.ctx.outbox.drained().await;
        }
        if let Err(error) = core.poller.ready_now(&mut events, &mut ready) {
            tracing::error!(core = core.ctx.core().0, "epoll_wait failed: {error}");
            monoio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let now = Instant::now();
        for event in ready.drain(..) {
            if core.ctx.outbox.is_congested() {
                break;
            }
            on_ready(&core, event, now, &mut buf);
        }
        ready.clear();
    }
}

/// What the reader needs of a connection to read it, taken in the one lookup per event.
struct ToRead {
    fd: RawFd,
    /// A frame partly received, taken out of the entry while the read runs.
    reading: Option<Box<Reading>>,
    deflate: bool,
    tls: bool,
}

/// Acts on one ready socket: finishes a blocked write, reads.
fn on_ready<A: App>(core: &Rc<Core<A>>, event: Ready, now: Instant, buf: &mut BytesMut) {
    let id = ConnId {
        core: core.ctx.core(),
        slot: event.slot,
        generation: event.generation,
    };
    let hangup = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
    let wanted = core.ctx.with_live_conn(id, |conn| {
        let blocked = matches!(conn.writer, Writer::Blocked(_));
        let write = blocked && event.events & (libc::EPOLLOUT as u32 | hangup) != 0;
        let read = !conn.reader_done && event.events & (libc::EPOLLIN as u32 | hangup) != 0;
        // Readable means the peer sent something (data, or its end): heard from.
        let read = read.then(|| {
            conn.heard(now);
            ToRead {
                fd: conn.fd,
                reading: conn.reading.take(),
                deflate: conn.deflate_window_bits != 0,
                tls: conn.tls.is_some(),
            }
        });
        (write, read)
    });
    // `None`: closed since the event was reported.
    let Some((write, read)) = wanted else {
        return;
    };
    if write {
        // Never closes the connection here: its read side is open or `read` is `None`.
        writer::resume(core, id);
    }
    if let Some(read) = read {
        read_ready(core, id, read, buf);
    }
}

/// Reads a ready socket once and handles what arrived.
fn read_ready<A: App>(core: &Rc<Core<A>>, id: ConnId, read: ToRead, buf: &mut BytesMut) {
    let ToRead {
        fd,
        reading,
        deflate,
        tls,
    } = read;
    match reading {
        // In the middle of a frame: read into its own buffer, sized for the frame.
        Some(mut reading) => {
            let Reading { decoder, carry } = &mut *reading;
            make_room(carry, decoder.bytes_wanted());
            let end = match read_into(fd, carry) {
                Read::WouldBlock => None,
                Read::Gone => Some(ReadEnd::PeerGone),
                Read::Bytes(n) => received(core, id, n, tls, carry, decoder),
            };
            let parked = end.is_none() && !(decoder.is_idle() && carry.is_empty());
            if parked {
                core.ctx.with_conn(id, |conn| conn.reading = Some(reading));
            }
            if let Some(end) = end {
                end_reading(core, id, end);
            }
        }
        // Between frames: read into the core's buffer.
        None => {
            // Reuses the buffer in place once every payload split from it was dropped
            // (normally by the time the flush task has written them), else takes a
            // new one: the old one is freed with its last payload.
            buf.reserve(core.config.read_buffer_bytes);
            let mut decoder = new_decoder(core, deflate);
            let end = match read_into_at_most(fd, buf, core.config.read_buffer_bytes) {
                Read::WouldBlock => None,
                Read::Gone => Some(ReadEnd::PeerGone),
                Read::Bytes(n) => received(core, id, n, tls, buf, &mut decoder),
            };
            settle(core, id, end, decoder, buf);
        }
    }
}

/// After bytes were appended to `buf`: counts them, decrypts them on a TLS
/// connection, and decodes.
fn received<A: App>(
    core: &Core<A>,
    id: ConnId,
    n: usize,
    tls: bool,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
) -> Option<ReadEnd> {
    core.ctx.stats().count_bytes_received(n);
    if tls && !decrypt_read(core, id, buf, buf.len() - n) {
        return Some(ReadEnd::PeerGone);
    }
    decode_buffered(core, id, decoder, buf)
}

/// After decoding from the core's buffer (or the upgrade's): keeps a partly received
/// frame with the connection (a copy of its bytes), empties `buf`, and ends the read
/// side if it ended.
fn settle<A: App>(
    core: &Rc<Core<A>>,
    id: ConnId,
    end: Option<ReadEnd>,
    decoder: Decoder,
    buf: &mut BytesMut,
) {
    if end.is_none() && !(decoder.is_idle() && buf.is_empty()) {
        let mut carry = BytesMut::with_capacity(buf.len().max(CARRY_READ));
        carry.extend_from_slice(buf);
        let reading = Box::new(Reading { decoder, carry });
        core.ctx.with_conn(id, |conn| conn.reading = Some(reading));
    }
    buf.clear();
    if let Some(end) = end {
        end_reading(core, id, end);
    }
}

/// A decoder for a connection between frames (the state of one in the middle of a
/// frame is kept in its `Reading`).
fn new_decoder<A: App>(core: &Core<A>, deflate: bool) -> Decoder {
    let mut decoder = Decoder::new(Role::Server, core.config.max_message_bytes);
    if deflate {
        decoder.enable_deflate();
    }
    decoder
}

/// The read side has ended: tells the app, stops reading, and closes the connection
/// now if nothing is left to write (else the flush path does once it is written).
fn end_reading<A: App>(core: &Rc<Core<A>>, id: ConnId, end: ReadEnd) {
    let ctx = &core.ctx;
    let peer_gone = matches!(end, ReadEnd::PeerGone);
    ctx.with_conn(id, |conn| {
        conn.finish_reading(peer_gone);
        conn.reading = None;
        if peer_gone && matches!(conn.writer, Writer::Blocked(_)) {
            conn.writer_finished();
        }
        ctx.kick(id.slot as usize, conn);
    });
    core.app.borrow_mut().on_close(ctx, id);
    let done = ctx.with_live_conn(id, |conn| {
        writer::watch(core, id, conn);
        conn.is_done()
    });
    if done == Some(true) {
        close_conn(core, id);
    }
}

/// Closes a connection whose read side has ended and whose frames are written (or
/// given up): shuts and closes its socket (which leaves the poller) and removes it.
pub(crate) fn close_conn<A: App>(core: &Core<A>, id: ConnId) {
    let Some(conn) = core.ctx.remove_conn(id) else {
        return;
    };
    shutdown_socket(conn.fd);
    // SAFETY: the connection owned the descriptor since its upgrade, and its entry,
    // the only other holder of the number, is gone.
    unsafe { libc::close(conn.fd) };
    core.admitted.borrow_mut().remove(&id.slot);
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

/// Reads into the spare capacity of `buf`, appending.
fn read_into(fd: RawFd, buf: &mut BytesMut) -> Read {
    read_into_at_most(fd, buf, usize::MAX)
}

/// Reads at most `max` bytes into the spare capacity of `buf`, appending.
fn read_into_at_most(fd: RawFd, buf: &mut BytesMut, max: usize) -> Read {
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    loop {
        // SAFETY: the kernel writes at most `len` bytes into `buf`'s spare capacity,
        // and only the bytes it reports written are made part of `buf` below.
        // recvfrom(2), not read(2): the socket path without the VFS layer's checks; by
        // `syscall`, without libc's cancellation-point wrapper (BENCHMARKS.md, profiles).
        let n = unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                fd,
                spare.as_mut_ptr(),
                len,
                0,
                std::ptr::null_mut::<libc::sockaddr>(),
                std::ptr::null_mut::<libc::socklen_t>(),
            )
        } as isize;
        if n > 0 {
            // SAFETY: `n <= len` bytes past the end were just initialized by the kernel.
            unsafe { buf.set_len(buf.len() + n as usize) };
            return Read::Bytes(n as usize);
        }
        if n == 0 {
            return Read::Gone;
        }
        match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => return Read::WouldBlock,
            _ => return Read::Gone,
        }
    }
}

/// Ensures `buf` can take the rest of the frame being read (bounded by the message
/// limit, which the decoder checked), and at least [`CARRY_READ`] more bytes.
fn make_room(buf: &mut BytesMut, wanted: usize) {
    let target = wanted.max(buf.len() + CARRY_READ);
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
