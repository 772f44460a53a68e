//! The server-wide shutdown signal: set once from any thread, awaited by every core.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;

use crate::CoreId;

pub(crate) struct Shutdown {
    requested: AtomicBool,
    cores: Box<[AtomicWaker]>,
}

impl Shutdown {
    pub(crate) fn new(cores: usize) -> Self {
        Shutdown {
            requested: AtomicBool::new(false),
            cores: (0..cores).map(|_| AtomicWaker::new()).collect(),
        }
    }

    pub(crate) fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
        for waker in self.cores.iter() {
            waker.wake();
        }
    }

    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    pub(crate) async fn wait(&self, core: CoreId) {
        poll_fn(|cx| {
            self.cores[core.index()].register(cx.waker());
            if self.requested.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
