//! The room logic of one core, as a pure state machine: `handle_*` take a client's
//! message, a connection event or an envelope from another core, plus `now`; they
//! push [`Effect`]s (frames to send, envelopes to post) and never do I/O.
//! See the module docs of `rooms` for how cores share rooms.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::join_order::JoinOrder;
use super::limit::{
    Bucket, ClientLimits, RateLimit, METADATA_TOO_LARGE, ROOM_NAME_TOO_LONG, TOO_MANY_ROOMS,
};
use super::replies::ReplyQueue;
use super::wire::{error_frame, parse_request, Encoder, Request, RATE_LIMITED};
use crate::ws::FrameBuffer;
use crate::{ConnId, CoreId};

/// The most cores the room app supports (core sets are a 128-bit mask).
pub const MAX_CORES: usize = 128;

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
    /// To the room's home: add a member. `token` is the joiner's held reply place.
    Join {
        room: Arc<str>,
        member: ConnId,
        token: u32,
        id: Option<Box<RawValue>>,
    },
    /// To the room's home: remove a member, then (a disconnect) go on to the home of
    /// the next room in `then`, so the others see `member_left` in join order.
    Leave {
        room: Arc<str>,
        member: ConnId,
        then: VecDeque<Arc<str>>,
    },
    /// From the home to the joiner's core: the join is counted; the room's core set.
    Joined {
        room: Arc<str>,
        member: ConnId,
        members: usize,
        cores: CoreSet,
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
    /// The outcome of a private message: nothing (delivered) or the error to answer.
    PrivateDone {
        to: ConnId,
        token: u32,
        error: Option<Bytes>,
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
    /// The frame for every local member of `room` but `except`, in join order
    /// ([`RoomsCore::local_members`]): one effect for a whole room's fan-out.
    SendToMembers {
        room: Arc<str>,
        except: Option<ConnId>,
        frame: Bytes,
    },
    Post {
        core: CoreId,
        envelope: Envelope,
    },
}

#[derive(Debug, Default)]
struct Client {
    /// Rooms joined (counted or on the way), in join order, with the token of the
    /// join: a `Joined` for an earlier join of the same room is recognised as stale.
    /// At most `ClientLimits::max_rooms`.
    rooms: JoinOrder<Arc<str>, u32>,
    metadata: Map<String, Value>,
    replies: ReplyQueue,
    /// What is left of the client's message allowance (see `limit`).
    allowance: Bucket,
    /// Where its room messages are encoded (from its first one: an idle client keeps
    /// one pointer, not the 56-byte buffer).
    room_frames: Option<Box<RoomFrames>>,
}

/// A client's room messages, encoded one after another while they go to the same
/// room, so that members write a run of them as one iovec.
#[derive(Debug)]
struct RoomFrames {
    room: Arc<str>,
    buffer: FrameBuffer,
}

impl Client {
    /// The buffer for this client's next message to `room`: a fresh chunk when its
    /// last message went to another room, so a chunk's frames share one audience.
    fn room_frames(&mut self, room: &Arc<str>) -> &mut FrameBuffer {
        let frames = self.room_frames.get_or_insert_with(|| {
            Box::new(RoomFrames {
                room: room.clone(),
                buffer: FrameBuffer::default(),
            })
        });
        if frames.room != *room {
            frames.buffer.restart();
            frames.room = room.clone();
        }
        &mut frames.buffer
    }
}

/// A membership change to announce to a room.
struct Notice {
    kind: &'static str,
    member: ConnId,
    members: usize,
    set: CoreSet,
}

/// The authoritative count of a room, kept on its home core.
#[derive(Debug)]
struct HomeRoom {
    members: usize,
    per_core: Box<[u32]>,
    /// Where a big room's `member_joined` / `member_left` notices are encoded, one
    /// after another (they all go to the room's members), so that a join storm's
    /// notices reach each member as runs of one iovec. Made when the room reaches
    /// [`BIG_ROOM`] members: a small room would keep a chunk for a few notices.
    notices: Option<Box<FrameBuffer>>,
}

/// Members from which a room's notices are encoded end to end (see `HomeRoom`).
const BIG_ROOM: usize = 64;

impl HomeRoom {
    fn cores(&self) -> CoreSet {
        let mut set = CoreSet::default();
        for (core, count) in self.per_core.iter().enumerate() {
            if *count > 0 {
                set = set.with(CoreId(core as u16));
            }
        }
        set
    }
}

/// One core's share of the rooms.
#[derive(Debug)]
pub struct RoomsCore {
    core: CoreId,
    cores: usize,
    clients: HashMap<ConnId, Client>,
    /// Local members whose join was counted, per room, in join order.
    local_members: HashMap<Arc<str>, JoinOrder<ConnId, ()>>,
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
}

/// The `client_id` of a connection: it names the owning core, so messages to it are
/// routed without a global table, and carries the never-reused generation.
pub fn client_id(conn: ConnId) -> String {
    format!("client_{}_{}_{}", conn.core.0, conn.slot, conn.generation)
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
            clients: HashMap::new(),
            local_members: HashMap::new(),
            room_cores: HashMap::new(),
            homed: HashMap::new(),
            blocked: 0,
            rate_limit: RateLimit::OFF,
            limits: ClientLimits::default(),
            local_work: VecDeque::new(),
        }
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
        self.clients.insert(conn, Client::default());
        let frame = Encoder::new("welcome")
            .string("client_id", &client_id(conn))
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
        let (request, id) = parse_request(payload);
        let result = match request {
            _ if !admitted => Err(RATE_LIMITED.into()),
            Ok(request) => self.handle_request(conn, request, id, now, out),
            Err(bad) => Err(bad.0),
        };
        if let Err(text) = result {
            self.deliver(conn, error_frame(&text, now, id), out);
        }
        self.run_local_work(now, out);
    }

    fn handle_request(
        &mut self,
        conn: ConnId,
        request: Request<'_>,
        id: Option<&RawValue>,
        now: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), String> {
        let from = client_id(conn);
        match request {
            Request::Broadcast { message } => {
                let frame = Encoder::new("broadcast")
                    .string("from", &from)
                    .raw("message", message)
                    .number("timestamp", now)
                    .frame();
                for core in self.other_cores() {
                    let envelope = Envelope::ToAll {
                        frame: frame.clone(),
                    };
                    out.push(Effect::Post { core, envelope });
                }
                self.deliver_to_all(Some(conn), frame, out);
            }
            Request::JoinRoom { room } => {
                if room.is_empty() {
                    return Err("Room name required".into());
                }
                if room.len() > self.limits.max_room_name_bytes {
                    return Err(ROOM_NAME_TOO_LONG.into());
                }
                let joined = &self.client(conn).rooms;
                if joined.contains(&*room) {
                    return Ok(()); // a second join does nothing
                }
                if joined.len() >= self.limits.max_rooms {
                    return Err(TOO_MANY_ROOMS.into());
                }
                let room = self.intern(&room);
                let token = self.hold_reply(conn);
                self.client(conn).rooms.insert(room.clone(), token);
                let id = id.map(RawValue::to_owned);
                let join = Envelope::Join {
                    room: room.clone(),
                    member: conn,
                    token,
                    id,
                };
                self.post(self.home(&room), join, out);
            }
            Request::LeaveRoom { room } => {
                if let Some((room, _)) = self.client(conn).rooms.remove(&*room) {
                    self.leave_locally(conn, &room);
                    let home = self.home(&room);
                    let leave = Envelope::Leave {
                        room,
                        member: conn,
                        then: VecDeque::new(),
                    };
                    self.post(home, leave, out);
                }
            }
            Request::RoomMessage { room, message } => {
                let joined = self.clients[&conn].rooms.get_key(&*room);
                let Some(room) = joined.cloned() else {
                    return Err(if self.room_cores.contains_key(&*room) {
                        "You are not in this room".into()
                    } else {
                        "Room does not exist".into()
                    });
                };
                let frame = Encoder::new("room_message")
                    .string("room", &room)
                    .string("from", &from)
                    .raw("message", message)
                    .number("timestamp", now)
                    .frame_in(self.client(conn).room_frames(&room));
                let cores = self.room_cores.get(&room).copied().unwrap_or_default();
                for core in cores.iter() {
                    let envelope = Envelope::ToMembers {
                        room: room.clone(),
                        except: Some(conn),
                        frame: frame.clone(),
                    };
                    self.post(core, envelope, out);
                }
            }
            Request::PrivateMessage { to, message } => {
                let not_found = || "Recipient not found".to_string();
                let to = parse_client_id(&to)
                    .filter(|to| to.core.index() < self.cores)
                    .ok_or_else(not_found)?;
                let frame = Encoder::new("private_message")
                    .string("from", &from)
                    .raw("message", message)
                    .number("timestamp", now)
                    .frame();
                if to.core == self.core {
                    if !self.clients.contains_key(&to) {
                        return Err(not_found());
                    }
                    self.deliver(to, frame, out);
                } else {
                    let token = self.hold_reply(conn);
                    let id = id.map(RawValue::to_owned);
                    out.push(Effect::Post {
                        core: to.core,
                        envelope: Envelope::Private {
                            to,
                            from: conn,
                            frame,
                            token,
                            id,
                        },
                    });
                }
            }
            Request::SetMetadata { metadata } => {
                let max = self.limits.max_metadata_bytes;
                let client = self.client(conn);
                let mut merged = client.metadata.clone();
                merged.extend(metadata);
                let text = serde_json::to_vec(&merged).expect("a JSON map always serializes");
                if text.len() > max {
                    return Err(METADATA_TOO_LARGE.into());
                }
                client.metadata = merged;
                let frame = Encoder::new("metadata_updated")
                    .json("metadata", &text)
                    .id(id)
                    .frame();
                self.deliver(conn, frame, out);
            }
        }
        Ok(())
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

    /// Acts on one envelope, from another core or this one.
    fn dispatch(&mut self, envelope: Envelope, now: u64, out: &mut Vec<Effect>) {
        match envelope {
            Envelope::Join {
                room,
                member,
                token,
                id,
            } => self.home_join(room, member, token, id, out),
            Envelope::Leave { room, member, then } => self.home_leave(room, member, then, out),
            Envelope::Joined {
                room,
                member,
                members,
                cores,
                token,
                id,
            } => {
                // The home's set, as of this join: this core knows the room exists
                // before the joiner can tell anyone it joined.
                self.room_cores.insert(room.clone(), cores);
                let Some(client) = self.clients.get(&member) else {
                    return; // gone before its join was counted; its leave follows
                };
                if client.rooms.get(&room) == Some(&token) {
                    let local = self.local_members.entry(room.clone()).or_default();
                    local.insert(member, ());
                }
                let frame = Encoder::new("room_joined")
                    .string("room", &room)
                    .number("members", members as u64)
                    .id(id.as_deref())
                    .frame();
                self.fill_reply(member, token, Some(frame), out);
            }
            Envelope::Cores { room, cores } => {
                if cores.is_empty() {
                    self.room_cores.remove(&room);
                } else {
                    self.room_cores.insert(room, cores);
                }
            }
            Envelope::ToMembers {
                room,
                except,
                frame,
            } => {
                let Some(members) = self.local_members.get(&room) else {
                    return;
                };
                if self.blocked == 0 {
                    out.push(Effect::SendToMembers {
                        room,
                        except,
                        frame,
                    });
                } else {
                    let members: Vec<ConnId> = members
                        .keys()
                        .copied()
                        .filter(|m| Some(*m) != except)
                        .collect();
                    for member in members {
                        self.deliver(member, frame.clone(), out);
                    }
                }
            }
            Envelope::ToAll { frame } => self.deliver_to_all(None, frame, out),
            Envelope::Private {
                to,
                from,
                frame,
                token,
                id,
            } => {
                let error = if self.clients.contains_key(&to) {
                    self.deliver(to, frame, out);
                    None
                } else {
                    Some(error_frame("Recipient not found", now, id.as_deref()))
                };
                out.push(Effect::Post {
                    core: from.core,
                    envelope: Envelope::PrivateDone {
                        to: from,
                        token,
                        error,
                    },
                });
            }
            Envelope::PrivateDone { to, token, error } => self.fill_reply(to, token, error, out),
        }
    }

    /// On the home core: count a join, then tell (in this order) the joiner's core,
    /// every core if the core set grew, and the cores with members.
    fn home_join(
        &mut self,
        room: Arc<str>,
        member: ConnId,
        token: u32,
        id: Option<Box<RawValue>>,
        out: &mut Vec<Effect>,
    ) {
        let cores = self.cores;
        let home = self.homed.entry(room.clone()).or_insert_with(|| HomeRoom {
            members: 0,
            per_core: vec![0; cores].into_boxed_slice(),
            notices: None,
        });
        home.members += 1;
        if home.members >= BIG_ROOM && home.notices.is_none() {
            home.notices = Some(Box::default());
        }
        home.per_core[member.core.index()] += 1;
        let (members, grew, set) = (
            home.members,
            home.per_core[member.core.index()] == 1,
            home.cores(),
        );
        let joined = Envelope::Joined {
            room: room.clone(),
            member,
            members,
            cores: set,
            token,
            id,
        };
        self.post(member.core, joined, out);
        if grew {
            self.post_to_every_core(&room, set, out);
        }
        let notice = Notice {
            kind: "member_joined",
            member,
            members,
            set,
        };
        self.notify_members(&room, notice, Some(member), out);
    }

    /// On the home core: count a leave; an emptied room ceases to exist silently.
    /// Then passes a disconnect's remaining leaves on to the next room's home.
    fn home_leave(
        &mut self,
        room: Arc<str>,
        member: ConnId,
        mut then: VecDeque<Arc<str>>,
        out: &mut Vec<Effect>,
    ) {
        if let Some(home) = self.homed.get_mut(&room) {
            home.members -= 1;
            home.per_core[member.core.index()] -= 1;
            let (members, shrank, set) = (
                home.members,
                home.per_core[member.core.index()] == 0,
                home.cores(),
            );
            if members == 0 {
                self.homed.remove(&room);
            }
            if shrank {
                self.post_to_every_core(&room, set, out);
            }
            if members > 0 {
                let notice = Notice {
                    kind: "member_left",
                    member,
                    members,
                    set,
                };
                self.notify_members(&room, notice, None, out);
            }
        }
        if let Some(next) = then.pop_front() {
            let home = self.home(&next);
            let leave = Envelope::Leave {
                room: next,
                member,
                then,
            };
            self.post(home, leave, out);
        }
    }

    /// Sends a frame to a client of this core, behind its held replies if it has any.
    fn deliver(&mut self, to: ConnId, frame: Bytes, out: &mut Vec<Effect>) {
        if self.blocked > 0 {
            if let Some(client) = self.clients.get_mut(&to) {
                if client.replies.is_blocked() {
                    client.replies.push(frame);
                    return;
                }
            }
        }
        out.push(Effect::Send { to, frame });
    }

    /// Sends a frame to every client of this core but `except`.
    fn deliver_to_all(&mut self, except: Option<ConnId>, frame: Bytes, out: &mut Vec<Effect>) {
        if self.blocked == 0 {
            out.push(Effect::SendToAll { except, frame });
            return;
        }
        let clients: Vec<ConnId> = self
            .clients
            .keys()
            .copied()
            .filter(|c| Some(*c) != except)
            .collect();
        for client in clients {
            self.deliver(client, frame.clone(), out);
        }
    }

    /// Holds a place in a client's replies for an answer from another core.
    fn hold_reply(&mut self, conn: ConnId) -> u32 {
        let client = self.clients.get_mut(&conn).expect("a known client");
        if !client.replies.is_blocked() {
            self.blocked += 1;
        }
        client.replies.hold()
    }

    /// Fills a held place and sends what it unblocks.
    fn fill_reply(
        &mut self,
        conn: ConnId,
        token: u32,
        frame: Option<Bytes>,
        out: &mut Vec<Effect>,
    ) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let was_blocked = client.replies.is_blocked();
        client.replies.fill(token, frame, |frame| {
            out.push(Effect::Send { to: conn, frame })
        });
        if was_blocked && !client.replies.is_blocked() {
            self.blocked -= 1;
        }
    }

    fn client(&mut self, conn: ConnId) -> &mut Client {
        self.clients
            .get_mut(&conn)
            .expect("checked by handle_message")
    }

    /// Sends `member_joined` / `member_left` to the members on every core in the set.
    fn notify_members(
        &mut self,
        room: &Arc<str>,
        notice: Notice,
        except: Option<ConnId>,
        out: &mut Vec<Effect>,
    ) {
        let encoder = Encoder::new(notice.kind)
            .string("room", room)
            .string("client_id", &client_id(notice.member))
            .number("total_members", notice.members as u64);
        let buffer = self
            .homed
            .get_mut(room)
            .and_then(|home| home.notices.as_mut());
        let frame = match buffer {
            Some(buffer) => encoder.frame_in(buffer),
            None => encoder.frame(),
        };
        for core in notice.set.iter() {
            let envelope = Envelope::ToMembers {
                room: room.clone(),
                except,
                frame: frame.clone(),
            };
            self.post(core, envelope, out);
        }
    }

    fn post_to_every_core(&mut self, room: &Arc<str>, cores: CoreSet, out: &mut Vec<Effect>) {
        for core in 0..self.cores as u16 {
            self.post(
                CoreId(core),
                Envelope::Cores {
                    room: room.clone(),
                    cores,
                },
                out,
            );
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

    fn leave_locally(&mut self, conn: ConnId, room: &Arc<str>) {
        if let Some(members) = self.local_members.get_mut(room) {
            members.remove(&conn);
            if members.is_empty() {
                self.local_members.remove(room);
            }
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

    /// The shared name of a room this core already knows, or a new one.
    fn intern(&self, room: &str) -> Arc<str> {
        self.room_cores
            .get_key_value(room)
            .map(|(name, _)| name.clone())
            .or_else(|| {
                self.local_members
                    .get_key_value(room)
                    .map(|(name, _)| name.clone())
            })
            .unwrap_or_else(|| Arc::from(room))
    }

    /// The local members of `room` whose join was counted, in join order (none if
    /// none): what [`Effect::SendToMembers`] sends to.
    pub fn local_members(&self, room: &str) -> impl Iterator<Item = ConnId> + '_ {
        self.local_members
            .get(room)
            .into_iter()
            .flat_map(|members| members.keys().copied())
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

    /// Local members of a room that have been counted (for tests and stats).
    pub fn local_member_count(&self, room: &str) -> usize {
        self.local_members.get(room).map_or(0, JoinOrder::len)
    }
}

#[cfg(test)]
mod tests;
