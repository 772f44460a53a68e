//! The receiving half of the codec, sans-IO: bytes in, whole messages and control
//! frames out (RFC 6455 §5). Reassembles fragments, unmasks in place, validates UTF-8
//! incrementally and close payloads, and enforces the message size limit.
//! It never reads a socket and never writes a reply: the caller decides what to send.

use std::io::Cursor;

use bytes::{Buf, Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::close_code;
use super::deflate::{self, InflateError};
use super::frame::apply_mask;
use super::utf8::Utf8Validator;

/// Which end of the connection this decoder sits on: servers require masked frames,
/// clients require unmasked ones (RFC 6455 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// One complete message or control frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A whole text message, already validated as UTF-8.
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// A close frame: `None` when it had no payload, else the code and UTF-8 reason.
    Close(Option<(u16, Bytes)>),
}

/// Why the peer's bytes are not acceptable. Each variant names the close code
/// (RFC 6455 §7.4.1) the connection must be failed with: see [`ProtocolError::close_code`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("reserved bits set but no extension was negotiated (RFC 6455 §5.2): close with 1002")]
    ReservedBits,
    #[error("RSV1 on a control or continuation frame (RFC 7692 §6): close with 1002")]
    MisplacedRsv1,
    #[error("corrupt compressed message (RFC 7692 §8): close with 1007")]
    CorruptCompressed,
    #[error("reserved opcode {0:#x} (RFC 6455 §5.2): close with 1002")]
    ReservedOpcode(u8),
    #[error("client frame is not masked (RFC 6455 §5.1): close with 1002")]
    UnmaskedClientFrame,
    #[error("server frame is masked (RFC 6455 §5.1): close with 1002")]
    MaskedServerFrame,
    #[error("control frame is fragmented (RFC 6455 §5.5): close with 1002")]
    FragmentedControlFrame,
    #[error("control frame payload of {0} bytes is over 125 (RFC 6455 §5.5): close with 1002")]
    ControlFrameTooLong(u64),
    #[error("continuation frame without a message to continue (RFC 6455 §5.4): close with 1002")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is open (RFC 6455 §5.4): close with 1002")]
    ExpectedContinuation,
    #[error("close frame with a 1-byte payload (RFC 6455 §5.5.1): close with 1002")]
    CloseFrameTooShort,
    #[error("close code {0} may not be sent on the wire (RFC 6455 §7.4): close with 1002")]
    InvalidCloseCode(u16),
    #[error("invalid UTF-8 in a text message or close reason (RFC 6455 §8.1): close with 1007")]
    InvalidUtf8,
    #[error("message of at least {len} bytes is over the {max}-byte limit: close with 1009")]
    MessageTooBig { len: u64, max: usize },
}

impl ProtocolError {
    /// The close code to fail the connection with.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::CorruptCompressed => {
                close_code::INVALID_PAYLOAD
            }
            ProtocolError::MessageTooBig { .. } => close_code::MESSAGE_TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// A frame whose header has been parsed but whose payload has not fully arrived.
#[derive(Clone, Copy, Debug)]
struct FrameInProgress {
    header_len: usize,
    payload_len: usize,
    fin: bool,
    kind: FrameKind,
    mask: Option<[u8; 4]>,
    /// RSV1 on the first frame of a message: permessage-deflate (RFC 7692 §6).
    compressed: bool,
    /// Payload bytes already unmasked and validated in place (text only).
    checked: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameKind {
    Text,
    Binary,
    Continuation,
    Close,
    Ping,
    Pong,
}

enum FrameOutcome {
    Item(Incoming),
    NeedMore,
    /// A non-final fragment was consumed.
    Fragment,
}

/// A payload up to this size is copied out of the read buffer rather than split from
/// it: a message the app keeps (queued for a client that does not read, say) then holds
/// its own bytes, not the whole buffer it was read into (a server reads into one
/// buffer per core), so memory follows what the outbound limit counts. Larger payloads
/// share the buffer (no copy); they pin at most buffer/4 KiB times their size. A copy
/// this small costs about what sharing does (two atomic count changes).
const COPY_AT_MOST: usize = 4096;

/// A fragmented message whose final frame has not arrived.
#[derive(Debug)]
struct MessageInProgress {
    text: bool,
    compressed: bool,
    data: BytesMut,
}

/// Turns a byte stream into [`Incoming`] items. Feed it the connection's read buffer;
/// it consumes exactly the bytes of the frames it returns.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_message: usize,
    frame: Option<FrameInProgress>,
    message: Option<MessageInProgress>,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    deflate: bool,
    /// Whether the data frame in progress belongs to a text message.
    utf8: Utf8Validator,
}

impl Decoder {
    pub fn new(role: Role, max_message: usize) -> Self {
        Decoder {
            role,
            max_message,
            frame: None,
            message: None,
            deflate: false,
            utf8: Utf8Validator::default(),
        }
    }

    /// Accepts compressed messages (RSV1) from now on: permessage-deflate was
    /// negotiated, without client context takeover (see `ws::deflate`).
    pub fn enable_deflate(&mut self) {
        self.deflate = true;
    }

    /// Whether no frame and no fragmented message is in progress: a new decoder would
    /// carry on the same (the state of a connection between frames is nothing).
    pub fn is_idle(&self) -> bool {
        self.frame.is_none() && self.message.is_none()
    }

    /// How many bytes `buf` must hold for the next call to make progress: the whole
    /// current frame once its header is known, else the longest possible header.
    pub fn bytes_wanted(&self) -> usize {
        self.frame.map_or(super::frame::MAX_HEADER_LEN, |f| {
            f.header_len + f.payload_len
        })
    }

    /// Decodes the next item from the front of `buf`. `Ok(None)`: need more bytes.
    /// After an error the connection must be failed; the decoder is not reusable.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, ProtocolError> {
        // A non-final fragment completes without an item: go on to the next frame.
        loop {
            match self.decode_frame(buf)? {
                FrameOutcome::Item(item) => return Ok(Some(item)),
                FrameOutcome::NeedMore => return Ok(None),
                FrameOutcome::Fragment => {}
            }
        }
    }

    fn decode_frame(&mut self, buf: &mut BytesMut) -> Result<FrameOutcome, ProtocolError> {
        let mut frame = match self.frame {
            Some(frame) => frame,
            None => match self.parse_header(buf)? {
                Some(frame) => frame,
                None => return Ok(FrameOutcome::NeedMore),
            },
        };
        let available = (buf.len() - frame.header_len).min(frame.payload_len);
        if available < frame.payload_len {
            if self.is_text_data(&frame) && available > frame.checked {
                // Fail fast on invalid UTF-8 before the rest of the frame arrives.
                let part = &mut buf[frame.header_len + frame.checked..frame.header_len + available];
                if let Some(mask) = frame.mask {
                    apply_mask(part, mask, frame.checked);
                }
                self.utf8
                    .feed(part)
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
                frame.checked = available;
            }
            self.frame = Some(frame);
            return Ok(FrameOutcome::NeedMore);
        }
        self.frame = None;
        buf.advance(frame.header_len);
        let mut payload = if frame.payload_len <= COPY_AT_MOST {
            let payload = BytesMut::from(&buf[..frame.payload_len]);
            buf.advance(frame.payload_len);
            payload
        } else {
            buf.split_to(frame.payload_len)
        };
        if let Some(mask) = frame.mask {
            apply_mask(&mut payload[frame.checked..], mask, frame.checked);
        }
        if self.is_text_data(&frame) {
            self.utf8
                .feed(&payload[frame.checked..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        self.complete_frame(frame, payload)
    }

    /// Whether the frame's payload is text to validate as it arrives (compressed text
    /// is validated once inflated).
    fn is_text_data(&self, frame: &FrameInProgress) -> bool {
        match frame.kind {
            FrameKind::Text => !frame.compressed,
            FrameKind::Continuation => self
                .message
                .as_ref()
                .is_some_and(|m| m.text && !m.compressed),
            _ => false,
        }
    }

    fn parse_header(&mut self, buf: &BytesMut) -> Result<Option<FrameInProgress>, ProtocolError> {
        if let Some(&first) = buf.first() {
            // Checked before the whole header is in, so garbage fails at its first byte.
            // RSV1 is permessage-deflate's, when negotiated (RFC 7692 §6).
            let reserved = if self.deflate { 0x30 } else { 0x70 };
            if first & reserved != 0 {
                return Err(ProtocolError::ReservedBits);
            }
        }
        let mut cursor = Cursor::new(&buf[..]);
        let (header, length) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            Err(_) => return Err(ProtocolError::ReservedOpcode(buf[0] & 0x0F)),
        };
        let header_len = cursor.position() as usize;
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        let kind = match header.opcode {
            OpCode::Data(Data::Text) => FrameKind::Text,
            OpCode::Data(Data::Binary) => FrameKind::Binary,
            OpCode::Data(Data::Continue) => FrameKind::Continuation,
            OpCode::Control(Control::Close) => FrameKind::Close,
            OpCode::Control(Control::Ping) => FrameKind::Ping,
            OpCode::Control(Control::Pong) => FrameKind::Pong,
            OpCode::Data(Data::Reserved(code)) | OpCode::Control(Control::Reserved(code)) => {
                return Err(ProtocolError::ReservedOpcode(code))
            }
        };
        let is_control = matches!(kind, FrameKind::Close | FrameKind::Ping | FrameKind::Pong);
        // RFC 7692 §6.1: RSV1 only on the first frame of a data message.
        if header.rsv1 && (is_control || kind == FrameKind::Continuation) {
            return Err(ProtocolError::MisplacedRsv1);
        }
        if is_control {
            if !header.is_final {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if length > 125 {
                return Err(ProtocolError::ControlFrameTooLong(length));
            }
        } else {
            match (kind, &self.message) {
                (FrameKind::Continuation, None) => {
                    return Err(ProtocolError::UnexpectedContinuation)
                }
                (FrameKind::Text | FrameKind::Binary, Some(_)) => {
                    return Err(ProtocolError::ExpectedContinuation)
                }
                _ => {}
            }
            let so_far = self.message.as_ref().map_or(0, |m| m.data.len()) as u64;
            let total = so_far.saturating_add(length);
            if total > self.max_message as u64 {
                return Err(ProtocolError::MessageTooBig {
                    len: total,
                    max: self.max_message,
                });
            }
        }
        let frame = FrameInProgress {
            header_len,
            payload_len: length as usize,
            fin: header.is_final,
            kind,
            mask: header.mask,
            compressed: header.rsv1,
            checked: 0,
        };
        Ok(Some(frame))
    }

    fn complete_frame(
        &mut self,
        frame: FrameInProgress,
        payload: BytesMut,
    ) -> Result<FrameOutcome, ProtocolError> {
        let item = match frame.kind {
            FrameKind::Ping => Incoming::Ping(payload.freeze()),
            FrameKind::Pong => Incoming::Pong(payload.freeze()),
            FrameKind::Close => Incoming::Close(parse_close_payload(payload.freeze())?),
            FrameKind::Text | FrameKind::Binary if frame.fin => self.finish_message(
                frame.kind == FrameKind::Text,
                frame.compressed,
                payload.freeze(),
            )?,
            FrameKind::Text | FrameKind::Binary => {
                self.message = Some(MessageInProgress {
                    text: frame.kind == FrameKind::Text,
                    compressed: frame.compressed,
                    data: payload,
                });
                return Ok(FrameOutcome::Fragment);
            }
            FrameKind::Continuation => {
                let message = self.message.as_mut().expect("checked in parse_header");
                message.data.extend_from_slice(&payload);
                if !frame.fin {
                    return Ok(FrameOutcome::Fragment);
                }
                let message = self.message.take().expect("checked above");
                self.finish_message(message.text, message.compressed, message.data.freeze())?
            }
        };
        Ok(FrameOutcome::Item(item))
    }

    fn finish_message(
        &mut self,
        text: bool,
        compressed: bool,
        data: Bytes,
    ) -> Result<Incoming, ProtocolError> {
        if compressed {
            let data = deflate::inflate_message(&data, self.max_message).map_err(|e| match e {
                InflateError::TooBig(max) => ProtocolError::MessageTooBig {
                    len: max as u64 + 1,
                    max,
                },
                InflateError::Corrupt => ProtocolError::CorruptCompressed,
            })?;
            if !text {
                return Ok(Incoming::Binary(data));
            }
            std::str::from_utf8(&data).map_err(|_| ProtocolError::InvalidUtf8)?;
            return Ok(Incoming::Text(data));
        }
        if text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Incoming::Text(data))
        } else {
            Ok(Incoming::Binary(data))
        }
    }
}

/// Parses and validates a close payload (RFC 6455 §5.5.1, §7.4).
fn parse_close_payload(payload: Bytes) -> Result<Option<(u16, Bytes)>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::CloseFrameTooShort),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !CloseCode::from(code).is_allowed() || code < 1000 {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason = payload.slice(2..);
            std::str::from_utf8(&reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

#[cfg(test)]
mod tests;
