//! Integration tests over real sockets: one server per test on 127.0.0.1 port 0 with
//! N cores, driven by the library's blocking WebSocket connection
//! (`ringcast::client::WsConnection`, wrapped as [`client::TestClient`]). Nothing here sleeps to synchronise: every wait is for an event
//! (bytes on a socket, a counter reaching a value) under a deadline, so no test hangs.
//!
//! Layout:
//! - `client`: the test client ([`client::TestClient`], over the library's connection)
//!   and raw HTTP exchanges.
//! - `client_lib`: `ringcast::client` against the room server: every message type, a
//!   server restart (reconnect on schedule, rejoin, metadata), and each error it names.
//! - `client_cli`: `ringcast client` as a process: scripted stdin, stdout, exit codes.
//! - `handshake`: the upgrade accepted and refused (400, 405, 426, 431), `/healthz`,
//!   the handshake timeout.
//! - `messages`: echo, fragmentation with interleaved control frames, ping/pong, the
//!   close handshake.
//! - `protocol_errors`: 1009, 1007, 1002, and the server surviving a bad client.
//! - `backpressure`: a client that stops reading is closed with 1008, others unaffected.
//! - `heartbeat`: server pings, the idle timeout.
//! - `limits`: connections per address (429) and in all (503) refused at accept with
//!   `Retry-After` and released when clients leave; a silent flood refused at once; a
//!   handshake trickled byte by byte cut at its deadline; socket buffer sizes.
//! - `shutdown`: graceful shutdown sends 1001 and waits for the closing handshakes.
//! - `serve_cli`: `ringcast serve` as a process: a taken port is refused, SIGTERM exits 0.
//! - `cluster`: cluster nodes over a real redis-server losing a node (SIGKILL, SIGSTOP),
//!   losing Redis (at start, later, back empty) and their link (a short outage).
//! - `cores`: both cores accept; the broadcast app across cores, no loss, no duplicates.
//! - `deflate`: permessage-deflate: negotiation, compressed echo, the inflate limit,
//!   a broadcast to deflate and plain clients.
//! - `load`: one short `ringcast load` run per scenario against the server.
//! - `rooms`: the room protocol of PROTOCOL.md on one and two cores, on three cluster
//!   nodes and on one node, message by message.
//! - `jwt`: JWT on the upgrade: tokens accepted from the query and a Bearer header,
//!   each refusal a counted 401, `sub` as a fixed `user`, the `rooms` claim, bad keys.
//! - `history`: room offsets and recovery (exactly what was missed, then live; stale,
//!   overflowed, history off), one total order per room, per-sender order across rooms.
//! - `tls`: wss:// with a certificate made at test time: echo, rooms, the load tool,
//!   an untrusted certificate, a plain-text client, the handshake timeout, a refusal
//!   at accept, SIGHUP reload, a bad certificate or key.

mod backpressure;
mod client;
mod client_cli;
mod client_lib;
mod cluster;
mod cores;
mod deflate;
mod handshake;
mod heartbeat;
mod history;
mod jwt;
mod limits;
mod load;
mod messages;
mod pacing;
mod protocol_errors;
mod redis;
mod rooms;
mod serve_cli;
mod shutdown;
mod tls;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringcast::app::{App, AppSetup};
use ringcast::config::Config;
use ringcast::runtime::{ServerHandle, Stats};
use ringcast::CoreId;

/// How long any single wait in these tests may take before it counts as a failure.
pub const WAIT: Duration = Duration::from_secs(5);

/// A running server, shut down (gracefully, bounded by `shutdown_timeout_ms`) on drop.
pub struct Server {
    handle: Option<ServerHandle>,
    addr: SocketAddr,
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("server handle already taken")
    }

    pub fn stats(&self) -> Stats {
        self.handle().stats()
    }

    pub fn core_stats(&self, core: u16) -> Stats {
        self.handle().core_stats(CoreId(core))
    }

    /// Takes the handle out, for tests that shut the server down themselves.
    pub fn take_handle(&mut self) -> ServerHandle {
        self.handle.take().expect("server handle already taken")
    }

    /// Waits until the summed counters satisfy `done`; panics with `what` after [`WAIT`].
    pub fn wait_for_stats(&self, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
        let handle = self.handle();
        wait_until(what, || {
            let stats = handle.stats();
            done(&stats).then_some(stats)
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = handle.shutdown();
        }
    }
}

/// Starts a cluster node (rooms app) with `cores` cores on 127.0.0.1 port 0, over the
/// Redis at `redis_url`, with the test defaults, then `tweak`.
pub fn start_node(redis_url: &str, cores: usize, tweak: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        cores: Some(cores),
        shutdown_timeout_ms: 1_000,
        ..Config::default()
    };
    config.cluster.redis_url = Some(redis_url.to_string());
    tweak(&mut config);
    let config = config.resolve().expect("a valid test config");
    let handle = ringcast::cluster::start_node(config).expect("node starts");
    let addr = handle.local_addr();
    Server {
        handle: Some(handle),
        addr,
    }
}

/// Starts a server on 127.0.0.1 port 0 with `cores` cores. The test defaults (a short
/// shutdown deadline so a failed test ends quickly) are applied before `tweak`.
pub fn start_server<A, F>(make_app: F, cores: usize, tweak: impl FnOnce(&mut Config)) -> Server
where
    A: App,
    F: Fn(AppSetup<'_>) -> A + Send + Sync + 'static,
{
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        cores: Some(cores),
        shutdown_timeout_ms: 1_000,
        ..Config::default()
    };
    tweak(&mut config);
    let config = config.resolve().expect("a valid test config");
    let handle = ringcast::runtime::start(config, make_app).expect("server starts");
    assert_eq!(
        handle.drivers().len(),
        cores,
        "this machine has fewer CPUs than cores asked for"
    );
    let addr = handle.local_addr();
    Server {
        handle: Some(handle),
        addr,
    }
}

/// Removes what a message says about room history (issue 13: `room_joined`'s `epoch`
/// and `offset`, a `room_message`'s `offset`) when `expected` does not name it, after
/// checking it is well-formed, so tests about other things compare the rest exactly.
pub fn without_unasked_position(
    mut actual: serde_json::Value,
    expected: &serde_json::Value,
) -> serde_json::Value {
    let kind = actual["type"].as_str().unwrap_or("").to_string();
    let fields: &[&str] = match kind.as_str() {
        "room_joined" => &["epoch", "offset"],
        "room_message" => &["offset"],
        _ => &[],
    };
    for field in fields {
        if expected.get(*field).is_some() {
            continue;
        }
        let Some(object) = actual.as_object_mut() else {
            break;
        };
        let Some(value) = object.remove(*field) else {
            continue; // (a cluster node cut off from Redis sends room messages without one)
        };
        let well_formed = match *field {
            "epoch" => value.as_str().is_some_and(|e| !e.is_empty()),
            _ => value.as_u64().is_some(),
        };
        assert!(well_formed, "{kind} with {field} {value}");
    }
    actual
}

/// Polls `check` until it returns `Some`, for state that no socket event announces
/// (the server's counters). Panics with `what` after [`WAIT`].
pub fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
