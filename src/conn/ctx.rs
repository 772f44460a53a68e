//! What an app can do on its core ([`CoreCtx`]): send to a connection, to every
//! connection of the core, post to another core, close. Owns the core's slab of
//! connections and its outbox. Single-threaded: it lives and dies on one core.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use super::slots::Slots;
use super::{abort_socket, Conn, ConnPhase, Pushed, Writer};
use crate::config::ConnLimits;
use crate::hub::Outbox;
use crate::stats::{CoreStats, FANOUT_BUCKETS};
use crate::ws::deflate::{self, Agreement};
use crate::ws::OutFrame;
use crate::{ConnId, CoreId};

/// One core's connections and cross-core sending side, as apps see them.
pub struct CoreCtx<E> {
    id: CoreId,
    limits: ConnLimits,
    conns: RefCell<Slots<Conn>>,
    pub(crate) outbox: Outbox<E>,
    /// Every core's counters (this core writes its own; `GET /metrics` reads all).
    pub(crate) all_stats: Arc<[Arc<CoreStats>]>,
    next_generation: Cell<u32>,
    /// Connections with frames queued and a socket that takes them, flushed by the core's flush
    /// task once the tasks already runnable have queued theirs (corking).
    dirty: RefCell<Vec<ConnId>>,
    flusher: RefCell<Option<Waker>>,
    /// Messages and envelopes handed to the app since the flush task last looked
    /// (flush pacing tells fan-out from request/response by it).
    inputs: Cell<u64>,
}

impl<E: Send> CoreCtx<E> {
    pub(crate) fn new(
        id: CoreId,
        limits: ConnLimits,
        outbox: Outbox<E>,
        all_stats: Arc<[Arc<CoreStats>]>,
    ) -> Self {
        CoreCtx {
            id,
            limits,
            conns: RefCell::new(Slots::default()),
            outbox,
            all_stats,
            next_generation: Cell::new(0),
            dirty: RefCell::new(Vec::new()),
            flusher: RefCell::new(None),
            inputs: Cell::new(0),
        }
    }

    /// Schedules a flush of a connection that has frames queued and a writable socket.
    /// Every path that queues a frame calls this.
    pub(crate) fn kick(&self, slot: usize, conn: &mut Conn) {
        if conn.needs_flush() {
            conn.flush_pending = true;
            self.dirty.borrow_mut().push(ConnId {
                core: self.id,
                slot: slot as u32,
                generation: conn.generation,
            });
            if let Some(waker) = self.flusher.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// Waits for connections to flush and moves them into `out` (the flush task's side).
    pub(crate) async fn next_dirty(&self, out: &mut Vec<ConnId>) {
        poll_fn(|cx| {
            let mut dirty = self.dirty.borrow_mut();
            if dirty.is_empty() {
                *self.flusher.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            } else {
                std::mem::swap(&mut *dirty, out);
                Poll::Ready(())
            }
        })
        .await
    }

    /// Moves the connections waiting to be flushed into `out`, without waiting.
    pub(crate) fn take_dirty(&self, out: &mut Vec<ConnId>) {
        out.append(&mut self.dirty.borrow_mut());
    }

    /// Counts a message or envelope handed to the app.
    pub(crate) fn count_input(&self) {
        self.inputs.set(self.inputs.get() + 1);
    }

    /// Messages and envelopes handed to the app since the last call.
    pub(crate) fn take_inputs(&self) -> u64 {
        self.inputs.replace(0)
    }

    /// This core's counters.
    pub(crate) fn stats(&self) -> &CoreStats {
        &self.all_stats[self.id.index()]
    }

    /// This core.
    pub fn core(&self) -> CoreId {
        self.id
    }

    /// How many cores the server runs.
    pub fn cores(&self) -> usize {
        self.outbox.cores()
    }

    /// Every other core, for fan-out.
    pub fn other_cores(&self) -> impl Iterator<Item = CoreId> + '_ {
        (0..self.cores() as u16)
            .map(CoreId)
            .filter(move |core| *core != self.id)
    }

    /// Queues a frame for one connection of this core. False if the connection is gone
    /// or closing. A connection over its outbound limit is reset (see [`CoreCtx::send_to_each`]).
    pub fn send(&self, conn: ConnId, frame: OutFrame) -> bool {
        debug_assert_eq!(conn.core, self.id, "send goes to the owning core");
        let mut conns = self.conns.borrow_mut();
        match live(&mut conns, conn) {
            Some(entry) if entry.deflate_window_bits != 0 => {
                let frame = match deflate::compress_out_frame(&frame) {
                    Some((compressed, len))
                        if Agreement::fits_window(entry.deflate_window_bits, len) =>
                    {
                        compressed
                    }
                    _ => frame,
                };
                self.queue(conn.slot as usize, entry, frame.wire_len(), || frame)
            }
            Some(entry) => self.queue(conn.slot as usize, entry, frame.wire_len(), || frame),
            None => false,
        }
    }

    /// Queues the same frame (a clone of its `Bytes`) for each of `conns` (all on this
    /// core), as [`CoreCtx::send`] would one by one; connections gone are skipped.
    pub fn send_to_each(&self, conns: impl IntoIterator<Item = ConnId>, frame: &OutFrame) {
        let mut forms = FanOutForms::new(frame);
        let mut slab = self.conns.borrow_mut();
        let mut recipients = 0;
        for conn in conns {
            debug_assert_eq!(conn.core, self.id, "send goes to the owning core");
            if let Some(entry) = live(&mut slab, conn) {
                let frame = forms.for_conn(entry);
                self.queue(conn.slot as usize, entry, frame.wire_len(), || {
                    frame.clone()
                });
                recipients += 1;
            }
        }
        self.stats().fanout.observe(&FANOUT_BUCKETS, recipients);
    }

    /// Queues the same frame (a clone of its `Bytes`) for every open connection here.
    pub fn send_to_all(&self, frame: &OutFrame) {
        self.send_to_all_except(None, frame);
    }

    /// Like [`CoreCtx::send_to_all`], skipping `except`.
    pub fn send_to_all_except(&self, except: Option<ConnId>, frame: &OutFrame) {
        let skip = except
            .filter(|c| c.core == self.id)
            .map(|c| c.slot as usize);
        let mut forms = FanOutForms::new(frame);
        let mut recipients = 0;
        for (slot, entry) in self.conns.borrow_mut().iter_mut() {
            if entry.is_open() && Some(slot) != skip {
                let frame = forms.for_conn(entry);
                self.queue(slot, entry, frame.wire_len(), || frame.clone());
                recipients += 1;
            }
        }
        self.stats().fanout.observe(&FANOUT_BUCKETS, recipients);
    }

    /// Sends an envelope to another core's app (`App::on_envelope`), in order.
    pub fn post(&self, core: CoreId, envelope: E) {
        self.outbox.post(core, envelope);
    }

    /// Starts the closing handshake with `code`; the peer has `close_timeout_ms` to
    /// answer. Nothing happens if the connection is gone (its generation is checked).
    pub fn close(&self, conn: ConnId, code: u16, reason: &str) {
        let deadline = self.close_deadline();
        if let Some(entry) = live(&mut self.conns.borrow_mut(), conn) {
            entry.begin_close(code, reason, deadline);
            self.kick(conn.slot as usize, entry);
        }
    }

    /// Queues a control frame (pong) outside the outbound limit.
    pub(crate) fn send_control(&self, conn: ConnId, frame: OutFrame) {
        if let Some(entry) = live(&mut self.conns.borrow_mut(), conn) {
            entry.push_control(frame);
            self.kick(conn.slot as usize, entry);
        }
    }

    /// Open connections on this core.
    pub fn open_connections(&self) -> usize {
        self.conns
            .borrow()
            .iter()
            .filter(|(_, c)| c.is_open())
            .count()
    }

    /// Queues `frame` on the connection in `slot` under the outbound limit and
    /// schedules its flush. The one path every data frame takes.
    ///
    /// A connection that passes the limit (a slow consumer) has its queue dropped, is
    /// counted, and is reset at once: a peer that far behind has stopped reading, so
    /// a close frame would sit behind megabytes in its socket, and a graceful close
    /// would leave an orphaned socket holding that kernel memory for minutes.
    fn queue(
        &self,
        slot: usize,
        entry: &mut Conn,
        wire_len: usize,
        frame: impl FnOnce() -> OutFrame,
    ) -> bool {
        let max = self.limits.max_outbound_bytes;
        let pushed = entry.push_with(wire_len, max, || self.close_deadline(), frame);
        match pushed {
            Pushed::Queued => {
                self.stats().count_queued(wire_len);
                self.kick(slot, entry);
                true
            }
            Pushed::Dropped => false,
            Pushed::Overflowed => {
                self.stats().count_slow_consumer();
                abort_socket(entry.fd);
                false
            }
        }
    }

    fn close_deadline(&self) -> Instant {
        Instant::now() + self.limits.close_timeout
    }

    pub(crate) fn insert_conn(&self, fd: RawFd, now: Instant) -> ConnId {
        let generation = self.next_generation.get().wrapping_add(1);
        self.next_generation.set(generation);
        let deadline = now + self.limits.handshake_timeout;
        let slot = self
            .conns
            .borrow_mut()
            .insert(Conn::new(generation, fd, now, deadline));
        self.stats().count_accepted();
        ConnId {
            core: self.id,
            slot: slot as u32,
            generation,
        }
    }

    /// The upgrade is done: the connection is open and the flush path may write.
    pub(crate) fn mark_open(&self, conn: ConnId, now: Instant) {
        self.with_conn(conn, |entry| {
            entry.phase = ConnPhase::Open;
            entry.writer = Writer::Ready;
            entry.heard(now);
        });
        self.stats().count_opened();
    }

    /// Removes a connection's entry and gives it back (the caller closes its socket).
    pub(crate) fn remove_conn(&self, conn: ConnId) -> Option<Conn> {
        let mut conns = self.conns.borrow_mut();
        if live(&mut conns, conn).is_none() {
            debug_assert!(false, "{conn:?} removed twice");
            return None;
        }
        let removed = conns.remove(conn.slot as usize).expect("checked live");
        if !matches!(removed.phase, ConnPhase::Handshake { .. }) {
            self.stats().count_closed();
        }
        Some(removed)
    }

    /// Runs `f` on every connection of the core (handshaking, open or closing); a
    /// connection for which it returns true is scheduled for a flush.
    pub(crate) fn for_each_conn(&self, mut f: impl FnMut(&mut Conn) -> bool) {
        for (slot, entry) in self.conns.borrow_mut().iter_mut() {
            if f(entry) {
                self.kick(slot, entry);
            }
        }
    }

    /// Whether the table is empty (every connection, whatever its phase, has ended).
    pub(crate) fn has_no_connections(&self) -> bool {
        self.conns.borrow().is_empty()
    }

    /// Runs `f` on `conn`'s entry if it is still that connection (`None` if it is gone).
    pub(crate) fn with_live_conn<R>(
        &self,
        conn: ConnId,
        f: impl FnOnce(&mut Conn) -> R,
    ) -> Option<R> {
        live(&mut self.conns.borrow_mut(), conn).map(f)
    }

    /// Runs `f` on a live connection of this core. Panics on a stale id, in every
    /// build: only callers that know the entry is there (the handshake task, which
    /// removes it itself; the reader between its own steps) use it, so a stale id is a
    /// bug that must not act on the slot's next connection.
    pub(crate) fn with_conn<R>(&self, conn: ConnId, f: impl FnOnce(&mut Conn) -> R) -> R {
        let mut conns = self.conns.borrow_mut();
        let entry = live(&mut conns, conn).expect("a connection's own tasks outlive its slot");
        f(entry)
    }
}

/// A fan-out's frame in the forms its recipients need: plain, and compressed
/// (permessage-deflate) only once a recipient that negotiated it comes up, then shared
/// by every such recipient of this core. With deflate off it is the plain frame and a
/// byte compare per recipient.
struct FanOutForms<'a> {
    source: &'a OutFrame,
    plain: OutFrame,
    /// Not computed yet; then the compressed frame and its payload's length, or
    /// `None` when it is not worth compressing.
    compressed: Option<Option<(OutFrame, usize)>>,
}

impl<'a> FanOutForms<'a> {
    fn new(source: &'a OutFrame) -> Self {
        FanOutForms {
            source,
            plain: source.for_fan_out(),
            compressed: None,
        }
    }

    /// The form `conn` gets (the caller clones it into the connection's queue).
    fn for_conn(&mut self, conn: &Conn) -> &OutFrame {
        if conn.deflate_window_bits != 0 {
            let source = self.source;
            let compressed = self.compressed.get_or_insert_with(|| {
                deflate::compress_out_frame(source).map(|(f, len)| (f.for_fan_out(), len))
            });
            if let Some((frame, len)) = compressed {
                if Agreement::fits_window(conn.deflate_window_bits, *len) {
                    return frame;
                }
            }
        }
        &self.plain
    }
}

/// The slab entry `conn` names, if it is still that connection (same generation: a
/// slot is reused by later connections). Every lookup by `ConnId` goes through here.
fn live(conns: &mut Slots<Conn>, conn: ConnId) -> Option<&mut Conn> {
    conns
        .get_mut(conn.slot as usize)
        .filter(|entry| entry.generation == conn.generation)
}
