//! The close status codes ringcast sends and checks (RFC 6455 §7.4.1), by name.

/// The purpose of the connection is fulfilled (the client asked to close).
pub const NORMAL: u16 = 1000;
/// The server is going away: idle timeout, or shutting down.
pub const GOING_AWAY: u16 = 1001;
/// A protocol violation (unmasked frame, reserved bits or opcode, bad fragmentation).
pub const PROTOCOL_ERROR: u16 = 1002;
/// Data inconsistent with the message type: invalid UTF-8 in a text message.
pub const INVALID_PAYLOAD: u16 = 1007;
/// A policy violation: the client let its outbound queue pass `max_outbound_bytes`.
pub const POLICY_VIOLATION: u16 = 1008;
/// A message over `max_message_bytes`.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The server is restarting: a cluster node that lost its state in Redis closes its
/// clients so they reconnect and rejoin.
pub const SERVICE_RESTART: u16 = 1012;
