//! ringcast: a thread-per-core io_uring WebSocket server for real-time rooms.
//!
//! # Layout
//! - [`ws`]: RFC 6455, sans-IO: handshake, frame decoder and encoder, UTF-8, masking.
//! - [`conn`]: one connection's state and its reader and writer tasks.
//! - [`hub`]: cross-core inboxes (bounded lock-free queues) and the ordered outbox.
//! - [`runtime`]: pinned core threads, listeners, admission (connection limits),
//!   heartbeat sweep, graceful shutdown.
//! - [`app`]: the seam apps plug into, and the echo and broadcast apps.
//! - [`rooms`]: the room protocol (PROTOCOL.md): wire format and per-core room logic.
//! - [`config`]: every knob, its default, the TOML file.
//! - [`load`]: the load generator (`ringcast load`).
//! - [`client`]: the room protocol's client (blocking, reconnecting) and `ringcast client`.
//!
//! # Life of a message (broadcast app)
//! 1. The kernel hands a connection to one core's SO_REUSEPORT listener; the core puts
//!    it in its slab as a [`ConnId`] and runs its reader task.
//! 2. The reader appends socket bytes to a small read buffer; the [`ws::Decoder`]
//!    unmasks and validates a whole message in place, without copying.
//! 3. The app encodes the reply frame once into a `Bytes`, posts one envelope to every
//!    other core's inbox and queues a clone on each local connection.
//! 4. Each connection's writer task sends everything queued since its last write in
//!    one `writev`.

pub mod app;
pub mod client;
pub mod config;
pub mod conn;
pub mod hub;
mod ids;
pub mod load;
pub mod rooms;
pub mod runtime;
pub mod ws;

pub use ids::{ConnId, CoreId};
