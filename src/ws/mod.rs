//! The WebSocket protocol (RFC 6455), sans-IO: the upgrade handshake, frame decoding
//! and encoding, masking and UTF-8 validation, for both the server and the client role.
//! Nothing here touches a socket or a clock; `conn` and `client` drive it.

pub mod close_code;
pub mod decoder;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod utf8;

pub use decoder::{Decoder, Incoming, ProtocolError, Role};
pub use frame::{
    encode_masked, encode_unmasked, put_masked, FrameBuffer, HeaderBytes, Opcode, OutFrame,
    Payload, SeededMasks,
};
