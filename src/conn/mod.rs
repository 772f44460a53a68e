//! A core's connections as state: each one's entry in the core's slab ([`Conn`]: its
//! phase, outbound queue, write state, a partly received frame), the table that holds
//! them with generation-checked lookups and the list of connections to flush
//! ([`CoreCtx`], `ctx.rs`, `slots.rs`), a batch of frames on their way out
//! (`batch.rs`), and when the flush task waits between passes (`pacing.rs`). The
//! policies (outbound limit, close handshake, heartbeat, abortive close) are decided
//! here on plain state and tested without sockets; the core's reader and flush tasks in
//! `runtime` carry them out.
//!
//! An idle connection is its slab entry and its socket: no task, no buffer, no timer.
//! The core reads every upgraded socket when the kernel says it is readable, into one
//! buffer per core; only a connection with a frame partly received keeps bytes of its
//! own ([`Reading`]) until the frame is complete (BENCHMARKS.md, idle memory).

pub(crate) mod batch;
mod ctx;
pub(crate) mod pacing;
mod slots;

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::time::Instant;

use bytes::BytesMut;

use crate::ws::{Decoder, OutFrame};

pub use batch::WriteBatch;
pub use ctx::CoreCtx;

/// Who writes to a connection's socket, and whether it would block.
#[derive(Debug)]
pub enum Writer {
    /// The handshake task owns the socket (HTTP upgrade, TLS handshake).
    Handshake,
    /// The flush task writes what is queued directly.
    Ready,
    /// The socket's send buffer was full: the rest of this batch waits here, and the
    /// core's poller watches the socket for writability (then the flush path goes on).
    Blocked(Box<WriteBatch>),
    /// Writing has ended (flushed after the read side finished, or a write failed).
    Finished,
}

/// A frame (or a fragmented message) partly received: the decoder's state and the
/// bytes it has not consumed yet. Only a connection in the middle of a frame has one;
/// it is dropped as soon as the frame is complete. Bounded by `max_message_bytes`
/// (the decoder refuses larger frames and messages before their bytes arrive).
#[derive(Debug)]
pub struct Reading {
    pub decoder: Decoder,
    pub carry: BytesMut,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnPhase {
    /// Waiting for the HTTP upgrade request, until the deadline.
    Handshake {
        deadline: Instant,
    },
    Open,
    /// A close frame is queued or sent; the socket is shut at the deadline at the latest.
    Closing {
        deadline: Instant,
    },
}

/// A drained queue up to this many frames is freed at once (see [`Conn::take_batch`]).
const SMALL_QUEUE: usize = 4;
/// A drained queue over this many frames is freed at once: a burst's.
const BURST_QUEUE: usize = 64;

/// What [`Conn::push`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The connection is closing: data frames are no longer sent (RFC 6455 §5.5.1).
    Dropped,
    /// The queue passed its limit: it was cleared and a 1008 close queued instead.
    Overflowed,
}

/// What the heartbeat sweep wants done with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    Nothing,
    SendPing,
    /// Silent past the idle timeout: close it.
    IdleTimeout,
    /// A deadline passed (handshake or closing handshake): shut the socket.
    Abort,
}

/// Per-connection state in the core's slab. Kept small: idle connections dominate.
#[derive(Debug)]
pub struct Conn {
    pub generation: u32,
    pub fd: RawFd,
    pub phase: ConnPhase,
    /// Last time a frame arrived.
    pub last_heard: Instant,
    /// Last time a frame arrived or a ping went out.
    pub last_ping: Instant,
    outbound: VecDeque<OutFrame>,
    queued_bytes: usize,
    pub writer: Writer,
    /// A frame partly received (see [`Reading`]); `None` between frames.
    pub reading: Option<Box<Reading>>,
    /// Set once the read side is finished: the flush path writes what is queued, then
    /// the connection is closed and removed.
    pub reader_done: bool,
    /// The events the core's poller watches this socket for (`EPOLLIN`, `EPOLLOUT`),
    /// so that only a change costs an `epoll_ctl`; 0 before it is registered.
    pub interest: u32,
    /// In the core's list of connections to flush.
    pub flush_pending: bool,
    /// Reset by the sweep (a deadline passed); its tasks are cleaning up.
    pub aborted: bool,
    /// permessage-deflate: the agreed `server_max_window_bits`, 0 when not negotiated
    /// (see `ws::deflate`; data frames to it may go compressed).
    pub deflate_window_bits: u8,
    /// The TLS session on a wss:// server, set once the upgrade is done: the reader
    /// decrypts through it, the flush path encrypts (`crate::tls`).
    pub tls: Option<Box<crate::tls::ServerTls>>,
}

impl Conn {
    pub fn new(generation: u32, fd: RawFd, now: Instant, handshake_deadline: Instant) -> Self {
        Conn {
            generation,
            fd,
            phase: ConnPhase::Handshake {
                deadline: handshake_deadline,
            },
            last_heard: now,
            last_ping: now,
            outbound: VecDeque::new(),
            queued_bytes: 0,
            writer: Writer::Handshake,
            reading: None,
            reader_done: false,
            interest: 0,
            flush_pending: false,
            aborted: false,
            deflate_window_bits: 0,
            tls: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.phase == ConnPhase::Open
    }

    /// Queues a data frame under the outbound limit (see `Config::max_outbound_bytes`).
    /// A frame always fits an empty queue, so one large message is never refused.
    /// `close_deadline` is asked only on overflow (it reads the clock, and this is
    /// called once per recipient).
    pub fn push(
        &mut self,
        frame: OutFrame,
        max_outbound: usize,
        close_deadline: impl FnOnce() -> Instant,
    ) -> Pushed {
        self.push_with(frame.wire_len(), max_outbound, close_deadline, || frame)
    }

    /// [`Conn::push`] of the frame `make` gives, `len` bytes on the wire, made only once
    /// it is admitted: a fan-out passes `|| frame.clone()`, so each recipient's clone is
    /// made right into its queue, not on the stack first (a copy the CPU could not
    /// forward cheaply), and a single send moves its frame in without a clone.
    pub fn push_with(
        &mut self,
        len: usize,
        max_outbound: usize,
        close_deadline: impl FnOnce() -> Instant,
        make: impl FnOnce() -> OutFrame,
    ) -> Pushed {
        if self.phase != ConnPhase::Open {
            return Pushed::Dropped;
        }
        if !self.outbound.is_empty() && self.queued_bytes + len > max_outbound {
            self.outbound.clear();
            self.queued_bytes = 0;
            let code = crate::ws::close_code::POLICY_VIOLATION;
            self.begin_close(code, "outbound buffer limit exceeded", close_deadline());
            return Pushed::Overflowed;
        }
        self.enqueue_with(len, make);
        Pushed::Queued
    }

    /// Queues a control frame (ping, pong): never counted against the limit, never
    /// dropped while the connection is open or closing but not yet sent its close.
    pub fn push_control(&mut self, frame: OutFrame) {
        if !matches!(self.phase, ConnPhase::Handshake { .. }) && !self.reader_done {
            self.enqueue(frame);
        }
    }

    /// Queues a close frame and moves to `Closing` unless already there. Returns
    /// whether this call started the closing handshake.
    pub fn begin_close(&mut self, code: u16, reason: &str, deadline: Instant) -> bool {
        if self.phase != ConnPhase::Open {
            return false;
        }
        self.phase = ConnPhase::Closing { deadline };
        self.enqueue(OutFrame::close(code, reason));
        true
    }

    /// Queues a frame. The caller starts a writer if none runs (`CoreCtx::kick`).
    fn enqueue(&mut self, frame: OutFrame) {
        self.enqueue_with(frame.wire_len(), || frame);
    }

    /// [`Conn::enqueue`] of the frame `make` gives, `len` bytes on the wire.
    fn enqueue_with(&mut self, len: usize, make: impl FnOnce() -> OutFrame) {
        if matches!(self.writer, Writer::Finished) {
            return;
        }
        self.queued_bytes += len;
        self.outbound.push_back(make());
    }

    /// Frames wait, the flush path may write, and no flush is scheduled yet.
    pub fn needs_flush(&self) -> bool {
        !self.flush_pending && !self.outbound.is_empty() && matches!(self.writer, Writer::Ready)
    }

    /// Whether the write side is at rest: nothing queued and nothing half written.
    pub fn writer_idle(&self) -> bool {
        match self.writer {
            Writer::Ready => self.outbound.is_empty(),
            Writer::Finished => true,
            Writer::Handshake | Writer::Blocked(_) => false,
        }
    }

    /// Writing has ended for good (a write failed, or all was flushed after the read
    /// side finished): what is still queued is dropped.
    pub fn writer_finished(&mut self) {
        self.outbound.clear();
        self.queued_bytes = 0;
        self.writer = Writer::Finished;
    }

    /// Whether the connection is done with: read side finished and nothing left to
    /// write. Its socket is then closed and its entry removed.
    pub fn is_done(&self) -> bool {
        self.reader_done && self.writer_idle()
    }

    /// Moves up to `max` frames into `batch` for one write; the writer's side.
    pub fn take_batch(&mut self, batch: &mut Vec<OutFrame>, max: usize) {
        let n = self.outbound.len().min(max);
        for frame in self.outbound.drain(..n) {
            self.queued_bytes -= frame.wire_len();
            batch.push(frame);
        }
        let capacity = self.outbound.capacity();
        if self.outbound.is_empty() && (capacity <= SMALL_QUEUE || capacity > BURST_QUEUE) {
            // A small queue goes at once: a connection sent one message (the room
            // app's welcome) would otherwise keep room for 4 frames, 192 bytes, while
            // idle (freed later, at the sweep, that memory stayed resident: 562 instead
            // of 338 bytes per idle room client at 10,000). A burst's goes too. A queue
            // in between belongs to a steady stream (a broadcast's 32 frames per pass)
            // and is reused until the sweep finds it drained (`release_idle_queue`):
            // regrown from nothing every pass it cost four reallocations per pass.
            self.outbound = VecDeque::new();
        }
    }

    /// Frees the queue's memory if it is empty (the sweep calls this): a queue kept for
    /// a steady stream goes once the stream stops.
    pub fn release_idle_queue(&mut self) {
        if self.outbound.is_empty() && self.outbound.capacity() > 0 {
            self.outbound = VecDeque::new();
        }
    }

    pub fn has_outbound(&self) -> bool {
        !self.outbound.is_empty()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Marks the read side finished: a writer flushes what is queued and exits. With
    /// `discard`, what is still queued is dropped (the peer is gone).
    pub fn finish_reading(&mut self, discard: bool) {
        self.reader_done = true;
        if discard {
            self.outbound.clear();
            self.queued_bytes = 0;
        }
    }

    /// Records an incoming frame for the idle timeout.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.last_ping = now;
    }

    /// The heartbeat decision for this connection at `now`.
    pub fn tick(
        &self,
        now: Instant,
        ping_interval: std::time::Duration,
        idle_timeout: std::time::Duration,
    ) -> Tick {
        match self.phase {
            ConnPhase::Handshake { deadline } | ConnPhase::Closing { deadline } => {
                if now >= deadline {
                    Tick::Abort
                } else {
                    Tick::Nothing
                }
            }
            ConnPhase::Open if now.duration_since(self.last_heard) >= idle_timeout => {
                Tick::IdleTimeout
            }
            ConnPhase::Open if now.duration_since(self.last_ping) >= ping_interval => {
                Tick::SendPing
            }
            ConnPhase::Open => Tick::Nothing,
        }
    }
}

/// Makes a socket non-blocking, so the flush task's direct `writev` never stalls the
/// core. io_uring reads are unaffected (they wait for data whatever the flag).
pub fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Ends a connection whose peer will not read: SO_LINGER 0, so the close that follows
/// sends a TCP reset and frees the socket's unsent data at once, instead of leaving an
/// orphan in FIN-WAIT-1 that holds its send buffer for as long as the peer stalls;
/// then shuts the socket, so its pending reads and writes complete and its tasks clean
/// up (the reader closes the descriptor).
pub fn abort_socket(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from a live local; the
    // descriptor is still owned by the core's slab. Failure (not a socket, already
    // closed) leaves a plain shutdown, which is still correct.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    shutdown_socket(fd);
}

/// Shuts both directions of a socket so its pending reads and writes complete at once.
/// The only way another task can end a connection whose read is in flight.
pub fn shutdown_socket(fd: RawFd) {
    // SAFETY: plain syscall on a descriptor the core's slab still owns; an error
    // (already shut, not connected) is harmless and ignored.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::ws::Opcode;

    fn open_conn(now: Instant) -> Conn {
        let mut conn = Conn::new(1, -1, now, now + Duration::from_secs(5));
        conn.phase = ConnPhase::Open;
        conn
    }

    fn frame(len: usize) -> OutFrame {
        OutFrame::new(Opcode::Binary, Bytes::from(vec![0u8; len]))
    }

    /// Regression guard for idle memory: an upgraded, idle connection is this entry in
    /// the core's table and its socket, nothing else (BENCHMARKS.md has the measured
    /// bytes per connection).
    #[test]
    fn an_idle_connection_entry_stays_small() {
        let size = std::mem::size_of::<Conn>();
        eprintln!("connection entry: {size} bytes");
        assert!(size <= 144, "the connection entry grew to {size} bytes");
    }

    #[test]
    fn a_small_drained_queue_holds_no_memory_and_a_stream_s_waits_for_the_sweep() {
        let now = Instant::now();
        let mut conn = open_conn(now);
        conn.push(frame(10), 10_000, || now);
        conn.push(frame(10), 10_000, || now);
        let mut batch = Vec::new();
        conn.take_batch(&mut batch, 1);
        assert!(conn.has_outbound(), "a frame still waits");
        conn.take_batch(&mut batch, 1);
        assert_eq!(conn.outbound.capacity(), 0, "a small queue goes at once");
        for _ in 0..32 {
            conn.push(frame(10), 10_000, || now);
        }
        conn.take_batch(&mut batch, 64);
        assert!(conn.outbound.capacity() >= 32, "a stream's queue is reused");
        conn.release_idle_queue();
        assert_eq!(
            conn.outbound.capacity(),
            0,
            "and freed by the sweep once drained"
        );
    }

    #[test]
    fn passing_the_outbound_limit_clears_the_queue_and_queues_1008() {
        let now = Instant::now();
        let mut conn = open_conn(now);
        assert_eq!(conn.push(frame(600), 1000, || now), Pushed::Queued);
        assert_eq!(conn.push(frame(600), 1000, || now), Pushed::Overflowed);
        let mut batch = Vec::new();
        conn.take_batch(&mut batch, 16);
        assert_eq!(batch.len(), 1);
        assert!(batch[0].is_close());
        assert_eq!(&batch[0].payload[..2], &1008u16.to_be_bytes());
        assert!(matches!(conn.phase, ConnPhase::Closing { .. }));
        assert_eq!(conn.push(frame(1), 1000, || now), Pushed::Dropped);
        assert_eq!(conn.queued_bytes(), 0);
    }

    #[test]
    fn one_frame_larger_than_the_limit_fits_an_empty_queue() {
        let now = Instant::now();
        let mut conn = open_conn(now);
        assert_eq!(conn.push(frame(5000), 1000, || now), Pushed::Queued);
    }

    #[test]
    fn second_close_is_not_queued() {
        let now = Instant::now();
        let mut conn = open_conn(now);
        assert!(conn.begin_close(1001, "bye", now));
        assert!(!conn.begin_close(1000, "again", now));
        let mut batch = Vec::new();
        conn.take_batch(&mut batch, 16);
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn heartbeat_pings_after_the_interval_and_times_out_after_idle() {
        let start = Instant::now();
        let mut conn = open_conn(start);
        let (ping, idle) = (Duration::from_secs(10), Duration::from_secs(25));
        assert_eq!(
            conn.tick(start + Duration::from_secs(9), ping, idle),
            Tick::Nothing
        );
        assert_eq!(
            conn.tick(start + Duration::from_secs(10), ping, idle),
            Tick::SendPing
        );
        conn.last_ping = start + Duration::from_secs(10);
        assert_eq!(
            conn.tick(start + Duration::from_secs(15), ping, idle),
            Tick::Nothing
        );
        assert_eq!(
            conn.tick(start + Duration::from_secs(25), ping, idle),
            Tick::IdleTimeout
        );
        conn.heard(start + Duration::from_secs(24));
        assert_eq!(
            conn.tick(start + Duration::from_secs(25), ping, idle),
            Tick::Nothing
        );
    }

    #[test]
    fn deadlines_abort_handshake_and_closing() {
        let start = Instant::now();
        let conn = Conn::new(1, -1, start, start + Duration::from_secs(1));
        let (ping, idle) = (Duration::from_secs(10), Duration::from_secs(25));
        assert_eq!(conn.tick(start, ping, idle), Tick::Nothing);
        assert_eq!(
            conn.tick(start + Duration::from_secs(1), ping, idle),
            Tick::Abort
        );
    }

    #[test]
    fn finished_reader_with_discard_drops_queued_frames() {
        let now = Instant::now();
        let mut conn = open_conn(now);
        conn.push(frame(10), 1000, || now);
        conn.finish_reading(true);
        assert!(!conn.has_outbound());
        conn.push_control(OutFrame::new(Opcode::Pong, Bytes::new()));
        assert!(
            !conn.has_outbound(),
            "nothing is queued once the reader is done"
        );
    }
}
