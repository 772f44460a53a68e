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

/// Reads lowercase hex digits (at most 16), eight at a time: this runs for 40 digits
/// per delivery in the broadcast and rooms scenarios (one digit at a time, it was 11%
/// of the load tool's CPU in `broadcast`).
fn parse_hex(digits: &[u8]) -> Option<u64> {
    let octets = digits.chunks_exact(8);
    let rest = octets.remainder();
    let mut value = 0u64;
    for octet in octets {
        let octet = octet.try_into().expect("chunks of 8");
        value = value << 32 | u64::from(parse_hex8(octet)?);
    }
    let mut invalid = 0u8;
    for &d in rest {
        let nibble = HEX_VALUE[d as usize];
        invalid |= nibble;
        value = value << 4 | u64::from(nibble & 0xF);
    }
    (invalid & 0xF0 == 0).then_some(value)
}

/// Eight lowercase hex digits, most significant first, in one 64-bit word (SWAR).
fn parse_hex8(digits: [u8; 8]) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let word = u64::from_le_bytes(digits);
    // '0'..='9' (0x30..0x39) -> 0..=9; 'a'..='f' (0x61..0x66, bit 6 set) -> 10..=15.
    // Any other byte gives some value up to 24, caught below. No byte carries over.
    let nibbles = (word & (ONES * 0x0F)) + ((word >> 6) & ONES) * 9;
    let over_15 = (nibbles + ONES * 0x70) & (ONES * 0x80);
    // Valid exactly when every nibble is at most 15 and encodes back to its byte.
    let letters = ((nibbles + ONES * 0x06) >> 4) & ONES;
    if over_15 != 0 || nibbles + ONES * 0x30 + letters * 0x27 != word {
        return None;
    }
    // Byte i holds the digit worth 16^(7 - i): pair, then quad, then the two halves.
    let pairs = ((nibbles & 0x000F_000F_000F_000F) << 4) | ((nibbles >> 8) & 0x000F_000F_000F_000F);
    let quads = ((pairs & 0x0000_00FF_0000_00FF) << 8) | ((pairs >> 16) & 0x0000_00FF_0000_00FF);
    Some((((quads & 0xFFFF) << 16) | ((quads >> 32) & 0xFFFF)) as u32)
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

    /// One digit at a time, as the reference for the eight-at-a-time reader.
    fn parse_hex_by_digit(digits: &[u8]) -> Option<u64> {
        digits.iter().try_fold(0u64, |value, &d| {
            let nibble = HEX_VALUE[d as usize];
            (nibble <= 0xF).then_some(value << 4 | u64::from(nibble))
        })
    }

    #[test]
    fn eight_digits_at_once_agree_with_one_at_a_time_for_every_byte_anywhere() {
        for position in 0..8 {
            for byte in 0..=255u8 {
                let mut digits = *b"9f0a6e1b";
                digits[position] = byte;
                let expected = parse_hex_by_digit(&digits).map(|v| v as u32);
                assert_eq!(parse_hex8(digits), expected, "{digits:?}");
            }
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut digits = [0u8; 8];
            put_hex(&mut digits, x);
            assert_eq!(parse_hex8(digits), Some(x as u32));
            assert_eq!(parse_hex(&digits), Some(x & 0xFFFF_FFFF));
        }
    }

    #[test]
    fn hex_of_every_length_up_to_16_reads_back() {
        for len in 0..=16 {
            let value = 0xfedc_ba98_7654_3210u64;
            let mut out = vec![0u8; len];
            put_hex(&mut out, value);
            let mask = if len == 16 {
                u64::MAX
            } else {
                (1u64 << (4 * len)) - 1
            };
            assert_eq!(parse_hex(&out), Some(value & mask), "{len} digits");
            assert_eq!(parse_hex(&out), parse_hex_by_digit(&out));
            if len > 0 {
                out[len - 1] = b'g';
                assert_eq!(parse_hex(&out), None, "{len} digits");
                out[len - 1] = b'0';
                out[0] = b'G';
                assert_eq!(parse_hex(&out), None, "{len} digits");
            }
        }
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
