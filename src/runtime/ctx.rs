//! What an app can do on its core ([`CoreCtx`]): send to a connection, to every
//! connection of the core, post to another core, close. Owns the core's slab of
//! connections and its outbox. Single-threaded: it lives and dies on one core.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use super::stats::CoreStats;
use crate::config::Config;
use crate::conn::{Conn, Phase, Pushed};
use crate::hub::Outbox;
use crate::ws::OutFrame;
use crate::{ConnId, CoreId};

/// One core's connections and cross-core sending side, as apps see them.
pub struct CoreCtx<E> {
    id: CoreId,
    pub(crate) config: Arc<Config>,
    pub(crate) conns: RefCell<Slab<Conn>>,
    pub(crate) outbox: Outbox<E>,
    pub(crate) stats: Arc<CoreStats>,
    next_generation: Cell<u32>,
}

impl<E: Send> CoreCtx<E> {
    pub(crate) fn new(id: CoreId, config: Arc<Config>, outbox: Outbox<E>, stats: Arc<CoreStats>) -> Self {
        CoreCtx {
            id,
            config,
            conns: RefCell::new(Slab::new()),
            outbox,
            stats,
            next_generation: Cell::new(0),
        }
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
        (0..self.cores() as u16).map(CoreId).filter(move |core| *core != self.id)
    }

    /// Queues a frame for one connection of this core. False if the connection is gone
    /// or closing. A connection over its outbound limit is closed with 1008.
    pub fn send(&self, conn: ConnId, frame: OutFrame) -> bool {
        debug_assert_eq!(conn.core, self.id, "send goes to the owning core");
        let deadline = self.close_deadline();
        let pushed = match self.conns.borrow_mut().get_mut(conn.slot as usize) {
            Some(entry) if entry.generation == conn.generation => {
                entry.push(frame, self.config.max_outbound_bytes, deadline)
            }
            _ => return false,
        };
        self.count(pushed)
    }

    /// Queues the same frame (a clone of its `Bytes`) for every open connection here.
    pub fn send_to_all(&self, frame: &OutFrame) {
        let deadline = self.close_deadline();
        let max = self.config.max_outbound_bytes;
        for (_, entry) in self.conns.borrow_mut().iter_mut() {
            if entry.is_open() {
                self.count(entry.push(frame.clone(), max, deadline));
            }
        }
    }

    /// Sends an envelope to another core's app (`App::on_envelope`), in order.
    pub fn post(&self, core: CoreId, envelope: E) {
        self.outbox.post(core, envelope);
    }

    /// Starts the closing handshake with `code`; the peer has `close_timeout_ms` to answer.
    pub fn close(&self, conn: ConnId, code: u16, reason: &str) {
        let deadline = self.close_deadline();
        self.with_conn(conn, |entry| entry.begin_close(code, reason, deadline));
    }

    /// Open connections on this core.
    pub fn open_connections(&self) -> usize {
        self.conns.borrow().iter().filter(|(_, c)| c.is_open()).count()
    }

    fn count(&self, pushed: Pushed) -> bool {
        match pushed {
            Pushed::Queued => true,
            Pushed::Dropped => false,
            Pushed::Overflowed => {
                self.stats.count_slow_consumer();
                false
            }
        }
    }

    fn close_deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.config.close_timeout_ms)
    }

    pub(crate) fn insert_conn(&self, fd: RawFd, now: Instant) -> ConnId {
        let generation = self.next_generation.get().wrapping_add(1);
        self.next_generation.set(generation);
        let deadline = now + Duration::from_millis(self.config.handshake_timeout_ms);
        let slot = self.conns.borrow_mut().insert(Conn::new(generation, fd, now, deadline));
        self.stats.count_accepted();
        ConnId {
            core: self.id,
            slot: slot as u32,
            generation,
        }
    }

    pub(crate) fn mark_open(&self, conn: ConnId, now: Instant) {
        self.with_conn(conn, |entry| {
            entry.phase = Phase::Open;
            entry.heard(now);
        });
        self.stats.count_opened();
    }

    pub(crate) fn remove_conn(&self, conn: ConnId) {
        let removed = self.conns.borrow_mut().remove(conn.slot as usize);
        debug_assert_eq!(removed.generation, conn.generation);
        if !matches!(removed.phase, Phase::Handshake { .. }) {
            self.stats.count_closed();
        }
    }

    /// Runs `f` on a live connection of this core. Panics on a stale id: only the
    /// connection's own tasks call it, and they outlive its slab entry.
    pub(crate) fn with_conn<R>(&self, conn: ConnId, f: impl FnOnce(&mut Conn) -> R) -> R {
        let mut conns = self.conns.borrow_mut();
        let entry = &mut conns[conn.slot as usize];
        debug_assert_eq!(entry.generation, conn.generation);
        f(entry)
    }
}
