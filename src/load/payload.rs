//! What the load tool puts inside its messages so it can account for them: an echo
//! sequence number, and the broadcast header (kind, publisher, sequence, send time).
//! Fields are fixed-width lowercase hex so every payload is valid UTF-8 text.

use super::args::BROADCAST_HEADER_LEN;

/// Hex digits of an echo sequence number at the front of a payload.
pub const ECHO_SEQ_LEN: usize = 16;
/// Fills the rest of every payload.
const PAD: u8 = b'.';

/// Writes `value` as `out.len()` hex digits (the low ones, most significant first).
fn put_hex(out: &mut [u8], mut value: u64) {
    for byte in out.iter_mut().rev() {
        *byte = b"0123456789abcdef"[(value & 0xF) as usize];
        value >>= 4;
    }
}

/// Value of each byte as a lowercase hex digit; 0xFF for any other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Reads lowercase hex digits (at most 16). Branch-free per digit: this runs once per
/// delivery in the broadcast and rooms scenarios.
fn parse_hex(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    let mut invalid = 0u8;
    for &d in digits {
        let nibble = HEX_VALUE[d as usize];
        invalid |= nibble;
        value = value << 4 | u64::from(nibble & 0xF);
    }
    (invalid & 0xF0 == 0).then_some(value)
}

/// An echo payload: the sequence number when it fits, then padding.
pub fn fill_echo(out: &mut [u8], seq: u64) {
    let digits = out.len().min(ECHO_SEQ_LEN);
    put_hex(&mut out[..digits], seq);
    out[digits..].fill(PAD);
}

/// Whether an echoed payload is the one sent as `seq` with `size` bytes. Payloads too
/// short for the whole number carry its low digits.
pub fn echo_matches(payload: &[u8], seq: u64, size: usize) -> bool {
    if payload.len() != size {
        return false;
    }
    let digits = size.min(ECHO_SEQ_LEN);
    let mask = if digits == ECHO_SEQ_LEN {
        u64::MAX
    } else {
        (1u64 << (4 * digits)) - 1
    };
    parse_hex(&payload[..digits]) == Some(seq & mask) && payload[digits..].iter().all(|&b| b == PAD)
}

/// The two kinds of broadcast message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A counted message.
    Data,
    /// A probe sent before the run to learn that the relay reaches every connection.
    Sync,
}

/// The accounting header of a broadcast message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub kind: Kind,
    pub publisher: u32,
    pub seq: u64,
    /// Nanoseconds since the run's epoch when it was sent.
    pub sent_ns: u64,
}

/// Writes `stamp` at the front of `out` (at least [`BROADCAST_HEADER_LEN`] bytes) and pads.
pub fn fill_broadcast(out: &mut [u8], stamp: Stamp) {
    out[0] = match stamp.kind {
        Kind::Data => b'M',
        Kind::Sync => b'S',
    };
    put_hex(&mut out[1..9], u64::from(stamp.publisher));
    put_hex(&mut out[9..25], stamp.seq);
    put_hex(&mut out[25..BROADCAST_HEADER_LEN], stamp.sent_ns);
    out[BROADCAST_HEADER_LEN..].fill(PAD);
}

/// Reads the header back; `None` if the payload is not one of ours.
pub fn parse_broadcast(payload: &[u8]) -> Option<Stamp> {
    if payload.len() < BROADCAST_HEADER_LEN {
        return None;
    }
    let kind = match payload[0] {
        b'M' => Kind::Data,
        b'S' => Kind::Sync,
        _ => return None,
    };
    Some(Stamp {
        kind,
        publisher: u32::try_from(parse_hex(&payload[1..9])?).ok()?,
        seq: parse_hex(&payload[9..25])?,
        sent_ns: parse_hex(&payload[25..BROADCAST_HEADER_LEN])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_payload_round_trips_at_every_size() {
        for size in 0..40 {
            let mut out = vec![0u8; size];
            fill_echo(&mut out, 0xdead_beef_1234);
            assert!(std::str::from_utf8(&out).is_ok());
            assert!(echo_matches(&out, 0xdead_beef_1234, size), "size {size}");
            if size > 0 {
                assert!(!echo_matches(&out, 0xdead_beef_1235, size), "size {size}");
            }
            assert!(!echo_matches(&out, 0xdead_beef_1234, size + 1));
        }
    }

    #[test]
    fn corrupted_echo_padding_is_caught() {
        let mut out = vec![0u8; 32];
        fill_echo(&mut out, 7);
        out[20] = b'x';
        assert!(!echo_matches(&out, 7, 32));
    }

    #[test]
    fn broadcast_header_round_trips() {
        let stamp = Stamp {
            kind: Kind::Data,
            publisher: 0xFFFF_FFFF,
            seq: u64::MAX,
            sent_ns: 123_456_789,
        };
        let mut out = vec![0u8; 64];
        fill_broadcast(&mut out, stamp);
        assert!(std::str::from_utf8(&out).is_ok());
        assert_eq!(parse_broadcast(&out), Some(stamp));
        let sync = Stamp {
            kind: Kind::Sync,
            ..stamp
        };
        fill_broadcast(&mut out[..BROADCAST_HEADER_LEN], sync);
        assert_eq!(parse_broadcast(&out[..BROADCAST_HEADER_LEN]), Some(sync));
    }

    #[test]
    fn hex_reads_back_and_refuses_what_is_not_lowercase_hex() {
        for value in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            let mut out = [0u8; 16];
            put_hex(&mut out, value);
            assert_eq!(parse_hex(&out), Some(value));
        }
        assert_eq!(parse_hex(b""), Some(0));
        for bad in [&b"12G4"[..], b"ABCD", b"12 4", b"-1", b"\xff"] {
            assert_eq!(parse_hex(bad), None, "{bad:?}");
        }
        assert_eq!(parse_hex(&[0xFF, b'1']), None);
    }

    #[test]
    fn foreign_payloads_are_not_ours() {
        assert_eq!(parse_broadcast(b"hello"), None);
        assert_eq!(parse_broadcast(&[b'M'; 64]), None);
        let mut out = vec![0u8; 41];
        fill_broadcast(
            &mut out,
            Stamp {
                kind: Kind::Data,
                publisher: 1,
                seq: 2,
                sent_ns: 3,
            },
        );
        out[0] = b'X';
        assert_eq!(parse_broadcast(&out), None);
    }
}
