//! Cluster nodes losing each other and losing Redis, over real sockets and a real
//! `redis-server` ([`RedisServer`](crate::redis::RedisServer)): what PROTOCOL.md
//! promises a client (counts exact across nodes, `Recipient not found` for a client
//! that is gone) must hold when a node dies or freezes, when Redis goes away (and comes
//! back empty), and when only a node's connection to Redis drops. A node that must die
//! or freeze is a `ringcast serve --redis` process ([`NodeProcess`]); the others run
//! in-process ([`start_node`](crate::start_node)). The only waits on time itself are
//! where time is the point (a dead node's heartbeat key expiring, an unanswered
//! private message's deadline, a reconnect's backoff), each under a bound.
//!
//! Layout:
//! - `node_loss`: a SIGKILLed node's members leave every room, one exact `member_left`
//!   each (also past one reaper batch); joins afterwards count exactly; a successor has
//!   a new node id; a node frozen past its TTL restarts when it resumes; a node
//!   restarted under a fixed id (ignored: a bug, see the test).
//! - `private`: to a client that left, to a killed node's client, to a frozen node's
//!   client: `Recipient not found`.
//! - `redis_loss`: unreachable at start (the node refuses to start); lost later (local
//!   clients still served, `/healthz` 503, `ringcast_cluster_up 0`); back empty (1012,
//!   new node ids, rejoins count exactly, the client library rejoining by itself).
//! - `link_outage`: only the node's connection killed: the same node id and no 1012,
//!   changes made meanwhile (or lost with the connection) counted once; down past the
//!   TTL: a restart; more changes than it keeps (ignored: a bug, see the test).
//! - `history`: offsets and recovery across nodes: recovering through another node,
//!   stale epoch and overflow, a recovering join racing a sender on a third node, one
//!   contiguous order from senders on two nodes.
//! - `process`, `admin`: the node process and the test's own Redis connection.

mod admin;
mod history;
mod link_outage;
mod node_loss;
mod private;
mod process;
mod redis_loss;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringcast::rooms::parse_cluster_client_id;
use ringcast::ws::{Incoming, Opcode};
use serde_json::{json, Value};

use crate::client::{http_exchange, RecvError, TestClient};
use crate::rooms::{join_room, member_joined, private_from, room_joined, send_private, TS};
use crate::WAIT;

use process::NodeProcess;

/// A dead node's members must be gone within this. The bound is 30 s at the
/// default 10 s heartbeat TTL; these tests' nodes use 1 s (gone in about 1.5 s).
const REAP_WITHIN: Duration = Duration::from_secs(10);
/// The config of the nodes that die in these tests: a 1 s heartbeat TTL.
const SHORT_TTL: &str = "[cluster]\nnode_ttl_ms = 1000\n";
/// A link reconnects within this once Redis is back (its backoff tops out at 5 s).
const RECONNECT_WITHIN: Duration = Duration::from_secs(15);

/// A room client of a cluster node, whose id names the node
/// (`client_<node>_<core>_<slot>_<generation>`). Answers server pings while it waits.
/// (`rooms::RoomClient` reads a core from a stand-alone server's id, so it cannot take
/// these ids.)
struct NodeClient {
    ws: TestClient,
    id: String,
    node: String,
}

impl NodeClient {
    fn connect(addr: SocketAddr) -> NodeClient {
        let mut client = NodeClient {
            ws: TestClient::connect(addr),
            id: "(not welcomed yet)".into(),
            node: String::new(),
        };
        let welcome = client.recv();
        let id = welcome["client_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        client.node = node_of(&id).to_string();
        client.check(
            welcome,
            &json!({"type": "welcome", "client_id": id, "timestamp": TS}),
        );
        client.id = id;
        client
    }

    fn send(&mut self, request: &Value) {
        self.ws.send_text(&request.to_string());
    }

    fn recv_until(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            match self.ws.recv_until(deadline) {
                Ok(Incoming::Text(payload)) => {
                    return Some(serde_json::from_slice(&payload).expect("JSON from the server"))
                }
                Ok(Incoming::Ping(payload)) => self.ws.send(Opcode::Pong, &payload),
                Ok(Incoming::Pong(_)) => {}
                Err(RecvError::Timeout) => return None,
                other => panic!("{}: expected a message, got {other:?}", self.id),
            }
        }
    }

    fn recv(&mut self) -> Value {
        self.recv_until(Instant::now() + WAIT)
            .unwrap_or_else(|| panic!("{}: no message within {WAIT:?}", self.id))
    }

    /// The next `n` messages, which must all come before `deadline`.
    fn recv_n(&mut self, n: usize, deadline: Instant) -> Vec<Value> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.recv_until(deadline) {
                Some(message) => got.push(message),
                None => panic!("{}: got only {got:?} by the deadline", self.id),
            }
        }
        got
    }

    fn expect(&mut self, expected: &Value) {
        let actual = self.recv();
        self.check(actual, expected);
    }

    fn request(&mut self, request: &Value, reply: &Value) {
        self.send(request);
        self.expect(reply);
    }

    fn join(&mut self, room: &str, members: usize) {
        self.request(&join_room(room), &room_joined(room, members));
    }

    /// Joins `rooms` in one write; each has `members` members after its join.
    fn join_all(&mut self, rooms: &[String], members: usize) {
        let joins: Vec<String> = rooms
            .iter()
            .map(|room| join_room(room).to_string())
            .collect();
        self.ws
            .send_texts_at_once(&joins.iter().map(String::as_str).collect::<Vec<_>>());
        for room in rooms {
            self.expect(&room_joined(room, members));
        }
    }

    /// A private message to itself, answered in order by its own core.
    fn sync(&mut self) {
        let message = json!({ "sync": self.id });
        let id = self.id.clone();
        self.request(
            &send_private(&id, message.clone()),
            &private_from(&id, message),
        );
    }

    /// The next item must be a close frame, before `deadline`: its code.
    fn expect_close(&mut self, deadline: Instant) -> u16 {
        loop {
            match self.ws.recv_until(deadline) {
                Ok(Incoming::Close(frame)) => return frame.map_or(1005, |(code, _)| code),
                Ok(Incoming::Ping(payload)) => self.ws.send(Opcode::Pong, &payload),
                other => panic!("{}: expected a close frame, got {other:?}", self.id),
            }
        }
    }

    fn close(mut self) {
        self.ws.send_close(1000, "bye");
        assert_eq!(self.expect_close(Instant::now() + WAIT), 1000);
        self.ws.expect_eof();
    }

    fn check(&self, actual: Value, expected: &Value) {
        assert_eq!(
            &normalize(actual, expected),
            expected,
            "{}: not the message expected",
            self.id
        );
    }
}

/// Replaces a recent whole-seconds `timestamp` by [`TS`] where `expected` has [`TS`].
fn normalize(actual: Value, expected: &Value) -> Value {
    let mut actual = crate::without_unasked_position(actual, expected);
    if expected.get("timestamp") == Some(&json!(TS)) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        if let Some(ts) = actual.get_mut("timestamp") {
            if ts.as_u64().is_some_and(|t| t <= now && t + 60 >= now) {
                *ts = json!(TS);
            }
        }
    }
    actual
}

/// The node a cluster client id names.
fn node_of(id: &str) -> &str {
    parse_cluster_client_id(id)
        .unwrap_or_else(|| panic!("{id:?} is not client_<node>_<core>_<slot>_<generation>"))
        .0
}

/// Each client joins `room` (empty before) in turn; those already in see each join.
fn join_in_turn(room: &str, clients: &mut [&mut NodeClient]) {
    for joined in 0..clients.len() {
        clients[joined].join(room, joined + 1);
        let id = clients[joined].id.clone();
        for earlier in clients[..joined].iter_mut() {
            earlier.expect(&member_joined(room, &id, joined + 1));
        }
    }
}

/// `GET /healthz`: its status.
fn healthz(addr: SocketAddr) -> u16 {
    http_exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status
}

/// A node-wide figure in `GET /metrics`.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let response = http_exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let body = String::from_utf8(response.body).expect("UTF-8 metrics");
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// The node reports its link `up` (200, `ringcast_cluster_up 1`) or down (503, 0).
fn assert_link(addr: SocketAddr, up: bool) {
    assert_eq!(healthz(addr), if up { 200 } else { 503 });
    assert_eq!(metric(addr, "ringcast_cluster_up"), u64::from(up));
}

/// Waits (up to `within`) for the node to report its link `up` or down, both ways.
fn wait_link(addr: SocketAddr, up: bool, within: Duration) {
    let what = format!(
        "the link of {addr} to be {}",
        if up { "up" } else { "down" }
    );
    poll_until(&what, within, || {
        metric(addr, "ringcast_cluster_up") == u64::from(up)
    });
    assert_link(addr, up);
}

/// Polls `done` every 10 ms until it holds; panics with `what` after `within`.
fn poll_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
