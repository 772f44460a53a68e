//! A bounded queue from the cores to one ordinary thread (the cluster link's writer):
//! lock-free pushes, and a consumer that parks when it finds the queue empty. A push
//! wakes the consumer only when it is parked (one atomic swap otherwise).
//!
//! A full mailbox makes the pushing core wait (yielding its CPU) until there is room:
//! the consumer never waits on the cores, so the wait ends, and meanwhile the core
//! reads nothing more from its clients (backpressure). Each wait is counted.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

pub struct Mailbox<T> {
    queue: ArrayQueue<T>,
    consumer: OnceLock<Thread>,
    /// The consumer is parked or about to park: the next push unparks it.
    parked: AtomicBool,
}

impl<T> Mailbox<T> {
    pub fn new(capacity: usize) -> Self {
        Mailbox {
            queue: ArrayQueue::new(capacity),
            consumer: OnceLock::new(),
            parked: AtomicBool::new(false),
        }
    }

    /// Names the thread that pops (called once, by that thread, before it pops).
    pub fn set_consumer(&self, thread: Thread) {
        let _ = self.consumer.set(thread);
    }

    /// Pushes `item`, waiting while the mailbox is full. Returns whether it waited.
    pub fn push(&self, mut item: T) -> bool {
        let mut waited = false;
        loop {
            match self.queue.push(item) {
                Ok(()) => break,
                Err(back) => {
                    item = back;
                    waited = true;
                    self.wake();
                    std::thread::yield_now();
                }
            }
        }
        self.wake();
        waited
    }

    fn wake(&self) {
        // With the fence in `wait`: either the consumer sees the item, or this sees
        // `parked` (a store then a load on each side needs SeqCst fences between).
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            if let Some(thread) = self.consumer.get() {
                thread.unpark();
            }
        }
    }

    /// Wakes the consumer whether or not anything was pushed (to make it look at
    /// something else: a stop request, a finished reader).
    pub fn wake_consumer(&self) {
        if let Some(thread) = self.consumer.get() {
            thread.unpark();
        }
    }

    pub fn pop(&self) -> Option<T> {
        self.queue.pop()
    }

    /// Parks the consumer until a push or `timeout`, unless items are waiting.
    pub fn wait(&self, timeout: Duration) {
        self.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.queue.is_empty() {
            std::thread::park_timeout(timeout);
        }
        self.parked.store(false, Ordering::SeqCst);
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_push_wakes_the_parked_consumer_and_order_holds() {
        let mailbox = Arc::new(Mailbox::new(4));
        let consumer = {
            let mailbox = mailbox.clone();
            std::thread::spawn(move || {
                mailbox.set_consumer(std::thread::current());
                let mut got = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(5);
                while got.len() < 100 && Instant::now() < deadline {
                    match mailbox.pop() {
                        Some(n) => got.push(n),
                        None => mailbox.wait(Duration::from_secs(5)),
                    }
                }
                got
            })
        };
        for n in 0..100 {
            mailbox.push(n);
        }
        // A missed wake-up would park the consumer past the deadline with items left.
        assert_eq!(consumer.join().unwrap(), (0..100).collect::<Vec<_>>());
    }
}
