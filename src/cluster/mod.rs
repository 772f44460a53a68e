//! A cluster: several ringcast nodes (each its own process, on one machine or many)
//! share rooms through one Redis, so that every client sees one server: broadcasts
//! reach every node, room counts are exact cluster-wide, private messages reach the
//! node that holds the recipient. Rooms app only; without `--redis` none of this runs.
//!
//! # How
//! - **Membership in Redis, in one order.** A join or leave is a Lua script
//!   (`scripts.rs`) that updates the room's per-node counts and total atomically and
//!   publishes `member_joined` / `member_left` (as `J` / `L` events, `wire.rs`) on the
//!   room's channel, to which every node with members is subscribed. Every node sees a
//!   room's events in the order Redis ran them, with exact totals.
//! - **One link per node** (`link.rs`): a RESP3 connection, written by one thread
//!   (what the cores ask, in order, through a bounded [`Mailbox`]) and read by another,
//!   which plays the home role for every room on this node (`node_rooms.rs`): it
//!   turns events into the same envelopes a home core sends on a stand-alone server.
//! - **Numbered by Redis, encoded once per node.** A room message goes from the
//!   sender's core (its JSON, but for the offset) to a script that gives it the
//!   room's next offset, keeps it in the room's history stream and publishes it on the
//!   room's channel; Redis hands it to each subscribed node, the sender's too (one
//!   message per node with members, not per member), whose reader encodes the frame
//!   once and shares it with its members' cores as one `Bytes`. One order per room
//!   for everyone, and a recovering join (the join script reads the history in the
//!   same atomic step) meets the live stream exactly.
//! - **Routable ids.** `client_<node>_<core>_<slot>_<generation>`: a private message
//!   goes to the node's own channel; its node answers whether it was delivered.
//! - **Per-sender order.** One sender's messages leave its node in order on one
//!   connection, Redis runs them in order, and each node reads them in order on one
//!   connection and posts them in order to each core's FIFO inbox.
//! - **Node loss.** Each node refreshes `ringcast:alive:<node>` (TTL `node_ttl_ms`).
//!   Every node runs the reaper script every second (or half the TTL): it removes the
//!   members of registered nodes whose key expired, each with its `member_left`.
//!
//! # Why this Redis client
//! No Rust Redis client runs on monoio. The candidates were the `redis` crate's async
//! client (tokio, on a thread of its own) and our own blocking I/O on one RESP3
//! connection with the `redis-protocol` crate's sans-IO codec. Measured side by side
//! (`benches/redis-client/`, README there): the crate costs 1.44-1.77x the CPU per
//! message received (0.87 against 0.60 us at 64 B) and 1.5-1.8x per 64-byte publish
//! sent, and its pub/sub and commands run on two connections: of 10,000 scripts that
//! publish and then reply, the application saw the reply first 10,000 times, the
//! reverse of Redis's order (two sockets give no order, whatever the library). On one
//! RESP3 connection the published message always came first, which is what the link
//! builds on; and its buffers are bounded (Redis's own output limit, no unbounded
//! channel between a driver task and the caller).

mod link;
mod node_rooms;
mod resp;
mod scripts;
mod wire;

use std::sync::Arc;
use std::time::Duration;

pub use link::LinkHandle;
pub use resp::RedisUrl;

use crate::config::ServerConfig;
use crate::hub::{Hub, Mailbox};
use crate::rooms::{ClusterLink, HistoryLimits, RoomsApp};
use crate::runtime::{self, Attachments, ServerHandle, StartError};
use crate::stats::ClusterStats;

/// Why a cluster node did not start (or lost Redis).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid Redis URL {0}")]
    Url(String),
    #[error("cannot reach Redis at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("Redis refused: {0}")]
    Redis(String),
    #[error("talking to Redis: {0}")]
    Io(std::io::Error),
    #[error("unexpected answer from Redis: {0}")]
    Protocol(String),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// A random node id: 10 characters of `[a-z0-9]`.
pub fn random_node_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Starts a cluster node: connects to Redis (refusing to start if it cannot), starts
/// the link, then the cores running the rooms app as part of the cluster. The link
/// says goodbye to Redis when the server has shut down.
pub fn start_node(config: ServerConfig) -> Result<ServerHandle, ClusterError> {
    let cluster = config.cluster.clone();
    let url_text = cluster
        .redis_url
        .as_deref()
        .ok_or_else(|| ClusterError::Url("(none given)".into()))?;
    let url = RedisUrl::parse(url_text)?;
    let cores = config.cores();
    let hub = Hub::new(cores, config.inbox_capacity);
    let stats = Arc::new(ClusterStats::default());
    let mailbox = Arc::new(Mailbox::new(cluster.queue_capacity));
    let (link, node) = link::start(link::LinkSetup {
        url,
        base: cluster.node_id.as_deref().map(Arc::from),
        cores,
        hub: hub.clone(),
        mailbox: mailbox.clone(),
        stats: stats.clone(),
        ttl: Duration::from_millis(cluster.node_ttl_ms),
        max_pending: cluster.max_pending_changes,
        history: HistoryLimits {
            size: config.history_size,
            ttl_s: config.history_ttl_s,
            max_bytes: config.history_max_bytes,
        },
    })?;
    let attachments = Attachments {
        hub,
        cluster: Some(stats.clone()),
    };
    let handle = ClusterLink { mailbox, stats };
    let started = runtime::start_with(config, attachments, move |setup| {
        RoomsApp::configured(setup).with_cluster(node.clone(), 0, handle.clone())
    });
    match started {
        Ok(mut server) => {
            server.after_stop(move || link.stop());
            Ok(server)
        }
        Err(e) => {
            link.stop();
            Err(e.into())
        }
    }
}
