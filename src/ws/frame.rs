//! Frame encoding (RFC 6455 §5.2) and masking: builds the bytes that go on the wire.
//! It does not parse; see `decoder.rs` for the receiving side.

use std::ops::Deref;
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Longest frame header: 2 bytes + 8-byte length + 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The opcodes this crate sends. Reserved opcodes are never produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn to_tungstenite(self) -> OpCode {
        match self {
            Opcode::Continuation => OpCode::Data(Data::Continue),
            Opcode::Text => OpCode::Data(Data::Text),
            Opcode::Binary => OpCode::Data(Data::Binary),
            Opcode::Close => OpCode::Control(Control::Close),
            Opcode::Ping => OpCode::Control(Control::Ping),
            Opcode::Pong => OpCode::Control(Control::Pong),
        }
    }
}

/// A frame header, formatted inline (no allocation). Aligned to 8 so that it is 16
/// bytes, copied in two aligned words: at 15 bytes every copy (one per recipient of a
/// fan-out) took two overlapping loads that the CPU could not forward from the stores
/// before them, a third of the fan-out loop's time (BENCHMARKS.md, profiles).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(8))]
pub struct HeaderBytes {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl HeaderBytes {
    /// An empty header, for payloads that already carry their own header.
    pub const EMPTY: HeaderBytes = HeaderBytes {
        bytes: [0; MAX_HEADER_LEN],
        len: 0,
    };

    /// Formats a header for a final (unfragmented) frame unless `fin` is false.
    pub fn new(opcode: Opcode, fin: bool, payload_len: usize, mask: Option<[u8; 4]>) -> Self {
        let header = FrameHeader {
            is_final: fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode: opcode.to_tungstenite(),
            mask,
        };
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let mut out: &mut [u8] = &mut bytes;
        header
            .format(payload_len as u64, &mut out)
            .expect("a frame header always fits in 14 bytes");
        let len = (MAX_HEADER_LEN - out.len()) as u8;
        HeaderBytes { bytes, len }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// One outbound frame: an inline header plus a shared payload. A payload that is a
/// whole pre-encoded frame (broadcasts) goes with `HeaderBytes::EMPTY`.
#[derive(Clone, Debug)]
pub struct OutFrame {
    pub header: HeaderBytes,
    pub payload: Payload,
}

/// A frame's payload, never copied. `Shared` is a `Bytes`, shareable across cores
/// (its count is atomic); `Local` is one `Bytes` shared among one core's queues with a
/// plain count: a fan-out to N connections costs N plain increments instead of N
/// atomic ones (see [`OutFrame::for_fan_out`]).
#[derive(Clone, Debug)]
pub enum Payload {
    Shared(Bytes),
    Local(Rc<Bytes>),
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Payload::Shared(bytes) => bytes,
            Payload::Local(bytes) => bytes,
        }
    }
}

impl OutFrame {
    /// A final, unmasked frame (the server role). The payload is not copied.
    pub fn new(opcode: Opcode, payload: Bytes) -> Self {
        OutFrame {
            header: HeaderBytes::new(opcode, true, payload.len(), None),
            payload: Payload::Shared(payload),
        }
    }

    /// A frame whose bytes are already complete (see [`encode_unmasked`]).
    pub fn preencoded(frame: Bytes) -> Self {
        OutFrame {
            header: HeaderBytes::EMPTY,
            payload: Payload::Shared(frame),
        }
    }

    /// The same frame for queuing on many connections of one core: its clones share
    /// the payload with a plain (not atomic) count.
    pub fn for_fan_out(&self) -> OutFrame {
        let payload = match &self.payload {
            Payload::Shared(bytes) => Payload::Local(Rc::new(bytes.clone())),
            local @ Payload::Local(_) => local.clone(),
        };
        OutFrame {
            header: self.header,
            payload,
        }
    }

    /// A close frame with a status code and reason (RFC 6455 §5.5.1).
    pub fn close(code: u16, reason: &str) -> Self {
        OutFrame::new(Opcode::Close, close_payload(code, reason))
    }

    /// Bytes this frame puts on the wire.
    pub fn wire_len(&self) -> usize {
        self.header.len as usize + self.payload.len()
    }

    /// Whether this is a control frame that backpressure must never drop.
    pub fn is_close(&self) -> bool {
        let first = if self.header.len > 0 {
            self.header.bytes[0]
        } else {
            self.payload.first().copied().unwrap_or(0)
        };
        first & 0x0F == 0x8
    }
}

/// A complete unmasked frame in one buffer: encode once, share with every recipient.
pub fn encode_unmasked(opcode: Opcode, payload: &[u8]) -> Bytes {
    let header = HeaderBytes::new(opcode, true, payload.len(), None);
    let mut out = BytesMut::with_capacity(header.len as usize + payload.len());
    out.put_slice(header.as_slice());
    out.put_slice(payload);
    out.freeze()
}

/// Encodes one sender's consecutive frames end to end in shared chunks, so that a
/// queue holding several of them writes the run as one iovec (`conn::writer` merges
/// iovecs that touch): one copy per frame into the chunk, as [`encode_unmasked`]
/// makes, and none per recipient.
///
/// A chunk stays allocated while any of its frames is queued anywhere, so every
/// frame in a chunk must go to the same recipients: keep one buffer per stream with
/// one audience (the rooms app keeps one per client, for its messages to one room, and
/// calls [`FrameBuffer::restart`] when the room changes, and one per room of 64 members
/// or more for its membership notices; the broadcast app, whose frames all go to
/// everyone, one per core). A reader that stops then holds, beyond
/// what it has queued, at most the earlier part of one chunk per buffer whose frames
/// it has queued (the chunk being filled when it stopped, or when it joined): frames
/// after those are all in its queue, counted against its outbound limit.
///
/// Chunks start at [`FrameBuffer::FIRST_CHUNK`] bytes and double up to
/// [`FrameBuffer::MAX_CHUNK`] while the sender keeps sending; a frame over a quarter of
/// the largest chunk gets its own buffer. An unused buffer holds nothing.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    chunk: BytesMut,
    next_chunk: usize,
}

impl FrameBuffer {
    pub const FIRST_CHUNK: usize = 512;
    pub const MAX_CHUNK: usize = 4096;

    /// A complete unmasked frame, placed right after the last one when it fits.
    pub fn encode(&mut self, opcode: Opcode, payload: &[u8]) -> Bytes {
        let header = HeaderBytes::new(opcode, true, payload.len(), None);
        let len = header.len as usize + payload.len();
        if len > Self::MAX_CHUNK / 4 {
            return encode_unmasked(opcode, payload);
        }
        if self.chunk.capacity() - self.chunk.len() < len {
            let size = self.next_chunk.clamp(Self::FIRST_CHUNK, Self::MAX_CHUNK);
            self.next_chunk = size * 2;
            // A frame over the first chunk size still gets a chunk it fits in.
            self.chunk = BytesMut::with_capacity(size.max(len));
        }
        self.chunk.put_slice(header.as_slice());
        self.chunk.put_slice(payload);
        self.chunk.split().freeze()
    }

    /// Lets go of the current chunk: the next frame starts a new one, for a new
    /// audience, at the first chunk size.
    pub fn restart(&mut self) {
        *self = FrameBuffer::default();
    }
}

/// A complete masked frame (the client role, RFC 6455 §5.3): copies the payload.
pub fn encode_masked(opcode: Opcode, fin: bool, payload: &[u8], mask: [u8; 4]) -> Bytes {
    let mut out = BytesMut::with_capacity(MAX_HEADER_LEN + payload.len());
    put_masked(&mut out, opcode, fin, payload.len(), mask, |out| {
        out.copy_from_slice(payload)
    });
    out.freeze()
}

/// Appends one masked frame (the client role, RFC 6455 §5.3) to `out`: its header,
/// then `len` payload bytes that `fill` writes in place, masked with `mask`. Frames
/// appended one after another go out in one write. Every masked frame this crate
/// sends is written here: [`encode_masked`], the blocking client
/// (`client::WsWriter`) and the load tool's outbox.
pub fn put_masked(
    out: &mut BytesMut,
    opcode: Opcode,
    fin: bool,
    len: usize,
    mask: [u8; 4],
    fill: impl FnOnce(&mut [u8]),
) {
    let header = HeaderBytes::new(opcode, fin, len, Some(mask));
    out.reserve(header.len as usize + len);
    out.put_slice(header.as_slice());
    let start = out.len();
    out.resize(start + len, 0);
    let payload = &mut out[start..];
    fill(payload);
    apply_mask(payload, mask, 0);
}

/// Mask keys from a seeded xorshift64: they vary from frame to frame, cost a few
/// instructions each, and repeat from run to run with the seed. RFC 6455 §10.3 wants
/// keys that an intermediary cannot predict, so a client meant for the open network
/// draws them from a CSPRNG instead (the blocking client does); a load generator,
/// which only needs them to vary, uses these.
#[derive(Clone, Debug)]
pub struct SeededMasks {
    state: u64,
}

impl SeededMasks {
    /// Any seed will do; xorshift needs a non-zero state, so the low bit is set.
    pub fn new(seed: u64) -> Self {
        SeededMasks { state: seed | 1 }
    }

    pub fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        (x as u32).to_ne_bytes()
    }
}

/// The payload of a close frame: 2-byte code, then the UTF-8 reason, cut to fit 125 bytes.
pub fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = BytesMut::with_capacity(2 + cut);
    out.put_u16(code);
    out.put_slice(&reason.as_bytes()[..cut]);
    out.freeze()
}

/// XORs `data` with `mask`, where `data` starts `offset` bytes into the payload.
/// Works a word at a time; the byte loop handles the unaligned ends.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut rotated = mask;
    rotated.rotate_left(offset % 4);
    // 16 bytes at a time (the compiler keeps them in one vector register): a 16 KiB
    // message is 1,024 steps instead of 4,096.
    let word = u32::from_ne_bytes(rotated) as u128;
    let wide = word | word << 32 | word << 64 | word << 96;
    let mut chunks = data.chunks_exact_mut(16);
    for chunk in &mut chunks {
        let value = u128::from_ne_bytes(chunk.try_into().expect("16 bytes")) ^ wide;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_buffer_puts_consecutive_frames_end_to_end() {
        let mut buffer = FrameBuffer::default();
        let a = buffer.encode(Opcode::Text, b"first");
        let b = buffer.encode(Opcode::Text, b"second");
        assert_eq!(a, encode_unmasked(Opcode::Text, b"first"));
        assert_eq!(b, encode_unmasked(Opcode::Text, b"second"));
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        buffer.restart();
        let c = buffer.encode(Opcode::Text, b"third");
        assert_ne!(b.as_ptr().wrapping_add(b.len()), c.as_ptr());
    }

    #[test]
    fn a_frame_buffer_grows_its_chunks_and_gives_big_frames_their_own() {
        let mut buffer = FrameBuffer::default();
        let payload = [b'x'; 98]; // 100-byte frames
        let frames: Vec<Bytes> = (0..60)
            .map(|_| buffer.encode(Opcode::Text, &payload))
            .collect();
        let runs = 1 + frames
            .windows(2)
            .filter(|w| w[0].as_ptr().wrapping_add(w[0].len()) != w[1].as_ptr())
            .count();
        // 512 + 1024 + 2048 + 4096 bytes hold 5 + 10 + 20 + 25 of them.
        assert_eq!(runs, 4);
        assert!(frames
            .iter()
            .all(|f| f[..] == encode_unmasked(Opcode::Text, &payload)[..]));
        let big = vec![b'y'; FrameBuffer::MAX_CHUNK];
        let whole = buffer.encode(Opcode::Binary, &big);
        assert_eq!(whole, encode_unmasked(Opcode::Binary, &big));
        let after = buffer.encode(Opcode::Text, &payload);
        assert_eq!(
            frames[59].as_ptr().wrapping_add(100),
            after.as_ptr(),
            "a big frame does not break the run"
        );
    }

    fn naive_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= mask[(i + offset) % 4];
        }
    }

    #[test]
    fn word_mask_matches_byte_mask_at_every_offset_and_length() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..37 {
            for offset in 0..8 {
                let original: Vec<u8> = (0..len as u8).collect();
                let mut fast = original.clone();
                let mut slow = original.clone();
                apply_mask(&mut fast, mask, offset);
                naive_mask(&mut slow, mask, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn header_uses_the_shortest_length_form() {
        assert_eq!(
            HeaderBytes::new(Opcode::Text, true, 125, None).as_slice(),
            [0x81, 125]
        );
        assert_eq!(
            HeaderBytes::new(Opcode::Binary, true, 126, None).as_slice(),
            [0x82, 126, 0, 126]
        );
        assert_eq!(
            HeaderBytes::new(Opcode::Text, false, 65536, None).as_slice(),
            [0x01, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        let masked = HeaderBytes::new(Opcode::Ping, true, 0, Some([1, 2, 3, 4]));
        assert_eq!(masked.as_slice(), [0x89, 0x80, 1, 2, 3, 4]);
    }

    #[test]
    fn put_masked_appends_the_same_frame_encode_masked_makes() {
        let mut out = BytesMut::from(&b"before"[..]);
        put_masked(&mut out, Opcode::Text, false, 5, [9, 8, 7, 6], |p| {
            p.copy_from_slice(b"hello")
        });
        let alone = encode_masked(Opcode::Text, false, b"hello", [9, 8, 7, 6]);
        assert_eq!(&out[..6], b"before");
        assert_eq!(&out[6..], &alone[..]);
        let mut unmasked = alone[6..].to_vec();
        apply_mask(&mut unmasked, [9, 8, 7, 6], 0);
        assert_eq!(unmasked, b"hello");
    }

    #[test]
    fn seeded_masks_vary_and_repeat_with_the_seed() {
        let draw = |seed| {
            let mut masks = SeededMasks::new(seed);
            (0..100).map(|_| masks.next_mask()).collect::<Vec<_>>()
        };
        let keys = draw(42);
        assert_eq!(keys, draw(42));
        assert_ne!(keys, draw(44));
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), 100);
        // Seed 0 is usable: the state is never zero.
        assert_ne!(draw(0)[0], [0; 4]);
    }

    #[test]
    fn close_payload_truncates_reason_on_a_char_boundary() {
        let reason = "é".repeat(100);
        let payload = close_payload(1000, &reason);
        assert!(payload.len() <= 125);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        assert_eq!(&payload[..2], &[0x03, 0xE8]);
    }

    #[test]
    fn a_fan_out_frame_shares_one_payload_with_a_plain_count_and_the_same_bytes() {
        let payload = Bytes::from(vec![7u8; 64]);
        let frame = OutFrame::new(Opcode::Binary, payload.clone());
        let local = frame.for_fan_out();
        let copies: Vec<OutFrame> = (0..3).map(|_| local.clone()).collect();
        let Payload::Local(shared) = &local.payload else {
            panic!("a fan-out frame is local");
        };
        assert_eq!(Rc::strong_count(shared), 4, "clones share one payload");
        assert_eq!(
            shared.as_ptr(),
            payload.as_ptr(),
            "the bytes are not copied"
        );
        for copy in &copies {
            assert_eq!(copy.header.as_slice(), frame.header.as_slice());
            assert_eq!(&copy.payload[..], &payload[..]);
            assert_eq!(copy.wire_len(), frame.wire_len());
        }
        // A local frame stays local (no second wrapper).
        let Payload::Local(again) = &local.for_fan_out().payload else {
            panic!("still local");
        };
        assert!(Rc::ptr_eq(again, shared));
    }

    #[test]
    fn preencoded_and_split_frames_agree_on_wire_bytes() {
        let split = OutFrame::new(Opcode::Text, Bytes::from_static(b"hello"));
        let whole = OutFrame::preencoded(encode_unmasked(Opcode::Text, b"hello"));
        let mut a = split.header.as_slice().to_vec();
        a.extend_from_slice(&split.payload);
        assert_eq!(a, whole.payload.to_vec());
        assert_eq!(split.wire_len(), whole.wire_len());
        assert!(!split.is_close());
        assert!(OutFrame::close(1000, "").is_close());
    }
}
