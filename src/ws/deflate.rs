//! permessage-deflate (RFC 7692), sans-IO: negotiating it in the upgrade, compressing
//! a data frame's payload, inflating a whole received message under a size limit.
//! It does not decide who gets which frame (`conn::CoreCtx` does) or parse frames.
//!
//! The design keeps compression off the per-connection bill:
//! - Server to client, always `server_no_context_takeover`: each message is compressed
//!   on its own, so one compressed frame serves every recipient that negotiated the
//!   extension; a fan-out is compressed once per core (lazily, only if a recipient
//!   negotiated it) and shared as `Bytes` like the plain frame.
//! - Client to server, always `client_no_context_takeover` (RFC 7692 §7.1.1.1 lets the
//!   server include it even when the client did not offer it): each message inflates
//!   on its own, so one inflater per core serves every connection instead of a
//!   32 KiB window (about 43 KB of inflate state with miniz_oxide) per connection.
//! - The compressor and inflater are per core (one per thread: cores are threads),
//!   allocated on first use: about 300 KB and 43 KB, none on a core that never meets a
//!   deflate client.
//!
//! So a connection that negotiated deflate costs one byte (its `server_max_window_bits`)
//! more than one that did not; a server with `deflate` off costs nothing.

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::frame::{HeaderBytes, Opcode, OutFrame};

/// Payloads shorter than this go uncompressed: a deflate block's own overhead (a few
/// bytes) and the CPU are not worth it below a typical small JSON message.
pub const MIN_COMPRESS_BYTES: usize = 64;

/// The deflate tail a sync flush ends with; removed before sending and appended
/// before inflating (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The window the compressor uses (miniz_oxide always uses 32 KiB).
const FULL_WINDOW_BITS: u8 = 15;

/// What was agreed with one client. Both directions run without context takeover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// The client's `server_max_window_bits` (8..=15; 15 when it offered none). The
    /// compressor's window is 32 KiB, so a message is sent compressed to this client
    /// only if it is no longer than `1 << server_max_window_bits` bytes: no back
    /// reference can then reach further than the window (RFC 7692 §7.1.2.1).
    pub server_max_window_bits: u8,
    /// Whether the client offered `server_max_window_bits`, which the answer must then
    /// echo.
    echo_window_bits: bool,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` header line (with CRLF) for the 101 answer.
    pub fn response_header(&self) -> String {
        let mut line = String::from(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        );
        if self.echo_window_bits {
            line.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        line.push_str("\r\n");
        line
    }

    /// Whether a payload of `len` bytes may go compressed to this client.
    pub fn fits_window(server_max_window_bits: u8, len: usize) -> bool {
        server_max_window_bits >= FULL_WINDOW_BITS || len <= 1 << server_max_window_bits
    }
}

/// Picks the first acceptable permessage-deflate offer among the values of every
/// `Sec-WebSocket-Extensions` header (RFC 7692 §5, §7.1). `None`: nothing acceptable,
/// the connection goes on without the extension (never a refusal).
pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a [u8]>) -> Option<Agreement> {
    header_values
        .into_iter()
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(','))
        .find_map(accept_offer)
}

/// [`negotiate`] on a complete upgrade request head (already validated by
/// `handshake::parse_request`), reading its `Sec-WebSocket-Extensions` headers.
pub fn negotiate_request(head: &[u8]) -> Option<Agreement> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    request.parse(head).ok()?;
    negotiate(
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|h| h.value),
    )
}

/// Client role: whether a complete 101 response head agreed to permessage-deflate.
pub fn agreed_in_response(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    response.parse(head).is_ok()
        && response.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("sec-websocket-extensions")
                && h.value.starts_with(b"permessage-deflate")
        })
}

/// The compressed form of an unmasked, final, uncompressed text or binary frame (one
/// built by `OutFrame::new` or pre-encoded by `encode_unmasked`/`FrameBuffer`), with
/// its payload's length; `None` for any other frame or when not worth compressing.
pub fn compress_out_frame(frame: &OutFrame) -> Option<(OutFrame, usize)> {
    let (opcode, payload) = data_payload(frame)?;
    let compressed = compress_frame(opcode, payload)?;
    Some((OutFrame::preencoded(compressed), payload.len()))
}

/// The opcode and payload of a final, unmasked, uncompressed data frame.
fn data_payload(frame: &OutFrame) -> Option<(Opcode, &[u8])> {
    let header = frame.header.as_slice();
    let (head, payload): (&[u8], &[u8]) = if header.is_empty() {
        let bytes: &[u8] = &frame.payload;
        let &b1 = bytes.get(1)?;
        let (len, start) = match b1 {
            0..=125 => (b1 as usize, 2),
            126 => (
                u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
                4,
            ),
            127 => (
                u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
                10,
            ),
            // Masked: not a server frame.
            _ => return None,
        };
        // Exactly one frame, nothing after it.
        if bytes.len().checked_sub(start)? != len {
            return None;
        }
        (&bytes[..start], &bytes[start..])
    } else {
        (header, &frame.payload[..])
    };
    let opcode = match head[0] {
        0x81 => Opcode::Text,
        0x82 => Opcode::Binary,
        _ => return None,
    };
    if head[1] & 0x80 != 0 {
        return None;
    }
    Some((opcode, payload))
}

/// One offer, `permessage-deflate; param[=value]; ...`, if we can honour it.
fn accept_offer(offer: &str) -> Option<Agreement> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut agreement = Agreement {
        server_max_window_bits: FULL_WINDOW_BITS,
        echo_window_bits: false,
    };
    let mut seen = [false; 4];
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        // RFC 7692 §7.1: an offer with an unknown or repeated parameter, or a bad
        // value, is declined.
        let index = match (name, value) {
            ("server_no_context_takeover", None) => 0,
            ("client_no_context_takeover", None) => 1,
            ("server_max_window_bits", Some(value)) => {
                agreement.server_max_window_bits = window_bits(value)?;
                agreement.echo_window_bits = true;
                2
            }
            ("client_max_window_bits", None) => 3,
            ("client_max_window_bits", Some(value)) => window_bits(value).map(|_| 3)?,
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(agreement)
}

/// A window size parameter: 8 to 15, digits only (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || value.len() > 2 {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

thread_local! {
    // One per core thread (see the module docs), allocated on first use.
    static COMPRESSOR: RefCell<Option<Box<Compress>>> = const { RefCell::new(None) };
    static INFLATER: RefCell<Option<Box<Decompress>>> = const { RefCell::new(None) };
}

/// A complete unmasked frame with RSV1 set (RFC 7692 §6) carrying `payload`
/// compressed without context takeover, or `None` when it is not worth it: under
/// [`MIN_COMPRESS_BYTES`], or not smaller compressed.
pub fn compress_frame(opcode: Opcode, payload: &[u8]) -> Option<Bytes> {
    if payload.len() < MIN_COMPRESS_BYTES {
        return None;
    }
    let body = compress_payload(payload);
    if body.len() >= payload.len() {
        return None;
    }
    let header = HeaderBytes::new(opcode, true, body.len(), None);
    let mut frame = BytesMut::with_capacity(header.as_slice().len() + body.len());
    frame.put_slice(header.as_slice());
    frame[0] |= 0x40;
    frame.put_slice(&body);
    Some(frame.freeze())
}

/// `payload` as one raw deflate stream ended by a sync flush, the tail removed
/// (RFC 7692 §7.2.1), from a fresh compressor state.
pub fn compress_payload(payload: &[u8]) -> Vec<u8> {
    COMPRESSOR.with_borrow_mut(|slot| {
        // Level 1: a fan-out is compressed once per core, but an echo once per
        // message; the fast level keeps most of the gain on JSON (BENCHMARKS.md).
        let compress =
            slot.get_or_insert_with(|| Box::new(Compress::new(Compression::fast(), false)));
        compress.reset();
        // Room for the worst case (stored blocks), so one call normally does it all.
        let mut out = Vec::with_capacity(payload.len() + payload.len() / 8 + 64);
        loop {
            let consumed = compress.total_in() as usize;
            compress
                .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
                .expect("raw deflate of a byte slice cannot fail");
            // All input taken is not all output written: after a call that ran out of
            // room, miniz_oxide may hold input it has taken and a call that only
            // drains its buffer. The sync flush is complete when the output ends with
            // its marker and there was room to spare (regression: Autobahn 12.2.9 and
            // 12.5.x got 64 and 128 KiB messages back short).
            let done = compress.total_in() as usize == payload.len();
            if done && out.len() < out.capacity() && out.ends_with(&TAIL) {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        out
    })
}

/// Why a compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error("inflated message is over the {0}-byte limit: close with 1009")]
    TooBig(usize),
    #[error("corrupt deflate data (RFC 7692 §8): close with 1007")]
    Corrupt,
}

/// Inflates one whole message sent without context takeover. Stops as soon as the
/// output passes `max` bytes (a decompression bomb costs at most `max + 1` bytes of
/// output, never its full size).
pub fn inflate_message(compressed: &[u8], max: usize) -> Result<Bytes, InflateError> {
    INFLATER.with_borrow_mut(|slot| {
        let inflater = slot.get_or_insert_with(|| Box::new(Decompress::new(false)));
        inflater.reset(false);
        let limit = max.saturating_add(1);
        let mut out = Vec::with_capacity(limit.min(compressed.len().saturating_mul(4) + 64));
        // RFC 7692 §7.2.2: append the tail a sync flush would have ended with.
        for input in [compressed, &TAIL[..]] {
            let start = inflater.total_in();
            loop {
                let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
                let consumed = (before_in - start) as usize;
                let status = inflater
                    .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                if out.len() > max {
                    return Err(InflateError::TooBig(max));
                }
                if status == Status::StreamEnd {
                    // A final block (BFINAL): what follows is ignored (RFC 7692 §7.2.3).
                    return Ok(Bytes::from(out));
                }
                // Done with this input only when a call with room to spare made no
                // progress: the inflater may still hold output after taking the last
                // input byte (regression: Autobahn 12.2.9 got 64 KiB messages back short).
                let stalled =
                    inflater.total_in() == before_in && inflater.total_out() == before_out;
                if out.len() < out.capacity() && stalled {
                    break;
                }
                if out.len() == out.capacity() {
                    let grow = out.capacity().max(256).min(limit - out.len());
                    out.reserve_exact(grow);
                }
            }
        }
        Ok(Bytes::from(out))
    })
}

#[cfg(test)]
mod tests;
