//! Counters per core, written by their core only and read by anyone (relaxed atomics).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One core's counters.
#[derive(Debug, Default)]
pub struct CoreStats {
    accepted: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
    rejected_handshakes: AtomicU64,
    protocol_errors: AtomicU64,
    slow_consumers: AtomicU64,
}

/// A sum of every core's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Connections that completed the WebSocket upgrade.
    pub opened: u64,
    /// Upgraded connections that have ended.
    pub closed: u64,
    /// Upgrade requests answered with an HTTP error.
    pub rejected_handshakes: u64,
    /// Connections failed with 1002, 1007 or 1009.
    pub protocol_errors: u64,
    /// Connections closed with 1008 for passing their outbound limit.
    pub slow_consumers: u64,
}

impl Stats {
    /// Upgraded connections still open.
    pub fn open(&self) -> u64 {
        self.opened - self.closed
    }
}

macro_rules! counters {
    ($($count:ident => $field:ident),* $(,)?) => {
        impl CoreStats {
            $(pub(crate) fn $count(&self) {
                self.$field.fetch_add(1, Relaxed);
            })*
        }

        /// Sums the counters of every core.
        pub fn sum<'a>(cores: impl IntoIterator<Item = &'a CoreStats>) -> Stats {
            let mut total = Stats::default();
            for core in cores {
                $(total.$field += core.$field.load(Relaxed);)*
            }
            total
        }
    };
}

counters! {
    count_accepted => accepted,
    count_opened => opened,
    count_closed => closed,
    count_rejected_handshake => rejected_handshakes,
    count_protocol_error => protocol_errors,
    count_slow_consumer => slow_consumers,
}
