//! The room logic of one core, as a pure state machine: `handle_*` take a client's
//! message, a connection event or an envelope from another core, plus `now`; they
//! push [`Effect`]s (frames to send, with their recipients, and envelopes to post) and
//! never do I/O. See the module docs of `rooms` for how cores share rooms.
//!
//! One core plays three roles, one file each:
//! - `client.rs`: its own clients: their requests, rooms, metadata, replies in order
//!   (and `gate.rs`: a client's requests taking one way at a time; `clients.rs`: the
//!   table of them, by connection slot).
//! - `home.rs`: the rooms homed here: authoritative counts, `member_joined`/`left`,
//!   numbering and keeping room messages.
//! - `replica.rs`: every room's core set, and the local members of each room.
//!
//! This file holds what they share: the envelopes between cores, the effects, the
//! entry points, and the local work list that replaces recursion.

mod client;
mod clients;
mod gate;
mod home;
mod replica;

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use self::client::Client;
use self::home::HomeRoom;
use self::replica::LocalRoom;
use super::history::{Histories, HistoryLimits};
use super::limit::{ClientLimits, RateLimit};
use crate::auth::Identity;
use crate::proto::{error_frame, parse_request, Encoder, Recover, RequestError};
use crate::{ConnId, CoreId};

/// The most cores the room app supports (core sets are a 128-bit mask).
pub const MAX_CORES: usize = crate::config::MAX_ROOM_CORES;

/// Cores that have members of a room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreSet(u128);

impl CoreSet {
    pub fn contains(self, core: CoreId) -> bool {
        self.0 & (1 << core.0) != 0
    }

    fn with(self, core: CoreId) -> Self {
        CoreSet(self.0 | (1 << core.0))
    }

    /// The set with `core` added.
    pub fn with_core(self, core: CoreId) -> Self {
        self.with(core)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = CoreId> {
        (0..MAX_CORES as u16)
            .map(CoreId)
            .filter(move |core| self.contains(*core))
    }
}

/// What one core tells another. One envelope per (message, destination core).
#[derive(Debug)]
pub enum Envelope {
    /// To the room's home: add a member. `token` is the joiner's held reply place;
    /// `recover`, the position it asks to recover from.
    Join {
        room: Arc<str>,
        member: ConnId,
        token: u32,
        id: Option<Box<RawValue>>,
        recover: Option<Box<Recover>>,
    },
    /// To the room's home: remove a member, then (a disconnect) go on to the home of
    /// the next room in `then`, so the others see `member_left` in join order.
    Leave {
        room: Arc<str>,
        member: ConnId,
        then: VecDeque<Arc<str>>,
    },
    /// From the home to the joiner's core: the join is counted; the room's core set,
    /// its position, and what it recovered.
    Joined {
        room: Arc<str>,
        member: ConnId,
        members: usize,
        cores: CoreSet,
        token: u32,
        id: Option<Box<RawValue>>,
        history: Box<JoinHistory>,
    },
    /// To the room's home: a room message, encoded but for its offset (left open, see
    /// `Encoder::open`); the home numbers it, keeps it and sends it to the members.
    Publish {
        room: Arc<str>,
        sender: ConnId,
        open: Bytes,
    },
    /// From a room's home to a sender's core: one of its room messages has been sent
    /// on to every core with members (so its later messages may go another way).
    Sequenced { sender: ConnId },
    /// To the room's home: does the room exist? (A room message from a non-member;
    /// answered as `PrivateDone` with the error.)
    CheckRoom {
        room: Arc<str>,
        member: ConnId,
        token: u32,
        id: Option<Box<RawValue>>,
    },
    /// From the home to every core: the cores with members changed (empty: room gone).
    Cores { room: Arc<str>, cores: CoreSet },
    /// A frame for the local members of a room, but `except`.
    ToMembers {
        room: Arc<str>,
        except: Option<ConnId>,
        frame: Bytes,
    },
    /// A frame for every client of the core.
    ToAll { frame: Bytes },
    /// A private message; the outcome goes back to `from` as `PrivateDone`.
    Private {
        to: ConnId,
        from: ConnId,
        frame: Bytes,
        token: u32,
        id: Option<Box<RawValue>>,
    },
    /// The outcome of a request that held the client's place (a private message to
    /// another core or node, a cluster-wide room check): nothing (delivered) or the
    /// error to answer.
    PrivateDone {
        to: ConnId,
        token: u32,
        error: Option<Bytes>,
    },
    /// Cluster: a private message from a client of another node. The outcome goes
    /// back through the link with `reply`, which the sender's node reads.
    RemotePrivate {
        to: ConnId,
        frame: Bytes,
        reply: Bytes,
    },
    /// Cluster: the node's state in Redis was lost (a long outage, a Redis restart):
    /// close every client (1012) so it reconnects, and name new clients after `node`.
    Restart { node: Arc<str>, epoch: u32 },
}

/// A room's position at a join, as `room_joined` gives it, and what the join
/// recovered.
#[derive(Debug, Default)]
pub struct JoinHistory {
    pub epoch: Arc<str>,
    /// The room's latest offset when the join was counted.
    pub offset: u64,
    /// Asked to recover: whether it could (then `replay` follows `room_joined`).
    pub recovered: Option<bool>,
    pub replay: Vec<Bytes>,
}

/// What a cluster node's core asks of the link to Redis (`crate::cluster`). The
/// link runs them in the order the core made them.
#[derive(Debug)]
pub enum ClusterOp {
    /// Count a join cluster-wide (recovering from `recover`); the link answers with
    /// `Joined` and notices.
    Join {
        room: Arc<str>,
        member: ConnId,
        token: u32,
        id: Option<Box<RawValue>>,
        recover: Option<Box<Recover>>,
    },
    /// Count a leave cluster-wide (already left locally).
    Leave { room: Arc<str>, member: ConnId },
    /// A room message, encoded but for its offset (`Encoder::open`): Redis numbers it
    /// and keeps it, and every node with members (this one too) sends it on; this
    /// node then tells the sender's core (`Sequenced`).
    RoomMessage {
        room: Arc<str>,
        sender: ConnId,
        open: Bytes,
    },
    /// A broadcast (already sent to this node's clients) for the other nodes.
    Broadcast { frame: Bytes },
    /// A private message to a client of node `node`; the outcome comes back as
    /// `PrivateDone` for `from`'s held place.
    Private {
        node: Box<str>,
        to: ConnId,
        from: ConnId,
        frame: Bytes,
        token: u32,
        id: Option<Box<RawValue>>,
    },
    /// The outcome of a `RemotePrivate`, for the sender's node.
    PrivateOutcome { reply: Bytes, delivered: bool },
    /// `room_message` to a room this node has no members of and the sender is not in:
    /// whether it exists elsewhere decides the error, answered as `PrivateDone`.
    RoomExists {
        room: Arc<str>,
        member: ConnId,
        token: u32,
        id: Option<Box<RawValue>>,
    },
}

/// What the driver must do.
#[derive(Debug)]
pub enum Effect {
    Send {
        to: ConnId,
        frame: Bytes,
    },
    SendToAll {
        except: Option<ConnId>,
        frame: Bytes,
    },
    /// The frame for each of `to` but `except`: one effect for a whole room's
    /// fan-out on this core. `to` is the room's local members in join order, shared
    /// (the room keeps it until its membership changes).
    SendToEach {
        to: Rc<[ConnId]>,
        except: Option<ConnId>,
        frame: Bytes,
    },
    Post {
        core: CoreId,
        envelope: Envelope,
    },
    /// Close a client's connection (a cluster node restarting its clients).
    Close {
        to: ConnId,
        code: u16,
        reason: &'static str,
    },
    /// For the cluster link, made while the node was in life `epoch` (the link drops
    /// what an earlier life asked).
    Cluster {
        epoch: u32,
        op: ClusterOp,
    },
}

/// A cluster node's name and life, as a core knows them.
#[derive(Debug)]
struct ClusterNode {
    id: Arc<str>,
    epoch: u32,
}

/// A `Joined` envelope's facts, as the joiner's core acts on them.
struct Joined {
    member: ConnId,
    members: usize,
    cores: CoreSet,
    token: u32,
    history: Box<JoinHistory>,
}

/// One core's share of the rooms.
#[derive(Debug)]
pub struct RoomsCore {
    core: CoreId,
    cores: usize,
    clients: clients::Clients,
    /// Local members whose join was counted, per room, in join order.
    local_members: HashMap<Arc<str>, LocalRoom>,
    /// Replica of every room's core set (the room exists while it is here).
    room_cores: HashMap<Arc<str>, CoreSet>,
    /// Rooms whose home is this core.
    homed: HashMap<Arc<str>, HomeRoom>,
    /// Clients whose reply queue is blocked (0: every frame may go out directly).
    blocked: usize,
    /// Messages each client may send (default: no limit).
    rate_limit: RateLimit,
    /// What each client may hold (rooms, room name length, metadata).
    limits: ClientLimits,
    /// Envelopes this core sent itself, handled in order before a `handle_*` call
    /// returns: a loop, not recursion, so a client leaving 20,000 rooms on one core
    /// costs a queue, not 20,000 stack frames.
    local_work: VecDeque<Envelope>,
    /// On a cluster node: its name and life. Joins, leaves and cross-node messages then
    /// go to the link to Redis, which plays the home role for every room.
    cluster: Option<ClusterNode>,
    /// The offsets and kept messages of the rooms homed here.
    histories: Histories,
}

/// Whom a `private_message`'s `to` names.
enum Recipient<'a> {
    /// A client of this node (or of this stand-alone server).
    Here(ConnId),
    /// A client of another cluster node.
    Node(&'a str, ConnId),
}

/// The `client_id` of a connection: it names the owning core, so messages to it are
/// routed without a global table, and carries the never-reused generation.
pub fn client_id(conn: ConnId) -> String {
    format!("client_{}_{}_{}", conn.core.0, conn.slot, conn.generation)
}

/// The `client_id` of a connection of cluster node `node`:
/// `client_<node>_<core>_<slot>_<generation>`, so a private message is routed to the
/// node, then the core.
pub fn cluster_client_id(node: &str, conn: ConnId) -> String {
    format!(
        "client_{node}_{}_{}_{}",
        conn.core.0, conn.slot, conn.generation
    )
}

/// The node and connection a cluster `client_id` names (the exact spelling
/// [`cluster_client_id`] gives, as [`parse_client_id`] requires).
pub fn parse_cluster_client_id(text: &str) -> Option<(&str, ConnId)> {
    let rest = text.strip_prefix("client_")?;
    let (node, local) = rest.split_once('_')?;
    let conn = parse_client_id(&format!("client_{local}"))?;
    (crate::config::is_node_id(node)).then_some((node, conn))
}

/// The connection a `client_id` names. Only the exact spelling [`client_id`] gives
/// matches (ids are compared as strings, as the seed did): no signs, no leading zeros.
pub fn parse_client_id(text: &str) -> Option<ConnId> {
    let mut parts = text.strip_prefix("client_")?.split('_');
    let conn = ConnId {
        core: CoreId(parts.next()?.parse().ok()?),
        slot: parts.next()?.parse().ok()?,
        generation: parts.next()?.parse().ok()?,
    };
    (parts.next().is_none() && client_id(conn) == text).then_some(conn)
}

/// The core that keeps a room's count: a fixed hash of its name.
pub fn home_of(room: &str, cores: usize) -> CoreId {
    // SipHash with fixed keys: the same on every core and every run.
    #[allow(
        deprecated,
        reason = "SipHasher with zero keys is the stable hash we want"
    )]
    let mut hasher = std::hash::SipHasher::new();
    room.hash(&mut hasher);
    CoreId((hasher.finish() % cores as u64) as u16)
}

impl RoomsCore {
    pub fn new(core: CoreId, cores: usize) -> Self {
        assert!(
            cores <= MAX_CORES,
            "the room app supports at most {MAX_CORES} cores"
        );
        RoomsCore {
            core,
            cores,
            clients: clients::Clients::default(),
            local_members: HashMap::new(),
            room_cores: HashMap::new(),
            homed: HashMap::new(),
            blocked: 0,
            rate_limit: RateLimit::OFF,
            limits: ClientLimits::default(),
            local_work: VecDeque::new(),
            cluster: None,
            histories: Histories::new(HistoryLimits::default()),
        }
    }

    /// Keeps room history within `limits` (see `history`).
    pub fn with_history(mut self, limits: HistoryLimits) -> Self {
        self.histories = Histories::new(limits);
        self
    }

    /// Bytes of kept history frames and rooms with a history on this core (for
    /// `/metrics` and tests).
    pub fn history_usage(&self) -> (usize, usize) {
        (self.histories.bytes(), self.histories.len())
    }

    /// A core of cluster node `node` in its life `epoch` (see `crate::cluster`).
    pub fn clustered(mut self, node: Arc<str>, epoch: u32) -> Self {
        self.cluster = Some(ClusterNode { id: node, epoch });
        self
    }

    /// A client's id as others see it: with the node's name on a cluster node.
    fn id_of(&self, conn: ConnId) -> String {
        match &self.cluster {
            Some(node) => cluster_client_id(&node.id, conn),
            None => client_id(conn),
        }
    }

    /// Whom a `to` names: a client here, a client of another node, or nobody.
    fn recipient<'a>(&self, to: &'a str) -> Option<Recipient<'a>> {
        let recipient = match &self.cluster {
            None => Recipient::Here(parse_client_id(to)?),
            Some(node) => match parse_cluster_client_id(to)? {
                (name, conn) if name == &*node.id => Recipient::Here(conn),
                (name, conn) => Recipient::Node(name, conn),
            },
        };
        Some(recipient)
    }

    /// Queues `op` for the cluster link (cluster nodes only), stamped with the life.
    fn to_link(&self, op: ClusterOp, out: &mut Vec<Effect>) {
        if let Some(node) = &self.cluster {
            let epoch = node.epoch;
            out.push(Effect::Cluster { epoch, op });
        }
    }

    pub fn is_clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// Bounds what each client may hold (see [`ClientLimits`]).
    pub fn with_limits(mut self, limits: ClientLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Limits the messages each client may send (see `limit`).
    pub fn with_rate_limit(mut self, rate_limit: RateLimit) -> Self {
        self.rate_limit = rate_limit;
        self
    }

    /// Whether `handle_message` reads its `now_ms` (a limit is on).
    pub fn has_rate_limit(&self) -> bool {
        !self.rate_limit.is_off()
    }

    /// A client connected: remember it and welcome it.
    pub fn handle_open(&mut self, conn: ConnId, now: u64, out: &mut Vec<Effect>) {
        self.handle_open_as(conn, None, now, out);
    }

    /// A client connected with a verified JWT (`identity`, see `client::Client`):
    /// its metadata starts as `{"user": sub}` and its joins are limited to the
    /// token's `rooms`. Then as [`Self::handle_open`].
    pub fn handle_open_as(
        &mut self,
        conn: ConnId,
        identity: Option<Box<Identity>>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        self.clients.insert(conn, Client::new(identity));
        let frame = Encoder::new("welcome")
            .string("client_id", &self.id_of(conn))
            .number("timestamp", now)
            .frame();
        out.push(Effect::Send { to: conn, frame });
    }

    /// A client disconnected (clean, reset or timeout): it leaves its rooms in join
    /// order. The leaves go as one chain from home to home, so every other member sees
    /// the `member_left`s in that order whatever cores the rooms' homes are on.
    pub fn handle_close(&mut self, conn: ConnId, now: u64, out: &mut Vec<Effect>) {
        let Some(client) = self.clients.remove(&conn) else {
            return;
        };
        if client.replies.is_blocked() {
            self.blocked -= 1;
        }
        let mut rooms: VecDeque<Arc<str>> =
            client.rooms.into_entries().map(|(room, _)| room).collect();
        for room in &rooms {
            self.leave_locally(conn, room);
        }
        if self.is_clustered() {
            // The link sends them in this order; Redis runs them in this order.
            for room in rooms {
                self.to_link(ClusterOp::Leave { room, member: conn }, out);
            }
            return;
        }
        let Some(room) = rooms.pop_front() else {
            return;
        };
        let home = self.home(&room);
        let leave = Envelope::Leave {
            room,
            member: conn,
            then: rooms,
        };
        self.post(home, leave, out);
        self.run_local_work(now, out);
    }

    /// A message from a client. `now_ms` is a monotonic time in milliseconds, read
    /// only for the rate limit.
    pub fn handle_message(
        &mut self,
        conn: ConnId,
        payload: &[u8],
        now: u64,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let rate_limit = self.rate_limit;
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let admitted = client.allowance.take(rate_limit, now_ms);
        if client.is_holding() || !self.try_request(conn, payload, admitted, now, out) {
            self.hold(conn, payload, admitted, out);
        }
        self.run_local_work(now, out);
    }

    /// Serves one request, unless it must wait behind the client's room messages in
    /// flight to another core (then returns false and does nothing): see `gate`.
    fn try_request(
        &mut self,
        conn: ConnId,
        payload: &[u8],
        admitted: bool,
        now: u64,
        out: &mut Vec<Effect>,
    ) -> bool {
        let (request, id) = parse_request(payload);
        if let Ok(request) = &request {
            let hop = self.first_hop(conn, request);
            if !self.clients[&conn].may_go(hop) {
                return false;
            }
        }
        let result = match request {
            _ if !admitted => Err(RequestError::RateLimited),
            Ok(request) => self.handle_request(conn, request, id, now, out),
            Err(bad) => Err(bad),
        };
        if let Err(error) = result {
            self.deliver(conn, error_frame(&error, now, id), out);
        }
        true
    }

    /// An envelope from another core.
    pub fn handle_envelope(&mut self, envelope: Envelope, now: u64, out: &mut Vec<Effect>) {
        self.dispatch(envelope, now, out);
        self.run_local_work(now, out);
    }

    /// Handles the envelopes this core sent itself, and those they send, in order.
    fn run_local_work(&mut self, now: u64, out: &mut Vec<Effect>) {
        while let Some(envelope) = self.local_work.pop_front() {
            self.dispatch(envelope, now, out);
        }
    }

    /// Acts on one envelope, from another core or this one, in the role it is for.
    fn dispatch(&mut self, envelope: Envelope, now: u64, out: &mut Vec<Effect>) {
        match envelope {
            Envelope::Join {
                room,
                member,
                token,
                id,
                recover,
            } => {
                let join = home::Join {
                    member,
                    token,
                    id,
                    recover,
                };
                self.home_join(room, join, now, out)
            }
            Envelope::Leave { room, member, then } => self.home_leave(room, member, then, now, out),
            Envelope::Joined {
                room,
                member,
                members,
                cores,
                token,
                id,
                history,
            } => {
                let joined = Joined {
                    member,
                    members,
                    cores,
                    token,
                    history,
                };
                self.on_joined(room, joined, id, out)
            }
            Envelope::Publish { room, sender, open } => {
                self.home_publish(room, sender, open, now, out)
            }
            Envelope::Sequenced { sender } => self.on_sequenced(sender, now, out),
            Envelope::CheckRoom {
                room,
                member,
                token,
                id,
            } => {
                let error = self.existence_error(&room);
                let frame = error_frame(&error, now, id.as_deref());
                let done = Envelope::PrivateDone {
                    to: member,
                    token,
                    error: Some(frame),
                };
                self.post(member.core, done, out);
            }
            Envelope::Cores { room, cores } => self.on_cores(room, cores),
            Envelope::ToMembers {
                room,
                except,
                frame,
            } => self.on_to_members(&room, except, frame, out),
            Envelope::ToAll { frame } => self.deliver_to_all(None, frame, out),
            Envelope::Private {
                to,
                from,
                frame,
                token,
                id,
            } => self.on_private(to, from, frame, token, id, now, out),
            Envelope::PrivateDone { to, token, error } => self.fill_reply(to, token, error, out),
            Envelope::RemotePrivate { to, frame, reply } => {
                self.on_remote_private(to, frame, reply, out)
            }
            Envelope::Restart { node, epoch } => self.restart(node, epoch, out),
        }
    }

    /// Sends to another core, or (this core) queues it on the local work list that
    /// the `handle_*` call runs before it returns. Either way it is handled before any
    /// envelope that arrives later, as if this core had a FIFO inbox of its own.
    fn post(&mut self, core: CoreId, envelope: Envelope, out: &mut Vec<Effect>) {
        if core == self.core {
            self.local_work.push_back(envelope);
        } else {
            out.push(Effect::Post { core, envelope });
        }
    }

    fn home(&self, room: &str) -> CoreId {
        home_of(room, self.cores)
    }

    fn other_cores(&self) -> impl Iterator<Item = CoreId> + '_ {
        (0..self.cores as u16)
            .map(CoreId)
            .filter(move |core| *core != self.core)
    }

    /// The authoritative member count of a room homed on this core (0 if none), for
    /// tests, fuzzing and stats.
    pub fn home_member_count(&self, room: &str) -> usize {
        self.homed.get(room).map_or(0, |home| home.members)
    }

    /// Clients this core knows (connected and not yet closed).
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Frames and held places waiting in a client's reply queue (0 for almost every
    /// client), for tests and fuzzing.
    pub fn pending_replies(&self, conn: ConnId) -> usize {
        self.clients.get(&conn).map_or(0, |c| c.replies.len())
    }
}

#[cfg(test)]
mod tests;
