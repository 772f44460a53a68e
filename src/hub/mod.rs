//! Cross-core delivery: one bounded lock-free inbox per core that every core may push
//! to, and a per-core [`Outbox`] that keeps posting order when an inbox is full.
//! It moves `Send` envelopes between cores; it knows nothing of connections or apps.
//!
//! Wake-up: the consumer registers an [`AtomicWaker`] only when it found its inbox
//! empty, so a push to a busy core costs one atomic swap and no syscall; a push to a
//! parked core wakes its runtime (monoio's `sync` feature, an eventfd under io_uring,
//! which also works under the epoll fallback).
//!
//! Full inbox policy: a push never blocks a core and never drops. An envelope that
//! does not fit goes to the sending core's backlog (FIFO, so per-sender order holds);
//! while the backlog is non-empty every later post queues behind it, and a flusher
//! task retries every [`BACKLOG_RETRY`].
//!
//! The backlog is bounded on every path. While *any* core has a backlog, the readers
//! of *every* core stop reading (TCP backpressure to every client), not only the
//! sending core's: envelopes a core posts while handling its inbox (a room's home
//! answering a join posts to several cores) come from clients on other cores, so
//! pausing only the sending core's readers would leave them unbounded. Inbox tasks
//! never pause, so no cycle of cores can wait on each other: inboxes keep draining,
//! and backlogs with them. What can still be posted once readers pause is what the
//! inboxes already hold and what readers had decoded from their last read, times the
//! posts one envelope makes (for rooms at most cores + 2). Each core's backlog depth
//! and how many envelopes ever waited are in `/metrics`.

mod mailbox;

pub use mailbox::Mailbox;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

use crate::CoreId;

/// How often a full inbox is retried from the backlog.
pub const BACKLOG_RETRY: Duration = Duration::from_micros(50);

struct Inbox<E> {
    queue: ArrayQueue<E>,
    waker: AtomicWaker,
    /// The backlog of this core's own [`Outbox`] (written by that core only).
    backlog: BacklogGauge,
}

/// One core's backlog as others see it (for `/metrics`).
#[derive(Default)]
struct BacklogGauge {
    depth: AtomicUsize,
    total: AtomicU64,
}

/// Every core's inbox. Shared by all cores behind an `Arc`.
pub struct Hub<E> {
    inboxes: Box<[Inbox<E>]>,
    /// Cores whose backlog is not empty: while above 0, every core's readers pause.
    congested: AtomicUsize,
}

impl<E: Send> Hub<E> {
    pub fn new(cores: usize, capacity: usize) -> Arc<Self> {
        let inboxes = (0..cores)
            .map(|_| Inbox {
                queue: ArrayQueue::new(capacity),
                waker: AtomicWaker::new(),
                backlog: BacklogGauge::default(),
            })
            .collect();
        Arc::new(Hub {
            inboxes,
            congested: AtomicUsize::new(0),
        })
    }

    /// Whether some core has a backlog (then every core's readers pause).
    pub fn is_congested(&self) -> bool {
        self.congested.load(Relaxed) > 0
    }

    /// `core`'s backlog: envelopes waiting now, and envelopes that ever waited.
    pub fn backlog(&self, core: CoreId) -> (usize, u64) {
        let gauge = &self.inboxes[core.index()].backlog;
        (gauge.depth.load(Relaxed), gauge.total.load(Relaxed))
    }

    pub fn cores(&self) -> usize {
        self.inboxes.len()
    }

    /// Pushes to `core`'s inbox without waiting; gives the envelope back when full.
    pub fn try_push(&self, core: CoreId, envelope: E) -> Result<(), E> {
        let inbox = &self.inboxes[core.index()];
        inbox.queue.push(envelope)?;
        inbox.waker.wake();
        Ok(())
    }

    /// Waits until `core`'s inbox has envelopes, then moves up to `max` into `out`.
    pub async fn recv_batch(&self, core: CoreId, out: &mut Vec<E>, max: usize) {
        let inbox = &self.inboxes[core.index()];
        poll_fn(|cx| {
            if Self::drain(inbox, out, max) {
                return Poll::Ready(());
            }
            inbox.waker.register(cx.waker());
            // A push between the drain and the register would otherwise be missed.
            if Self::drain(inbox, out, max) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    fn drain(inbox: &Inbox<E>, out: &mut Vec<E>, max: usize) -> bool {
        while out.len() < max {
            match inbox.queue.pop() {
                Some(envelope) => out.push(envelope),
                None => break,
            }
        }
        !out.is_empty()
    }
}

/// One core's sending side: posts to other cores' inboxes, in order, never blocking.
pub struct Outbox<E> {
    hub: Arc<Hub<E>>,
    /// The core this outbox sends from.
    core: CoreId,
    backlog: RefCell<VecDeque<(CoreId, E)>>,
    flusher: RefCell<Option<Waker>>,
    paused_readers: RefCell<Vec<Waker>>,
}

impl<E: Send> Outbox<E> {
    pub fn new(hub: Arc<Hub<E>>, core: CoreId) -> Self {
        Outbox {
            hub,
            core,
            backlog: RefCell::new(VecDeque::new()),
            flusher: RefCell::new(None),
            paused_readers: RefCell::new(Vec::new()),
        }
    }

    pub fn cores(&self) -> usize {
        self.hub.cores()
    }

    /// Sends `envelope` to `core`, behind anything already waiting in the backlog.
    pub fn post(&self, core: CoreId, envelope: E) {
        let mut backlog = self.backlog.borrow_mut();
        if backlog.is_empty() {
            match self.hub.try_push(core, envelope) {
                Ok(()) => return,
                Err(envelope) => backlog.push_back((core, envelope)),
            }
            self.hub.congested.fetch_add(1, Relaxed);
            self.wake_flusher();
        } else {
            backlog.push_back((core, envelope));
        }
        let gauge = self.gauge();
        gauge.depth.store(backlog.len(), Relaxed);
        gauge.total.fetch_add(1, Relaxed);
    }

    /// Whether connections should stop reading: some core (this one or another) has
    /// a backlog.
    pub fn is_congested(&self) -> bool {
        self.hub.is_congested()
    }

    /// Every core's backlog, `(depth, ever waited)`, in core order.
    pub fn backlogs(&self) -> Vec<(usize, u64)> {
        (0..self.hub.cores() as u16)
            .map(|core| self.hub.backlog(CoreId(core)))
            .collect()
    }

    /// Envelopes that ever waited in this core's backlog (a sign inboxes are too small).
    pub fn backlogged_total(&self) -> u64 {
        self.gauge().total.load(Relaxed)
    }

    /// Waits until no core has a backlog (for a reader pausing on congestion).
    pub async fn drained(&self) {
        poll_fn(|cx| {
            if !self.hub.is_congested() {
                Poll::Ready(())
            } else {
                self.paused_readers.borrow_mut().push(cx.waker().clone());
                // The flusher watches other cores' backlogs only while readers wait.
                self.wake_flusher();
                Poll::Pending
            }
        })
        .await
    }

    /// The flusher: runs for the life of the core, moving the backlog into inboxes
    /// and, while readers are paused, waking them once no core is congested.
    pub async fn run_flusher(&self) {
        loop {
            poll_fn(|cx| {
                if self.backlog.borrow().is_empty() && self.paused_readers.borrow().is_empty() {
                    *self.flusher.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            while self.try_flush() || self.hub.is_congested() {
                monoio::time::sleep(BACKLOG_RETRY).await;
            }
            for waker in self.paused_readers.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }

    /// Pushes from the front of the backlog until it is empty (false) or an inbox is
    /// still full (true).
    fn try_flush(&self) -> bool {
        let mut backlog = self.backlog.borrow_mut();
        if backlog.is_empty() {
            return false;
        }
        let mut still_full = false;
        while let Some((core, envelope)) = backlog.pop_front() {
            if let Err(envelope) = self.hub.try_push(core, envelope) {
                backlog.push_front((core, envelope));
                still_full = true;
                break;
            }
        }
        self.gauge().depth.store(backlog.len(), Relaxed);
        if !still_full {
            self.hub.congested.fetch_sub(1, Relaxed);
        }
        still_full
    }

    fn gauge(&self) -> &BacklogGauge {
        &self.hub.inboxes[self.core.index()].backlog
    }

    fn wake_flusher(&self) {
        if let Some(waker) = self.flusher.borrow_mut().take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_inbox_keeps_order_through_the_backlog() {
        let hub = Hub::<u32>::new(2, 16);
        let outbox = Outbox::new(hub.clone(), CoreId(0));
        let to = CoreId(1);
        for n in 0..40 {
            outbox.post(to, n);
        }
        assert!(outbox.is_congested());
        assert_eq!(outbox.backlogged_total(), 24);
        let mut got = Vec::new();
        let pop_all = |got: &mut Vec<u32>| {
            let mut batch = Vec::new();
            Hub::drain(&hub.inboxes[1], &mut batch, usize::MAX);
            got.extend(batch);
        };
        pop_all(&mut got);
        assert!(outbox.try_flush(), "16 fit, 8 still waiting");
        pop_all(&mut got);
        assert!(!outbox.try_flush());
        pop_all(&mut got);
        assert!(!outbox.is_congested());
        assert_eq!(got, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn posts_queue_behind_the_backlog_even_when_the_inbox_has_room() {
        let hub = Hub::<u32>::new(2, 16);
        let outbox = Outbox::new(hub.clone(), CoreId(0));
        for n in 0..17 {
            outbox.post(CoreId(1), n);
        }
        let mut batch = Vec::new();
        Hub::drain(&hub.inboxes[1], &mut batch, usize::MAX);
        outbox.post(CoreId(1), 17);
        assert_eq!(hub.inboxes[1].queue.len(), 0, "17 must wait behind 16");
        assert!(!outbox.try_flush());
        Hub::drain(&hub.inboxes[1], &mut batch, usize::MAX);
        assert_eq!(batch, (0..18).collect::<Vec<_>>());
    }

    #[test]
    fn a_backlog_on_one_core_pauses_every_cores_readers_until_it_drains() {
        // Core 1 posts to core 0 while handling its inbox; core 0's readers feed it.
        // Pausing only core 1's readers would not stop what fills its backlog.
        let hub = Hub::<u32>::new(2, 16);
        let (zero, one) = (
            Outbox::new(hub.clone(), CoreId(0)),
            Outbox::new(hub.clone(), CoreId(1)),
        );
        for n in 0..20 {
            one.post(CoreId(0), n);
        }
        assert!(one.is_congested() && zero.is_congested());
        assert_eq!(hub.backlog(CoreId(1)), (4, 4));
        assert_eq!(hub.backlog(CoreId(0)), (0, 0));
        let mut batch = Vec::new();
        Hub::drain(&hub.inboxes[0], &mut batch, usize::MAX);
        assert!(!one.try_flush(), "the four fit now");
        assert!(!zero.is_congested(), "readers everywhere may read again");
        assert_eq!(hub.backlog(CoreId(1)), (0, 4));
        assert!(!zero.try_flush(), "an empty backlog changes nothing");
        assert!(!one.is_congested());
    }
}
