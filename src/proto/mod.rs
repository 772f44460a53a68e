//! The room protocol of PROTOCOL.md, both directions, in one place: what the server
//! reads and writes, what the client library and CLI send and receive, and the error
//! strings. The rooms app, the client and the load tool all use these; a protocol
//! change is made here once. No I/O and no decisions (the `rooms` state machine
//! decides; the client and the load tool act).
//!
//! - `request.rs`: client -> server as the server parses it ([`parse_request`]),
//!   borrowing from the message bytes.
//! - `encode.rs`: server -> client as the server encodes it ([`Encoder`]), straight
//!   into final frame bytes.
//! - `client.rs`: both directions as the client library sees them: typed requests to
//!   send ([`ClientMessage`], with the `id` extension's [`RequestId`]) and typed server
//!   messages to receive ([`ServerMessage`]).
//! - `error.rs`: [`RequestError`], whose `Display` is each error's exact text.
//! - [`scan`]: the load tool's allocation-free scanner of server messages and its
//!   request templates, beside the typed messages it specialises (and the bench that
//!   justifies it).

mod client;
mod encode;
mod error;
mod request;
pub mod scan;

pub use client::{ClientMessage, Received, RequestId, RoomPosition, ServerMessage};
pub use encode::{error_frame, frame_with_offset, Encoder};
pub use error::RequestError;
pub use request::{parse_request, Recover, Request};

#[cfg(test)]
mod tests;
