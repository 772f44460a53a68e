//! ringcast: a thread-per-core io_uring WebSocket server for real-time rooms.
//!
//! # Layout
//! - [`ws`]: RFC 6455, sans-IO: handshake, frame decoder and encoder, UTF-8, masking;
//!   permessage-deflate (RFC 7692) negotiation, compression and bounded inflation.
//! - [`conn`]: a core's connections as plain state: each one's phase, queue and
//!   limits, and the table that holds them ([`conn::CoreCtx`], what apps act through).
//! - [`hub`]: cross-core inboxes (bounded lock-free queues) and the ordered outbox.
//! - [`runtime`]: the I/O: pinned core threads, listeners, admission (connection
//!   limits), each connection's handshake task, the core's poller, reader and flush
//!   task, heartbeat sweep, graceful shutdown.
//! - [`stats`]: per-core counters and `GET /metrics`.
//! - [`auth`]: JWT verification of upgrades (`--jwt-secret`, `--jwt-public-key`).
//! - [`tls`]: wss://: certificate loading and SIGHUP reload, each connection's rustls
//!   session (unbuffered: decrypt in the read buffer, encrypt a flush batch), the
//!   client's roots.
//!
//! Imports go one way: `auth`, `ws`, `hub`, `config`, `stats` at the bottom; `conn` on
//! them; `app` on `conn`; `rooms` on `app` and `proto`; `runtime` on all of these.
//! - [`app`]: the seam apps plug into, and the echo and broadcast apps.
//! - [`proto`]: the room protocol's messages in both directions and its error strings,
//!   shared by the rooms app, the client and the load tool.
//! - [`rooms`]: the room app: per-core room logic as a pure state machine (home,
//!   replica and client roles) and its driver.
//! - [`cluster`]: several nodes as one server over Redis (the rooms app's cluster
//!   link: membership scripts, pub/sub, node loss).
//! - [`config`]: every knob, its default, the TOML file.
//! - [`load`]: the load generator (`ringcast load`).
//! - [`client`]: the blocking WebSocket connection, the room protocol's client on it
//!   (reconnecting) and `ringcast client`.
//!
//! # Life of a room message
//! 1. The kernel hands a connection to one core's SO_REUSEPORT listener; the core
//!    admits it (connection limits), puts it in its slab as a [`ConnId`] and runs its
//!    handshake task; once upgraded, the socket is watched by the core's poller.
//! 2. The core's reader reads each ready socket into the core's read buffer; the
//!    [`ws::Decoder`] unmasks and validates a whole message in place, without copying.
//! 3. [`proto::parse_request`] reads `{"type":"room_message",...}` in one pass,
//!    borrowing `room` and the raw `message`.
//! 4. The sender's core (the `rooms` client role) checks the sender is in the room,
//!    encodes the `room_message` ([`proto::Encoder`]) but for its offset, and posts it
//!    to the room's home core (itself through a local work list, another through its
//!    bounded [`hub`] inbox). The home gives it the room's next offset, finishes the
//!    frame (end to end with the room's previous messages), keeps it in the room's
//!    history and posts one envelope, one shared `Bytes`, to each core with members.
//!    (On a cluster node Redis numbers and keeps it, and each node's link reader does
//!    the home's part: [`cluster`].)
//! 5. Each core's replica role turns the envelope into one effect carrying the room's
//!    local members; the driver queues a clone of the frame on each (all but the
//!    sender), under each connection's outbound limit.
//! 6. The core's flush task, once every runnable task has queued its frames, sends each
//!    connection's queue in one `writev`, merging frames that sit end to end in memory
//!    into one iovec (paced under fan-out load so writes carry more frames).
//!
//! A broadcast (the broadcast app) is the same without rooms: step 4 posts to every
//! core and step 5 queues on every connection.

pub mod app;
pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod hub;
mod ids;
pub mod load;
pub mod logging;
pub mod page;
pub mod proto;
pub mod rooms;
pub mod runtime;
pub mod stats;
pub mod tls;
pub mod ws;

pub use ids::{ConnId, CoreId};
