//! The room protocol of PROTOCOL.md over real sockets, with the rooms app on one core
//! and on two of a stand-alone server (clients confirmed on each core by their
//! `client_id`), and on a cluster of three one-core nodes sharing one Redis (clients
//! spread over the nodes). Every message is compared whole as a `serde_json::Value`,
//! `timestamp` checked to be a recent Unix time in whole seconds. "Nothing else
//! arrives" is proved with markers: a private message from a probe client on every
//! core or node must be the very next thing a client receives ([`Rooms::assert_quiet`]).
//!
//! Layout:
//! - `setup`: the server or cluster under test ([`Rooms`]), its places and probes.
//! - `protocol`: every row of the two message tables, the `id` extension, the default
//!   and verbatim `message`; most of it on a single cluster node too.
//! - `errors`: every error string, and the connection staying open after each.
//! - `fanout`: many clients in many rooms, exactly once in sender order; counts exact
//!   under concurrent joins and leaves from every core or node.
//! - `disconnect`: clean close, FIN, reset and idle timeout: `member_left` in join
//!   order, and the id stops resolving.
//! - `robustness`: Unicode, 64 KiB, binary and fragmented frames, garbage bytes.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ringcast::ws::{Incoming, Opcode};
use serde_json::{json, Value};

use crate::client::{RecvError, TestClient};
use crate::WAIT;

/// Runs `fn $name(setup: Setup)` as three tests: `$name::one_core` and
/// `$name::two_cores` (a stand-alone server) and `$name::three_nodes` (a cluster of
/// three one-core nodes). `#[all(...)]` adds an attribute to all three,
/// `#[two_cores(...)]` or `#[three_nodes(...)]` to that one only (e.g.
/// `ignore = "cluster bug: ..."` on a test that pins a bug not yet fixed).
macro_rules! on_cores_and_nodes {
    ($(
        $(#[all($all:meta)])?
        $(#[two_cores($two:meta)])?
        $(#[three_nodes($three:meta)])?
        $name:ident
    ),* $(,)?) => {$(
        mod $name {
            use crate::rooms::Setup;

            #[test]
            $(#[$all])?
            fn one_core() {
                super::$name(Setup::Cores(1));
            }

            #[test]
            $(#[$all])?
            $(#[$two])?
            fn two_cores() {
                super::$name(Setup::Cores(2));
            }

            #[test]
            $(#[$all])?
            $(#[$three])?
            fn three_nodes() {
                super::$name(Setup::Nodes(3));
            }
        }
    )*};
}

/// Runs `fn $name(setup: Setup)` as `$name::one_core` and `$name::two_cores` only, for
/// tests of one stand-alone server's own workings. `#[both(...)]` adds an attribute
/// to both, `#[two_cores(...)]` to the second only.
macro_rules! on_one_and_two_cores {
    ($( $(#[both($both:meta)])? $(#[two_cores($two:meta)])? $name:ident ),* $(,)?) => {$(
        mod $name {
            use crate::rooms::Setup;

            #[test]
            $(#[$both])?
            fn one_core() {
                super::$name(Setup::Cores(1));
            }

            #[test]
            $(#[$both])?
            $(#[$two])?
            fn two_cores() {
                super::$name(Setup::Cores(2));
            }
        }
    )*};
}

/// Runs each `fn $name(setup: Setup)` on a cluster of one node, as `one_node::$name`:
/// with nobody to share rooms with, every count and room check still goes through
/// Redis. Attributes before a name go to its test.
macro_rules! on_one_node {
    ($( $(#[$attr:meta])* $name:ident ),* $(,)?) => {
        mod one_node {
            use crate::rooms::Setup;
            $(
                #[test]
                $(#[$attr])*
                fn $name() {
                    super::$name(Setup::Nodes(1));
                }
            )*
        }
    };
}

mod disconnect;
mod errors;
mod fanout;
mod protocol;
mod robustness;
mod setup;

pub use setup::{IdParts, Rooms, Setup};

/// In an expected message, the `timestamp` value that stands for "a recent Unix time in
/// whole seconds" (checked, then replaced by this before comparing).
pub const TS: &str = "<recent unix seconds>";

/// A room-protocol client: a [`TestClient`] that speaks JSON, knows its `client_id`,
/// and answers server pings while it waits.
pub struct RoomClient {
    ws: TestClient,
    pub id: String,
}

impl RoomClient {
    pub fn connect(addr: SocketAddr) -> RoomClient {
        RoomClient::welcome(TestClient::connect(addr))
    }

    /// Reads the `welcome` of a freshly upgraded connection and checks it whole.
    pub fn welcome(ws: TestClient) -> RoomClient {
        let mut client = RoomClient {
            ws,
            id: "(not welcomed yet)".into(),
        };
        let welcome = client.recv();
        let id = welcome["client_id"]
            .as_str()
            .unwrap_or_else(|| panic!("a welcome with a client_id, got {welcome}"))
            .to_string();
        IdParts::parse(&id); // panics unless it is a client_id of either form
        client.id = id;
        client.check(
            welcome,
            &json!({"type": "welcome", "client_id": client.id, "timestamp": TS}),
        );
        client
    }

    pub fn send(&mut self, request: &Value) {
        self.ws.send_text(&request.to_string());
    }

    /// Sends `requests` in one write, so the server reads them all at once.
    pub fn send_burst(&mut self, requests: &[Value]) {
        let texts: Vec<String> = requests.iter().map(Value::to_string).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.ws.send_texts_at_once(&texts);
    }

    pub fn send_text(&mut self, json: &str) {
        self.ws.send_text(json);
    }

    pub fn send_binary(&mut self, payload: &[u8]) {
        self.ws.send(Opcode::Binary, payload);
    }

    pub fn ws(&mut self) -> &mut TestClient {
        &mut self.ws
    }

    pub fn into_ws(self) -> TestClient {
        self.ws
    }

    /// The next server message as its raw bytes (server messages are text frames),
    /// answering pings on the way; `None` at the deadline.
    pub fn recv_raw_until(&mut self, deadline: Instant) -> Option<Bytes> {
        loop {
            match self.ws.recv_until(deadline) {
                Ok(Incoming::Text(payload)) => return Some(payload),
                Ok(Incoming::Ping(payload)) => self.ws.send(Opcode::Pong, &payload),
                Ok(Incoming::Pong(_)) => {}
                Err(RecvError::Timeout) => return None,
                other => panic!("{}: expected a text message, got {other:?}", self.id),
            }
        }
    }

    pub fn recv_until(&mut self, deadline: Instant) -> Option<Value> {
        let raw = self.recv_raw_until(deadline)?;
        Some(serde_json::from_slice(&raw).unwrap_or_else(|e| {
            panic!(
                "{}: the server sent invalid JSON ({e}): {:?}",
                self.id,
                String::from_utf8_lossy(&raw)
            )
        }))
    }

    pub fn recv(&mut self) -> Value {
        let id = self.id.clone();
        self.recv_until(Instant::now() + WAIT)
            .unwrap_or_else(|| panic!("{id}: no message within {WAIT:?}"))
    }

    /// The next message must be `expected` (see [`TS`]).
    pub fn expect(&mut self, expected: &Value) {
        let actual = self.recv();
        self.check(actual, expected);
    }

    /// The next `expected.len()` messages must be `expected`, in any order.
    pub fn expect_any_order(&mut self, mut expected: Vec<Value>) {
        while !expected.is_empty() {
            let actual = self.recv();
            let found = expected
                .iter()
                .position(|e| normalize(actual.clone(), e) == *e);
            match found {
                Some(index) => {
                    expected.swap_remove(index);
                }
                None => panic!(
                    "{}: got {actual}, expected one of {}",
                    self.id,
                    Value::from(expected)
                ),
            }
        }
    }

    /// Sends `request` and expects `reply` as the next message.
    pub fn request(&mut self, request: &Value, reply: &Value) {
        self.send(request);
        self.expect(reply);
    }

    /// Joins `room` and expects `room_joined` with `members`.
    pub fn join(&mut self, room: &str, members: usize) {
        self.request(&join_room(room), &room_joined(room, members));
    }

    /// A private message to itself, answered in order: everything this client sent
    /// before has been handled by its core.
    pub fn sync(&mut self) {
        let message = json!({ "sync": self.id });
        self.request(
            &send_private(&self.id.clone(), message.clone()),
            &private_from(&self.id.clone(), message),
        );
    }

    /// The closing handshake, then the end of the connection.
    pub fn close(self) {
        let mut ws = self.ws;
        ws.send_close(1000, "bye");
        assert_eq!(ws.expect_close(), 1000);
        ws.expect_eof();
    }

    fn check(&self, actual: Value, expected: &Value) {
        assert_eq!(
            normalize(actual, expected),
            *expected,
            "{}: not the message expected",
            self.id
        );
    }
}

/// Replaces a recent whole-seconds `timestamp` by [`TS`] when `expected` has [`TS`];
/// any other timestamp stays and fails the comparison.
fn normalize(actual: Value, expected: &Value) -> Value {
    let mut actual = crate::without_unasked_position(actual, expected);
    if expected.get("timestamp") != Some(&json!(TS)) {
        return actual;
    }
    if let Some(ts) = actual.get_mut("timestamp") {
        let now = unix_now();
        if ts.as_u64().is_some_and(|t| t <= now && t + 60 >= now) {
            *ts = json!(TS);
        }
    }
    actual
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

pub fn join_room(room: &str) -> Value {
    json!({"type": "join_room", "room": room})
}

pub fn leave_room(room: &str) -> Value {
    json!({"type": "leave_room", "room": room})
}

pub fn send_to_room(room: &str, message: Value) -> Value {
    json!({"type": "room_message", "room": room, "message": message})
}

pub fn send_private(to: &str, message: Value) -> Value {
    json!({"type": "private_message", "to": to, "message": message})
}

pub fn room_joined(room: &str, members: usize) -> Value {
    json!({"type": "room_joined", "room": room, "members": members})
}

pub fn member_joined(room: &str, id: &str, total: usize) -> Value {
    json!({"type": "member_joined", "room": room, "client_id": id, "total_members": total})
}

pub fn member_left(room: &str, id: &str, total: usize) -> Value {
    json!({"type": "member_left", "room": room, "client_id": id, "total_members": total})
}

pub fn broadcast_from(from: &str, message: Value) -> Value {
    json!({"type": "broadcast", "from": from, "message": message, "timestamp": TS})
}

pub fn room_message_from(room: &str, from: &str, message: Value) -> Value {
    json!({"type": "room_message", "room": room, "from": from, "message": message, "timestamp": TS})
}

pub fn private_from(from: &str, message: Value) -> Value {
    json!({"type": "private_message", "from": from, "message": message, "timestamp": TS})
}

pub fn error(text: &str) -> Value {
    json!({"type": "error", "message": text, "timestamp": TS})
}

/// `message` with the `id` extension added.
pub fn with_id(mut message: Value, id: Value) -> Value {
    message["id"] = id;
    message
}

/// Each client joins `room` (empty before) in turn; those already in see each join.
pub fn join_in_turn(room: &str, clients: &mut [&mut RoomClient]) {
    for joined in 0..clients.len() {
        clients[joined].join(room, joined + 1);
        let id = clients[joined].id.clone();
        for earlier in clients[..joined].iter_mut() {
            earlier.expect(&member_joined(room, &id, joined + 1));
        }
    }
}

/// Reads from each client in turn, a few milliseconds at a time (answering pings, so
/// that all stay alive under a short idle timeout), until each has `count` messages.
pub fn pump(clients: &mut [RoomClient], count: usize) -> Vec<Vec<Value>> {
    let deadline = Instant::now() + WAIT;
    let mut got = vec![Vec::new(); clients.len()];
    while got.iter().any(|messages| messages.len() < count) {
        assert!(Instant::now() < deadline, "timed out, got only {got:?}");
        for (client, messages) in clients.iter_mut().zip(&mut got) {
            if messages.len() < count {
                let slice = Instant::now() + Duration::from_millis(5);
                messages.extend(client.recv_until(slice));
            }
        }
    }
    got
}

/// [`Rooms::assert_quiet`] without probes: every client sends a marker to every client
/// (itself included), and each must receive exactly those next. When the clients span
/// every core, it is a fence as well.
pub fn assert_quiet_among(clients: &mut [RoomClient]) {
    let ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();
    for client in clients.iter_mut() {
        for to in &ids {
            client.send(&send_private(to, json!({ "among": to })));
        }
    }
    for client in clients.iter_mut() {
        let id = client.id.clone();
        let expected = ids
            .iter()
            .map(|from| private_from(from, json!({ "among": id })))
            .collect();
        client.expect_any_order(expected);
    }
}
