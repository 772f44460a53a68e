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
//! while the backlog is non-empty every later post queues behind it, a flusher task
//! retries every [`BACKLOG_RETRY`], and connections on the sending core stop reading
//! (TCP backpressure to the publishers) until the backlog drains. The backlog is
//! bounded by what the core's connections decoded before they paused: at most one
//! read buffer each.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
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
}

/// Every core's inbox. Shared by all cores behind an `Arc`.
pub struct Hub<E> {
    inboxes: Box<[Inbox<E>]>,
}

impl<E: Send> Hub<E> {
    pub fn new(cores: usize, capacity: usize) -> Arc<Self> {
        let inboxes = (0..cores)
            .map(|_| Inbox {
                queue: ArrayQueue::new(capacity),
                waker: AtomicWaker::new(),
            })
            .collect();
        Arc::new(Hub { inboxes })
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
    backlog: RefCell<VecDeque<(CoreId, E)>>,
    flusher: RefCell<Option<Waker>>,
    paused_readers: RefCell<Vec<Waker>>,
    /// Envelopes that ever waited in the backlog (a sign the inbox is too small).
    backlogged: Cell<u64>,
}

impl<E: Send> Outbox<E> {
    pub fn new(hub: Arc<Hub<E>>) -> Self {
        Outbox {
            hub,
            backlog: RefCell::new(VecDeque::new()),
            flusher: RefCell::new(None),
            paused_readers: RefCell::new(Vec::new()),
            backlogged: Cell::new(0),
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
            if let Some(waker) = self.flusher.borrow_mut().take() {
                waker.wake();
            }
        } else {
            backlog.push_back((core, envelope));
        }
        self.backlogged.set(self.backlogged.get() + 1);
    }

    /// Whether connections should stop reading until the backlog drains.
    pub fn is_congested(&self) -> bool {
        !self.backlog.borrow().is_empty()
    }

    pub fn backlogged_total(&self) -> u64 {
        self.backlogged.get()
    }

    /// Waits until the backlog is empty (for a reader pausing on congestion).
    pub async fn drained(&self) {
        poll_fn(|cx| {
            if self.backlog.borrow().is_empty() {
                Poll::Ready(())
            } else {
                self.paused_readers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// The flusher: runs for the life of the core, moving the backlog into inboxes.
    pub async fn run_flusher(&self) {
        loop {
            poll_fn(|cx| {
                if self.backlog.borrow().is_empty() {
                    *self.flusher.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            while self.try_flush() {
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
        while let Some((core, envelope)) = backlog.pop_front() {
            if let Err(envelope) = self.hub.try_push(core, envelope) {
                backlog.push_front((core, envelope));
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_inbox_keeps_order_through_the_backlog() {
        let hub = Hub::<u32>::new(2, 16);
        let outbox = Outbox::new(hub.clone());
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
        let outbox = Outbox::new(hub.clone());
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
}
