//! The per-connection message rate limit of the room app (PROTOCOL.md **ext**:
//! `Rate limit exceeded`). A token bucket: a client may send `burst` messages at once
//! and `per_second` messages a second after that; a message over the limit is not
//! handled and gets the error (with the request's `id`), and the connection stays
//! open. Every message counts, valid or not. Pure: the caller passes the time.
//!
//! Off by default (`rate_limit_per_s = 0`): what one client costs the server is
//! already bounded without it (reads are served in turn per connection, outbound
//! queues are bounded, a client that does not read is closed with 1008). Turn it on
//! for public servers where one client may fan out to large rooms.

use crate::config::Config;

/// What one client may hold in the room app (config `max_rooms_per_client`,
/// `max_room_name_bytes`, `max_metadata_bytes`). A request over a limit gets an error
/// reply (`Too many rooms`, `Room name too long`, `Metadata too large`: see
/// `RequestError`) and changes nothing; the connection stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Rooms a client may be in at once.
    pub max_rooms: usize,
    /// Longest room name a client may join, in bytes.
    pub max_room_name_bytes: usize,
    /// Largest merged metadata object, as JSON text.
    pub max_metadata_bytes: usize,
}

impl ClientLimits {
    /// The limits `config` names (`max_rooms_per_client`, `max_room_name_bytes`,
    /// `max_metadata_bytes`).
    pub fn from_config(config: &Config) -> Self {
        ClientLimits {
            max_rooms: config.max_rooms_per_client,
            max_room_name_bytes: config.max_room_name_bytes,
            max_metadata_bytes: config.max_metadata_bytes,
        }
    }
}

impl Default for ClientLimits {
    /// The config's defaults: 100 rooms, 128-byte names, 16 KiB of metadata.
    fn default() -> Self {
        ClientLimits::from_config(&Config::default())
    }
}

/// How many messages a connection may send. `per_second == 0` means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained messages per second per connection; 0: no limit.
    pub per_second: u32,
    /// Messages a connection may send at once after being quiet (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const OFF: RateLimit = RateLimit {
        per_second: 0,
        burst: 0,
    };

    /// The limit `config` names (`rate_limit_per_s`, `rate_limit_burst`).
    pub fn from_config(config: &Config) -> Self {
        RateLimit {
            per_second: config.rate_limit_per_s,
            burst: config.rate_limit_burst,
        }
    }

    pub fn is_off(self) -> bool {
        self.per_second == 0
    }

    /// Bucket capacity in thousandths of a message.
    fn capacity(self) -> u64 {
        u64::from(self.burst.max(1)) * MILLI
    }
}

/// One message, in thousandths: refill is `per_second` thousandths per millisecond.
const MILLI: u64 = 1000;

/// A connection's remaining allowance. A new bucket is full: a new connection may
/// send its whole burst at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Thousandths of a message the connection may still send.
    credit: u64,
    /// When `credit` was last brought up to date, in the caller's milliseconds.
    at_ms: u64,
}

impl Default for Bucket {
    fn default() -> Self {
        // Capped to the burst by the first `take`.
        Bucket {
            credit: u64::MAX,
            at_ms: 0,
        }
    }
}

impl Bucket {
    /// Takes one message's worth; `false` when the connection is over the limit. Time
    /// that goes backwards counts as no time.
    pub fn take(&mut self, limit: RateLimit, now_ms: u64) -> bool {
        if limit.is_off() {
            return true;
        }
        let elapsed = now_ms.saturating_sub(self.at_ms);
        let refill = elapsed.saturating_mul(u64::from(limit.per_second));
        self.credit = self.credit.saturating_add(refill).min(limit.capacity());
        self.at_ms = self.at_ms.max(now_ms);
        if self.credit >= MILLI {
            self.credit -= MILLI;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_A_SECOND: RateLimit = RateLimit {
        per_second: 10,
        burst: 3,
    };

    fn taken(bucket: &mut Bucket, limit: RateLimit, now_ms: u64, tries: usize) -> usize {
        (0..tries).filter(|_| bucket.take(limit, now_ms)).count()
    }

    #[test]
    fn a_burst_is_admitted_and_the_next_message_refused() {
        let mut bucket = Bucket::default();
        assert_eq!(taken(&mut bucket, TEN_A_SECOND, 0, 5), 3);
        assert!(!bucket.take(TEN_A_SECOND, 0));
    }

    #[test]
    fn credit_refills_at_the_rate_and_stops_at_the_burst() {
        let mut bucket = Bucket::default();
        assert_eq!(taken(&mut bucket, TEN_A_SECOND, 0, 3), 3);
        // 10 a second: one message every 100 ms, none before.
        assert!(!bucket.take(TEN_A_SECOND, 99));
        assert!(bucket.take(TEN_A_SECOND, 100));
        assert!(!bucket.take(TEN_A_SECOND, 150));
        assert!(bucket.take(TEN_A_SECOND, 200));
        // A long quiet spell refills to the burst, not beyond.
        assert_eq!(taken(&mut bucket, TEN_A_SECOND, 60_000, 10), 3);
    }

    #[test]
    fn sustained_sending_gets_the_rate() {
        let mut bucket = Bucket::default();
        // One attempt every millisecond for 10 s: the burst plus 10 a second.
        let admitted = (0..10_000u64)
            .filter(|ms| bucket.take(TEN_A_SECOND, *ms))
            .count();
        assert_eq!(admitted, 3 + 99);
    }

    #[test]
    fn off_admits_everything() {
        let mut bucket = Bucket::default();
        assert_eq!(taken(&mut bucket, RateLimit::OFF, 0, 100_000), 100_000);
    }

    #[test]
    fn time_going_backwards_or_far_forwards_is_safe() {
        let limit = RateLimit {
            per_second: u32::MAX,
            burst: 2,
        };
        let mut bucket = Bucket::default();
        assert_eq!(taken(&mut bucket, limit, 1_000, 3), 2);
        assert!(
            !bucket.take(limit, 10),
            "no credit from time going backwards"
        );
        assert_eq!(taken(&mut bucket, limit, u64::MAX, 3), 2);
    }

    #[test]
    fn a_burst_of_zero_still_admits_one_message() {
        let limit = RateLimit {
            per_second: 1,
            burst: 0,
        };
        let mut bucket = Bucket::default();
        assert_eq!(taken(&mut bucket, limit, 0, 3), 1);
    }
}
