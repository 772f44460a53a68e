//! The room protocol's client, as a library and as `ringcast client`: blocking
//! `std::net` sockets and threads, so any Rust program can use it (no async runtime).
//! It speaks `ws://` only (TLS has not landed); it runs no server.
//!
//! - [`WsConnection`]: one blocking WebSocket connection (connect, upgrade, frames
//!   both ways under deadlines, and a raw mode to play a broken peer), on the same
//!   sans-IO `ws` helpers as the load tool's connection.
//! - [`Connection`]: one room-protocol connection on top of it: `welcome`, typed send
//!   and receive of every PROTOCOL.md message, pings answered, keepalive, clean close.
//! - [`Client`]: a connection in a background thread that reconnects on the
//!   [`Backoff`] schedule (exponential, full jitter), to the next of its URLs when it
//!   has several ([`Client::start_any`]: the nodes of a cluster), rejoins its rooms
//!   (recovering the messages it missed where the server keeps history: each room's
//!   [`RoomPosition`]), re-applies its metadata, and reports [`Event`]s on a channel;
//!   send through a [`ClientHandle`].
//! - [`cli`]: the `ringcast client` command.
//!
//! Files: `url.rs` (ws:// URLs, and the turn order of several), `error.rs`,
//! `config.rs` (every knob and its default), `backoff.rs` (the pure schedule),
//! `websocket.rs` ([`WsConnection`] and its halves, masking with keys from the OS
//! CSPRNG), `conn.rs`, `history.rs` (each room's read position, pure), `event.rs`,
//! `reconnect.rs`, `cli/`. The typed messages are `crate::proto`'s `client.rs`.

mod backoff;
pub mod cli;
mod config;
mod conn;
mod error;
mod event;
mod history;
mod reconnect;
mod tls;
mod url;
mod websocket;

pub use crate::proto::{ClientMessage, Received, RequestId, RoomPosition, ServerMessage};
pub use backoff::Backoff;
pub use config::{ClientConfig, ConnectOptions, ReconnectPolicy};
pub use conn::{ConnReader, ConnSender, Connection};
pub use error::{ClientError, Phase};
pub use event::{Event, StopReason};
pub use reconnect::{Client, ClientHandle, EVENT_CAPACITY};
pub use url::WsUrl;
pub use websocket::{RawFrame, RawMask, UpgradeRequest, WsConnection, WsReader, WsWriter};
