//! The frame decoder (`ringcast::ws::Decoder`) fed one byte stream three ways: whole,
//! split at the points the input picks, and (for short streams) one byte at a time.
//! Checks: no panic; every way decodes the same items and stops with the same error
//! (or the same unconsumed tail); `Ok(None)` only while `buf` holds less than
//! `bytes_wanted()`, which never passes the longest frame the limit allows; every item
//! obeys RFC 6455 (text and close reasons are UTF-8, control payloads at most 125
//! bytes, close codes allowed on the wire, data within the message size limit).
//! The stream is built from frames with any header bits (so most of it gets past the
//! header checks) mixed with raw bytes.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcast::ws::{Decoder, Incoming, ProtocolError, Role};

#[derive(Arbitrary, Debug)]
struct Input {
    client_role: bool,
    /// Message size limit, taken modulo 4 KiB + 1 so the limit is reachable.
    max_message: u16,
    /// Where to split the stream (each taken modulo its length + 1).
    cuts: Vec<u16>,
    pieces: Vec<Piece>,
}

#[derive(Arbitrary, Debug)]
enum Piece {
    Frame(Frame),
    Raw(Vec<u8>),
}

/// One frame with any header bits; the length is written in its shortest form unless
/// `long_length` asks for a longer (non-minimal) one.
#[derive(Arbitrary, Debug)]
struct Frame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    long_length: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.fin) << 7 | (self.rsv & 0x07) << 4 | (self.opcode & 0x0F));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let len = self.payload.len();
        match (len, self.long_length % 3) {
            (0..=125, 0) => out.push(mask_bit | len as u8),
            (0..=0xFFFF, 0 | 1) => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        let start = out.len();
        out.extend_from_slice(&self.payload);
        if let Some(mask) = self.mask {
            out.extend_from_slice(&mask);
            // The key goes before the payload: rotate it into place, then mask.
            out[start..].rotate_right(4);
            for (i, byte) in out[start + 4..].iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
        }
    }
}

/// What feeding a stream gave: the items, then the error or the unconsumed tail.
#[derive(Debug, PartialEq)]
struct Outcome {
    items: Vec<Incoming>,
    end: Result<usize, ProtocolError>,
}

/// Feeds `wire` to a fresh decoder in the given chunks, checking the decoder's own
/// promises after every call.
fn feed(role: Role, max: usize, chunks: impl Iterator<Item = impl AsRef<[u8]>>) -> Outcome {
    let mut decoder = Decoder::new(role, max);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    // The longest frame: a whole message (or a 125-byte control frame) and its header.
    let longest = max.max(125) + 14;
    for chunk in chunks {
        buf.extend_from_slice(chunk.as_ref());
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => {
                    check_item(&item, max);
                    items.push(item);
                }
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        items,
                        end: Err(error),
                    }
                }
            }
        }
        let wanted = decoder.bytes_wanted();
        assert!(wanted <= longest, "bytes_wanted {wanted} over {longest}");
        assert!(
            buf.len() < wanted,
            "stalled: {} bytes, wants {wanted}",
            buf.len()
        );
    }
    Outcome {
        items,
        end: Ok(buf.len()),
    }
}

fn check_item(item: &Incoming, max: usize) {
    match item {
        Incoming::Text(text) => {
            assert!(text.len() <= max);
            assert!(std::str::from_utf8(text).is_ok(), "text is not UTF-8");
        }
        Incoming::Binary(data) => assert!(data.len() <= max),
        Incoming::Ping(payload) | Incoming::Pong(payload) => assert!(payload.len() <= 125),
        Incoming::Close(None) => {}
        Incoming::Close(Some((code, reason))) => {
            assert!(reason.len() <= 123);
            assert!(
                std::str::from_utf8(reason).is_ok(),
                "close reason is not UTF-8"
            );
            // RFC 6455 §7.4.1-2 and the IANA registry: codes that may appear on the wire.
            assert!(
                matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999),
                "close code {code} let through"
            );
        }
    }
}

fuzz_target!(|input: Input| {
    let role = if input.client_role {
        Role::Client
    } else {
        Role::Server
    };
    let max = usize::from(input.max_message % 4097);
    let mut wire = Vec::new();
    for piece in &input.pieces {
        match piece {
            Piece::Frame(frame) => frame.encode(&mut wire),
            Piece::Raw(bytes) => wire.extend_from_slice(bytes),
        }
    }

    let whole = feed(role, max, std::iter::once(&wire[..]));

    let mut cuts: Vec<usize> = input
        .cuts
        .iter()
        .map(|&cut| usize::from(cut) % (wire.len() + 1))
        .collect();
    cuts.sort_unstable();
    let bounds = std::iter::once(0)
        .chain(cuts)
        .chain(std::iter::once(wire.len()));
    let bounds: Vec<usize> = bounds.collect();
    let split = feed(role, max, bounds.windows(2).map(|w| &wire[w[0]..w[1]]));
    assert_eq!(split, whole, "split at {bounds:?}");

    if wire.len() <= 4096 {
        let bytewise = feed(role, max, wire.chunks(1));
        assert_eq!(bytewise, whole, "fed one byte at a time");
    }
});
