//! The room protocol of PROTOCOL.md over real sockets, with the rooms app on one core
//! and on two of a stand-alone server (clients confirmed on each core by their
//! `client_id`), and on a cluster of three one-core nodes sharing one Redis (clients
//! spread over the nodes). Every message is compared whole as a `serde_json::Value`,
//! `timestamp` checked to be a recent Unix time in whole seconds. "Nothing else
//! arrives" is proved with markers: a private message from a probe client on every
//! core or node must be the very next thing a client receives ([`Rooms::assert_quiet`]).
//!
//! Layout:
//! - `protocol`: every row of the two message tables, the `id` extension, the default
//!   and verbatim `message`; most of it on a single cluster node too.
//! - `errors`: every error string, and the connection staying open after each.
//! - `fanout`: many clients in many rooms, exactly once in sender order; counts exact
//!   under concurrent joins and leaves from every core or node.
//! - `disconnect`: clean close, FIN, reset and idle timeout: `member_left` in join
//!   order, and the id stops resolving.
//! - `robustness`: Unicode, 64 KiB, binary and fragmented frames, garbage bytes.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ringcast::config::{Config, CpuSelection};
use ringcast::rooms::{home_of, RoomsApp};
use ringcast::runtime::Stats;
use ringcast::ws::{Incoming, Opcode};
use serde_json::{json, Value};

use crate::client::{RecvError, TestClient};
use crate::redis::RedisServer;
use crate::{start_node, start_server, wait_until, Server, WAIT};

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
/// Redis.
macro_rules! on_one_node {
    ($($name:ident),* $(,)?) => {
        mod one_node {
            use crate::rooms::Setup;
            $(
                #[test]
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

/// In an expected message, the `timestamp` value that stands for "a recent Unix time in
/// whole seconds" (checked, then replaced by this before comparing).
pub const TS: &str = "<recent unix seconds>";

/// Where a test's clients are served: the cores of one stand-alone server, or the
/// nodes of a cluster (one core each, one Redis). Tests put clients on "places": core
/// `i` of the server, or node `i` of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    Cores(usize),
    Nodes(usize),
}

impl Setup {
    /// How many places there are to put clients on.
    pub fn places(self) -> usize {
        match self {
            Setup::Cores(n) | Setup::Nodes(n) => n,
        }
    }

    /// How many cores each server (or node) has.
    pub fn cores_per_server(self) -> usize {
        match self {
            Setup::Cores(n) => n,
            Setup::Nodes(_) => 1,
        }
    }
}

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
        IdParts::parse(&id);
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
fn normalize(mut actual: Value, expected: &Value) -> Value {
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

/// A `client_id` taken apart: `client_<core>_<slot>_<generation>` from a stand-alone
/// server, `client_<node>_<core>_<slot>_<generation>` from a cluster node (`node`: 1
/// to 32 of `[A-Za-z0-9-]`). Its `Display` spells it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdParts {
    pub node: Option<String>,
    pub core: u64,
    pub slot: u64,
    pub generation: u64,
}

impl IdParts {
    /// Panics unless `id` is one of the two forms, spelled as the server spells it.
    pub fn parse(id: &str) -> IdParts {
        let parts: Vec<&str> = id.split('_').collect();
        let number = |part: &str| -> u64 {
            part.parse()
                .unwrap_or_else(|_| panic!("{id:?}: {part:?} is not a number"))
        };
        let parsed = match parts[..] {
            ["client", core, slot, generation] => IdParts {
                node: None,
                core: number(core),
                slot: number(slot),
                generation: number(generation),
            },
            ["client", node, core, slot, generation]
                if (1..=32).contains(&node.len())
                    && node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                IdParts {
                    node: Some(node.to_string()),
                    core: number(core),
                    slot: number(slot),
                    generation: number(generation),
                }
            }
            _ => panic!(
                "{id:?} is neither client_<core>_<slot>_<generation> \
                 nor client_<node>_<core>_<slot>_<generation>"
            ),
        };
        assert_eq!(
            parsed.to_string(),
            id,
            "not spelled as the server spells ids"
        );
        parsed
    }
}

impl fmt::Display for IdParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("client_")?;
        if let Some(node) = &self.node {
            write!(f, "{node}_")?;
        }
        write!(f, "{}_{}_{}", self.core, self.slot, self.generation)
    }
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

/// A rooms server or cluster with one probe client per place, and the spare
/// connections made while looking for a client on a given core.
pub struct Rooms {
    // Dropped before the servers, so their shutdown does not wait on their closing
    // handshakes; the servers before the Redis their links say goodbye to.
    probes: Vec<RoomClient>,
    spares: Vec<Vec<RoomClient>>,
    servers: Vec<Server>,
    _redis: Option<RedisServer>,
    pub setup: Setup,
    /// On a cluster, node `i`'s id (learnt from its probe's `client_id`).
    nodes: Vec<String>,
    markers: u64,
}

impl Rooms {
    pub fn start(setup: Setup) -> Rooms {
        Rooms::start_with(setup, |_| {})
    }

    /// A server, or each node, with `tweak` applied to the test config; the rooms app
    /// gets the rate limit and client limits the config names, as `ringcast serve`
    /// gives them. Nodes are spread over the CPUs.
    pub fn start_with(setup: Setup, tweak: impl Fn(&mut Config)) -> Rooms {
        let (servers, redis) = match setup {
            Setup::Cores(cores) => (vec![start_server(RoomsApp::configured, cores, tweak)], None),
            Setup::Nodes(nodes) => {
                let redis = RedisServer::start();
                let cpus = every_cpu();
                let servers = (0..nodes)
                    .map(|node| {
                        start_node(&redis.url(), 1, |config| {
                            config.cpus = CpuSelection::List(vec![cpus[node % cpus.len()]]);
                            tweak(config);
                        })
                    })
                    .collect();
                (servers, Some(redis))
            }
        };
        let places = setup.places();
        let mut rooms = Rooms {
            probes: Vec::new(),
            spares: (0..places).map(|_| Vec::new()).collect(),
            servers,
            _redis: redis,
            setup,
            nodes: Vec::new(),
            markers: 0,
        };
        if let Setup::Nodes(_) = setup {
            rooms.nodes = (0..places)
                .map(|node| {
                    let probe = RoomClient::connect(rooms.servers[node].addr());
                    let id = IdParts::parse(&probe.id);
                    rooms.probes.push(probe);
                    id.node.expect("a cluster node's client_id names the node")
                })
                .collect();
        } else {
            rooms.probes = (0..places).map(|core| rooms.client_on(core)).collect();
        }
        rooms
    }

    pub fn places(&self) -> usize {
        self.setup.places()
    }

    /// The address that serves `place`: node `place`'s own; on a server, the one
    /// address of every core (the kernel picks the core, see [`Rooms::client_on`]).
    pub fn addr_of(&self, place: usize) -> SocketAddr {
        match self.setup {
            Setup::Cores(_) => self.servers[0].addr(),
            Setup::Nodes(_) => self.servers[place].addr(),
        }
    }

    /// The counters of `place`: its core's, or its node's.
    pub fn place_stats(&self, place: usize) -> Stats {
        match self.setup {
            Setup::Cores(_) => self.servers[0].core_stats(place as u16),
            Setup::Nodes(_) => self.servers[place].stats(),
        }
    }

    /// A counter summed over every server (or node).
    pub fn total(&self, counter: impl Fn(&Stats) -> u64) -> u64 {
        self.servers
            .iter()
            .map(|server| counter(&server.stats()))
            .sum()
    }

    /// Waits until `closed` connections have been counted closed in all: their
    /// cores have forgotten them.
    pub fn wait_closed(&self, what: &str, closed: u64) {
        wait_until(what, || (self.total(|s| s.closed) == closed).then_some(()));
    }

    /// The place a `client_id` names: its core, or its node's index. Panics on an id
    /// of the other form, or of an unknown node.
    pub fn place_of(&self, id: &str) -> usize {
        let parts = IdParts::parse(id);
        match (self.setup, parts.node) {
            (Setup::Cores(_), None) => parts.core as usize,
            (Setup::Nodes(_), Some(node)) => {
                assert_eq!(parts.core, 0, "{id}: nodes have one core");
                self.nodes
                    .iter()
                    .position(|n| *n == node)
                    .unwrap_or_else(|| panic!("{id}: not one of the nodes {:?}", self.nodes))
            }
            (setup, _) => panic!("{id}: not an id of {setup:?}"),
        }
    }

    /// A room name for tests that place rooms: on a server, one whose home core (the
    /// one keeping its count) is `home`; on a cluster, where Redis keeps every count,
    /// any name, distinct for each `home` as on a server.
    pub fn room_on(&self, home: usize, name: &str) -> String {
        match self.setup {
            Setup::Cores(cores) => (0..)
                .map(|n| format!("{name}-{n}"))
                .find(|room| home_of(room, cores).index() == home)
                .expect("some name hashes to every core"),
            Setup::Nodes(_) => format!("{name}-{home}"),
        }
    }

    /// A client served by `place`. On a server the kernel spreads connections over the
    /// cores by source port, so connect until one lands there (the others are kept as
    /// spares); on a cluster, connect to the node.
    pub fn client_on(&mut self, place: usize) -> RoomClient {
        if let Setup::Nodes(_) = self.setup {
            let client = RoomClient::connect(self.addr_of(place));
            assert_eq!(
                self.place_of(&client.id),
                place,
                "{}: node {place}'s",
                client.id
            );
            return client;
        }
        for _ in 0..200 {
            if let Some(client) = self.spares[place].pop() {
                return client;
            }
            let client = RoomClient::connect(self.addr_of(place));
            let core = self.place_of(&client.id);
            self.spares[core].push(client);
        }
        panic!("no connection landed on core {place} in 200 tries");
    }

    /// `N` clients, client `i` on place `i % places`.
    pub fn clients<const N: usize>(&mut self) -> [RoomClient; N] {
        std::array::from_fn(|i| self.client_on(i % self.places()))
    }

    pub fn clients_vec(&mut self, n: usize) -> Vec<RoomClient> {
        (0..n).map(|i| self.client_on(i % self.places())).collect()
    }

    /// The probes and spares: every other connected client, for broadcasts.
    pub fn bystanders(&mut self) -> impl Iterator<Item = &mut RoomClient> + '_ {
        self.probes
            .iter_mut()
            .chain(self.spares.iter_mut().flatten())
    }

    /// Proves nothing is queued for each client beyond what the test has read: a
    /// marker from a probe on every place must be the next thing each receives.
    ///
    /// It is also a fence: on a server, each core had handled everything it was told
    /// before, so a core that sent the client anything earlier has delivered it before
    /// the marker. On a cluster, a node's messages to another node go in order through
    /// its one Redis connection, and Redis hands each node its events in the order it
    /// ran them: what node `i` had handled before its probe's marker, and whatever
    /// Redis ran before that, reaches the client first. Not covered: what Redis sends
    /// back to the client's own node for that node's own request (the own probe's
    /// marker does not go through Redis); a test that needs it first asks something
    /// that Redis answers (see `leaving_last_member_removes_room`).
    pub fn assert_quiet<'a>(&mut self, clients: impl IntoIterator<Item = &'a mut RoomClient>) {
        for client in clients {
            let expected = self.send_markers(&client.id);
            client.expect_any_order(expected);
        }
    }

    /// [`Rooms::assert_quiet`] for the probes and spares.
    pub fn assert_bystanders_quiet(&mut self) {
        let ids: Vec<String> = self.bystanders().map(|c| c.id.clone()).collect();
        for (index, id) in ids.iter().enumerate() {
            let expected = self.send_markers(id);
            let client = self.bystanders().nth(index).expect("same bystanders");
            client.expect_any_order(expected);
        }
    }

    /// Everything queued for `client` up to a marker fence (see [`Rooms::assert_quiet`]).
    pub fn drain(&mut self, client: &mut RoomClient) -> Vec<Value> {
        let mut markers = self.send_markers(&client.id);
        let mut drained = Vec::new();
        while !markers.is_empty() {
            let message = client.recv();
            match markers
                .iter()
                .position(|m| normalize(message.clone(), m) == *m)
            {
                Some(index) => {
                    markers.swap_remove(index);
                }
                None => drained.push(message),
            }
        }
        drained
    }

    /// A marker from every probe to `to`; what `to` will receive.
    fn send_markers(&mut self, to: &str) -> Vec<Value> {
        self.markers += 1;
        let message = json!({ "marker": self.markers });
        self.probes
            .iter_mut()
            .map(|probe| {
                probe.send(&send_private(to, message.clone()));
                private_from(&probe.id, message.clone())
            })
            .collect()
    }
}

/// The CPUs this process may run on, as the server's default configuration finds them.
fn every_cpu() -> Vec<usize> {
    let config = Config {
        cores: None,
        ..Config::default()
    };
    config
        .resolve()
        .expect("the default config")
        .cpus()
        .to_vec()
}
