//! The rooms state machine (`ringcast::rooms::RoomsCore`) on 1 to 4 simulated cores,
//! driven by any sequence of client opens, closes, requests (well-formed ones over a
//! few room names, and raw bytes) and envelope deliveries. Each core has a FIFO inbox,
//! as the engine's `hub` gives it; the input picks which inbox delivers next, so
//! envelopes from different cores interleave in every order. At the end every inbox
//! is drained.
//! Checks: no panic and quiescence; a core never posts to itself or to a core that
//! does not exist; every frame sent is one text frame holding a JSON object with a
//! `type`; a private message reaches only the client it names; replies come in request
//! order (the sim tags requests with growing ids); a client's reply queue stays within
//! twice the steps taken so far (and, at rest, is empty); at rest, each room's count
//! on its home core equals the sum of every core's local members and the members the
//! clients' own requests give (join/leave, under the client limits), each core's
//! local members are its open clients in the room, and each core knows exactly its
//! open clients.
#![no_main]

use std::collections::{BTreeMap, HashMap, VecDeque};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use ringcast::proto::{parse_request, Request};
use ringcast::rooms::{client_id, home_of, ClientLimits, Effect, Envelope, RoomsCore};
use ringcast::ws::{Decoder, Incoming, Role};
use ringcast::{ConnId, CoreId};
use serde_json::Value;

/// Small limits, so that refusals happen.
const LIMITS: ClientLimits = ClientLimits {
    max_rooms: 3,
    max_room_name_bytes: 8,
    max_metadata_bytes: 64,
};

/// The room names requests use: a few short ones, an empty one, one over the limit.
const ROOMS: [&str; 6] = ["lobby", "a", "b", "café", "", "a-very-long-room"];

/// Most envelope deliveries before the end's drain counts as a livelock.
const DRAIN_LIMIT: usize = 1_000_000;

#[derive(Arbitrary, Debug)]
struct Input {
    /// 1 to 4 cores.
    cores: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A client connects to a core; `reuse` takes the slot of a closed client there,
    /// with the next generation, as the engine's slab does.
    Open { core: u8, reuse: bool },
    /// Client number `client` (of all ever opened) disconnects, if open.
    Close { client: u8 },
    /// Client number `client` sends a request, if open; `tagged` gives it an `id`.
    Send {
        client: u8,
        request: Req,
        tagged: bool,
    },
    /// The inbox of core `core` (or the next non-empty one) delivers its oldest envelope.
    Deliver { core: u8 },
}

#[derive(Arbitrary, Debug)]
enum Req {
    Join {
        room: u8,
    },
    Leave {
        room: u8,
    },
    RoomMessage {
        room: u8,
    },
    /// To client number `to` (open or not).
    Private {
        to: u8,
    },
    SetMetadata {
        key: u8,
        value: u8,
    },
    Broadcast,
    Raw(Vec<u8>),
}

impl Req {
    /// The request's JSON; `id`: the `"r<n>"` id to give it.
    fn to_json(&self, sim: &Sim, id: Option<u64>) -> Vec<u8> {
        let room = |i: &u8| Value::from(ROOMS[usize::from(*i) % ROOMS.len()]);
        let value = match self {
            Req::Join { room: r } => serde_json::json!({"type": "join_room", "room": room(r)}),
            Req::Leave { room: r } => serde_json::json!({"type": "leave_room", "room": room(r)}),
            Req::RoomMessage { room: r } => {
                serde_json::json!({"type": "room_message", "room": room(r), "message": "hi"})
            }
            Req::Private { to } => {
                let to = sim.clients[usize::from(*to) % sim.clients.len()].conn;
                let to = client_id(to);
                serde_json::json!({"type": "private_message", "to": to, "message": format!("to:{to}")})
            }
            Req::SetMetadata { key, value } => serde_json::json!({
                "type": "set_metadata",
                "metadata": {format!("k{}", key % 8): "x".repeat(usize::from(value % 40))},
            }),
            Req::Broadcast => serde_json::json!({"type": "broadcast", "message": {"n": 1}}),
            Req::Raw(bytes) => return bytes.clone(),
        };
        let mut value = value;
        if let Some(id) = id {
            value["id"] = Value::from(format!("r{id}"));
        }
        serde_json::to_vec(&value).unwrap()
    }
}

struct Client {
    conn: ConnId,
    open: bool,
    /// The rooms its requests put it in (the model), in join order.
    rooms: Vec<String>,
}

/// One core's connection slab: a slot's generation goes up each time it is reused.
#[derive(Default)]
struct Slots {
    generations: Vec<u32>,
    free: Vec<usize>,
}

struct Sim {
    cores: Vec<RoomsCore>,
    inboxes: Vec<VecDeque<Envelope>>,
    clients: Vec<Client>,
    /// Every room name a join named, to check at the end.
    rooms: Vec<String>,
    slots: Vec<Slots>,
    steps: usize,
    effects: Vec<Effect>,
    /// The last `"r<n>"` id the sim gave a request; the ids grow.
    last_tag: u64,
    /// The last `"r<n>"` id each client got a reply with: replies come in request order.
    last_reply: HashMap<ConnId, u64>,
}

impl Sim {
    fn new(cores: usize) -> Self {
        Sim {
            cores: (0..cores)
                .map(|i| RoomsCore::new(CoreId(i as u16), cores).with_limits(LIMITS))
                .collect(),
            inboxes: (0..cores).map(|_| VecDeque::new()).collect(),
            clients: Vec::new(),
            rooms: Vec::new(),
            slots: (0..cores).map(|_| Slots::default()).collect(),
            steps: 0,
            effects: Vec::new(),
            last_tag: 0,
            last_reply: HashMap::new(),
        }
    }

    fn now(&self) -> u64 {
        1_800_000_000 + self.steps as u64
    }

    fn open(&mut self, core: usize, reuse: bool) {
        let slots = &mut self.slots[core];
        let slot = match slots.free.pop() {
            Some(slot) if reuse => slot,
            freed => {
                slots.free.extend(freed);
                slots.generations.push(0);
                slots.generations.len() - 1
            }
        };
        slots.generations[slot] += 1;
        let conn = ConnId {
            core: CoreId(core as u16),
            slot: slot as u32,
            generation: slots.generations[slot],
        };
        self.clients.push(Client {
            conn,
            open: true,
            rooms: Vec::new(),
        });
        let now = self.now();
        self.cores[core].handle_open(conn, now, &mut self.effects);
        self.apply(core);
    }

    fn close(&mut self, client: usize) {
        let now = self.now();
        let client = &mut self.clients[client];
        client.open = false;
        client.rooms.clear();
        let conn = client.conn;
        self.slots[conn.core.index()].free.push(conn.slot as usize);
        self.cores[conn.core.index()].handle_close(conn, now, &mut self.effects);
        self.apply(conn.core.index());
    }

    /// Client number `client` sends `payload`, tagged by the sim with id `"r<tag>"`.
    fn send(&mut self, client: usize, payload: &[u8], tag: Option<u64>) {
        let conn = self.clients[client].conn;
        let (request, id) = parse_request(payload);
        // Replies with an id "r<n>" are checked for order (see `apply`): a raw request
        // may not forge one.
        let id = id.and_then(|id| serde_json::from_str::<String>(id.get()).ok());
        if tag.is_none() && id.is_some_and(|id| id.starts_with('r')) {
            return;
        }
        match request {
            Ok(Request::JoinRoom { room, .. }) => {
                let rooms = &mut self.clients[client].rooms;
                let admitted = !room.is_empty()
                    && !rooms.iter().any(|r| *r == room)
                    && rooms.len() < LIMITS.max_rooms
                    && room.len() <= LIMITS.max_room_name_bytes;
                if admitted {
                    rooms.push(room.to_string());
                }
                if !self.rooms.iter().any(|r| *r == room) {
                    self.rooms.push(room.to_string());
                }
            }
            Ok(Request::LeaveRoom { room }) => self.clients[client].rooms.retain(|r| *r != room),
            // A message reading "to:<id>" is checked against its recipient (see
            // `apply`): a raw request may not forge one.
            Ok(Request::PrivateMessage { to, message }) => {
                let text = serde_json::from_str::<String>(message.get()).unwrap_or_default();
                if text.starts_with("to:") && text != format!("to:{to}") {
                    return;
                }
            }
            _ => {}
        }
        let now = self.now();
        self.cores[conn.core.index()].handle_message(conn, payload, now, 0, &mut self.effects);
        self.apply(conn.core.index());
    }

    /// Delivers the oldest envelope of core `core`'s inbox, or of the next non-empty
    /// one; `false` when every inbox is empty.
    fn deliver(&mut self, core: usize) -> bool {
        let count = self.cores.len();
        let Some(core) = (0..count)
            .map(|i| (core + i) % count)
            .find(|c| !self.inboxes[*c].is_empty())
        else {
            return false;
        };
        let envelope = self.inboxes[core].pop_front().unwrap();
        let now = self.now();
        self.cores[core].handle_envelope(envelope, now, &mut self.effects);
        self.apply(core);
        true
    }

    /// Carries out what core `from` asked for: posts go to the back of an inbox, frames
    /// are checked (a frame for a closed client is fine: the engine drops it).
    fn apply(&mut self, from: usize) {
        self.steps += 1;
        for effect in std::mem::take(&mut self.effects) {
            match effect {
                Effect::Post { core, envelope } => {
                    assert_ne!(core.index(), from, "core {from} posted to itself");
                    assert!(core.index() < self.cores.len(), "post to core {core:?}");
                    self.inboxes[core.index()].push_back(envelope);
                }
                Effect::Send { to, frame } => {
                    let message = check_frame(&frame);
                    if message["type"] == "private_message" {
                        if let Some(text) = message["message"].as_str() {
                            assert_eq!(text, format!("to:{}", client_id(to)), "misrouted");
                        }
                    }
                    let tag = message.get("id").and_then(Value::as_str);
                    if let Some(tag) = tag.and_then(|id| id.strip_prefix('r')?.parse().ok()) {
                        let last = self.last_reply.entry(to).or_default();
                        assert!(tag > *last, "reply r{tag} to {to} after r{last}");
                        *last = tag;
                    }
                }
                Effect::SendToAll { frame, .. } | Effect::SendToEach { frame, .. } => {
                    check_frame(&frame);
                }
                Effect::Close { .. } | Effect::Cluster { .. } => {
                    panic!("a stand-alone server neither restarts nor talks to a cluster")
                }
            }
        }
        // Each step holds at most one place in a client's queue or queues one frame for
        // it, plus the `member_left` of a disconnect chain, which an earlier join paid for.
        for client in &self.clients {
            let pending = self.cores[client.conn.core.index()].pending_replies(client.conn);
            let steps = self.steps;
            assert!(
                pending <= 2 * steps,
                "{pending} replies pending after {steps} steps"
            );
        }
    }

    fn check_at_rest(&self) {
        for (index, core) in self.cores.iter().enumerate() {
            let open = self
                .clients
                .iter()
                .filter(|c| c.open && c.conn.core.index() == index);
            assert_eq!(core.client_count(), open.count(), "clients on core {index}");
        }
        for client in &self.clients {
            let pending = self.cores[client.conn.core.index()].pending_replies(client.conn);
            assert_eq!(pending, 0, "replies pending at rest for {:?}", client.conn);
        }
        for room in &self.rooms {
            let home = home_of(room, self.cores.len());
            let counted = self.cores[home.index()].home_member_count(room);
            let mut local = 0;
            for (index, core) in self.cores.iter().enumerate() {
                if index != home.index() {
                    assert_eq!(
                        core.home_member_count(room),
                        0,
                        "{room:?} counted off its home"
                    );
                }
                let mut members: Vec<ConnId> = core.local_members(room).collect();
                members.sort_unstable();
                let mut expected: Vec<ConnId> = self
                    .clients
                    .iter()
                    .filter(|c| c.open && c.conn.core.index() == index && c.rooms.contains(room))
                    .map(|c| c.conn)
                    .collect();
                expected.sort_unstable();
                assert_eq!(members, expected, "members of {room:?} on core {index}");
                local += core.local_member_count(room);
            }
            assert_eq!(counted, local, "count of {room:?} against local members");
        }
    }
}

/// A frame sent to clients: one unmasked text frame holding a JSON object with a type.
fn check_frame(frame: &Bytes) -> BTreeMap<String, Value> {
    let mut buf = BytesMut::from(&frame[..]);
    let decoded = Decoder::new(Role::Client, usize::MAX).decode(&mut buf);
    let Ok(Some(Incoming::Text(json))) = decoded else {
        panic!("not one text frame: {decoded:?}");
    };
    assert!(buf.is_empty(), "more than one frame");
    let message: BTreeMap<String, Value> = serde_json::from_slice(&json).expect("a JSON object");
    assert!(message.get("type").is_some_and(Value::is_string), "no type");
    message
}

fuzz_target!(|input: Input| {
    let mut sim = Sim::new(usize::from(input.cores % 4) + 1);
    for op in &input.ops {
        match op {
            Op::Open { core, reuse } => sim.open(usize::from(*core) % sim.cores.len(), *reuse),
            Op::Close { .. } | Op::Send { .. } if sim.clients.is_empty() => {}
            Op::Close { client } => {
                let client = usize::from(*client) % sim.clients.len();
                if sim.clients[client].open {
                    sim.close(client);
                }
            }
            Op::Send {
                client,
                request,
                tagged,
            } => {
                let client = usize::from(*client) % sim.clients.len();
                if sim.clients[client].open {
                    let tag = tagged.then(|| {
                        sim.last_tag += 1;
                        sim.last_tag
                    });
                    let payload = request.to_json(&sim, tag);
                    sim.send(client, &payload, tag);
                }
            }
            Op::Deliver { core } => {
                sim.deliver(usize::from(*core) % sim.cores.len());
            }
        }
    }
    let mut delivered = 0;
    while sim.deliver(0) {
        delivered += 1;
        assert!(
            delivered < DRAIN_LIMIT,
            "no quiescence after {DRAIN_LIMIT} deliveries"
        );
    }
    sim.check_at_rest();
});
