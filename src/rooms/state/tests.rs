//! The room logic without sockets: several `RoomsCore`s joined by FIFO inboxes, with
//! envelopes delivered in seeded random interleavings, and every frame a client would
//! receive recorded and decoded.

use std::collections::{HashMap, VecDeque};

use bytes::BytesMut;
use serde_json::{json, Value};

use super::home::BIG_ROOM;
use super::*;
use crate::ws::{Decoder, Incoming, Role};

const NOW: u64 = 1_700_000_000;

struct Sim {
    cores: Vec<RoomsCore>,
    inboxes: Vec<VecDeque<Envelope>>,
    clients: Vec<Vec<ConnId>>,
    received: HashMap<ConnId, Vec<Value>>,
    next_generation: u32,
    rng: u64,
    /// The monotonic milliseconds messages are handled at (the rate limit's clock).
    now_ms: u64,
}

impl Sim {
    fn new(cores: usize, seed: u64) -> Sim {
        Sim {
            cores: (0..cores)
                .map(|c| RoomsCore::new(CoreId(c as u16), cores))
                .collect(),
            inboxes: (0..cores).map(|_| VecDeque::new()).collect(),
            clients: vec![Vec::new(); cores],
            received: HashMap::new(),
            next_generation: 0,
            rng: seed | 1,
            now_ms: 0,
        }
    }

    /// Every core, rebuilt by `configure`.
    fn with_cores(mut self, configure: impl Fn(RoomsCore) -> RoomsCore) -> Sim {
        self.cores = self.cores.into_iter().map(configure).collect();
        self
    }

    fn with_rate_limit(self, rate_limit: RateLimit) -> Sim {
        self.with_cores(|core| core.with_rate_limit(rate_limit))
    }

    fn with_limits(self, limits: ClientLimits) -> Sim {
        self.with_cores(|core| core.with_limits(limits))
    }

    fn connect(&mut self, core: u16) -> ConnId {
        self.connect_as(core, None)
    }

    /// A client whose upgrade carried a verified JWT (`None`: JWT off).
    fn connect_as(&mut self, core: u16, identity: Option<Box<Identity>>) -> ConnId {
        self.next_generation += 1;
        let conn = ConnId {
            core: CoreId(core),
            slot: self.clients[core as usize].len() as u32,
            generation: self.next_generation,
        };
        self.clients[core as usize].push(conn);
        self.received.insert(conn, Vec::new());
        let mut out = Vec::new();
        self.cores[core as usize].handle_open_as(conn, identity, NOW, &mut out);
        self.apply(core as usize, out);
        conn
    }

    fn send(&mut self, conn: ConnId, message: Value) {
        self.send_raw(conn, &message.to_string());
    }

    fn send_raw(&mut self, conn: ConnId, text: &str) {
        let mut out = Vec::new();
        self.cores[conn.core.index()].handle_message(
            conn,
            text.as_bytes(),
            NOW,
            self.now_ms,
            &mut out,
        );
        self.apply(conn.core.index(), out);
    }

    fn close(&mut self, conn: ConnId) {
        self.clients[conn.core.index()].retain(|c| *c != conn);
        let mut out = Vec::new();
        self.cores[conn.core.index()].handle_close(conn, NOW, &mut out);
        self.apply(conn.core.index(), out);
    }

    fn apply(&mut self, core: usize, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { to, frame } => self.deliver(to, &frame),
                Effect::SendToAll { except, frame } => {
                    for to in self.clients[core].clone() {
                        if Some(to) != except {
                            self.deliver(to, &frame);
                        }
                    }
                }
                Effect::SendToEach { to, except, frame } => {
                    for &to in to.iter() {
                        if Some(to) != except {
                            self.deliver(to, &frame);
                        }
                    }
                }
                Effect::Post {
                    core: target,
                    envelope,
                } => {
                    assert_ne!(
                        target.index(),
                        core,
                        "a core handles its own envelopes at once"
                    );
                    self.inboxes[target.index()].push_back(envelope);
                }
                Effect::Close { .. } | Effect::Cluster { .. } => {
                    panic!("a stand-alone server neither restarts nor talks to a cluster")
                }
            }
        }
    }

    fn deliver(&mut self, to: ConnId, frame: &[u8]) {
        let mut decoder = Decoder::new(Role::Client, 1 << 20);
        let mut buf = BytesMut::from(frame);
        let Ok(Some(Incoming::Text(text))) = decoder.decode(&mut buf) else {
            panic!("not one text frame: {frame:?}");
        };
        let value: Value = serde_json::from_slice(&text).expect("server sends JSON");
        if let Some(inbox) = self.received.get_mut(&to) {
            inbox.push(value);
        }
    }

    /// Delivers one envelope from a pseudo-randomly chosen non-empty inbox.
    fn step(&mut self) -> bool {
        let busy: Vec<usize> = (0..self.inboxes.len())
            .filter(|c| !self.inboxes[*c].is_empty())
            .collect();
        if busy.is_empty() {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let core = busy[(self.rng % busy.len() as u64) as usize];
        let envelope = self.inboxes[core].pop_front().expect("non-empty");
        let mut out = Vec::new();
        self.cores[core].handle_envelope(envelope, NOW, &mut out);
        self.apply(core, out);
        true
    }

    fn settle(&mut self) {
        while self.step() {}
    }

    fn take(&mut self, conn: ConnId) -> Vec<Value> {
        std::mem::take(self.received.get_mut(&conn).expect("known client"))
    }
}

fn welcome_id(sim: &mut Sim, conn: ConnId) -> String {
    let messages = sim.take(conn);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["type"], "welcome");
    assert_eq!(messages[0]["timestamp"], NOW);
    messages[0]["client_id"].as_str().unwrap().to_string()
}

#[test]
fn welcome_carries_a_routable_client_id() {
    let mut sim = Sim::new(2, 1);
    let conn = sim.connect(1);
    let id = welcome_id(&mut sim, conn);
    assert!(id.starts_with("client_"));
    assert_eq!(parse_client_id(&id), Some(conn));
    for bad in [
        "client_",
        "client_1_2",
        "client_1_2_3_4",
        "user_1_2_3",
        "client_a_2_3",
        "client_+1_2_3",
    ] {
        assert_eq!(parse_client_id(bad), None, "{bad}");
    }
}

#[test]
fn joins_count_exactly_and_notify_the_other_members_on_every_core() {
    for seed in 1..20 {
        let mut sim = Sim::new(3, seed);
        let conns: Vec<ConnId> = (0..3).map(|c| sim.connect(c)).collect();
        let ids: Vec<String> = conns.iter().map(|c| welcome_id(&mut sim, *c)).collect();
        for (n, conn) in conns.iter().enumerate() {
            sim.send(*conn, json!({"type": "join_room", "room": "lobby"}));
            sim.settle();
            let joined = without_epoch(sim.take(*conn));
            assert_eq!(
                joined,
                vec![
                    json!({"type": "room_joined", "room": "lobby", "members": n + 1, "offset": 0})
                ]
            );
            for earlier in &conns[..n] {
                assert_eq!(
                    sim.take(*earlier),
                    vec![
                        json!({"type": "member_joined", "room": "lobby", "client_id": ids[n], "total_members": n + 1})
                    ]
                );
            }
        }
        // A second join of the same room does nothing.
        sim.send(conns[0], json!({"type": "join_room", "room": "lobby"}));
        sim.settle();
        assert!(conns.iter().all(|c| sim.take(*c).is_empty()));
    }
}

#[test]
fn room_message_reaches_the_other_members_only() {
    let mut sim = Sim::new(2, 7);
    let (a, b, outsider) = (sim.connect(0), sim.connect(1), sim.connect(1));
    let a_id = welcome_id(&mut sim, a);
    sim.take(b);
    sim.take(outsider);
    for conn in [a, b] {
        sim.send(conn, json!({"type": "join_room", "room": "r"}));
    }
    sim.settle();
    sim.take(a);
    sim.take(b);
    sim.send_raw(
        a,
        r#"{"type":"room_message","room":"r","message":{"deep":["x",1.50]}}"#,
    );
    sim.settle();
    assert!(
        sim.take(a).is_empty(),
        "the sender does not get its own room message"
    );
    assert!(sim.take(outsider).is_empty());
    let got = sim.take(b);
    assert_eq!(
        got,
        vec![
            json!({"type": "room_message", "room": "r", "from": a_id, "message": {"deep": ["x", 1.50]}, "timestamp": NOW, "offset": 1})
        ]
    );
}

/// Checks each `room_joined`'s epoch is a non-empty string and removes it (epochs are
/// random).
fn without_epoch(mut messages: Vec<Value>) -> Vec<Value> {
    for message in &mut messages {
        if message["type"] == "room_joined" {
            let epoch = message
                .as_object_mut()
                .and_then(|m| m.remove("epoch"))
                .unwrap_or_else(|| panic!("no epoch in {message}"));
            assert!(epoch.as_str().is_some_and(|e| !e.is_empty()), "{epoch}");
        }
    }
    messages
}

/// The frame of the first fan-out to a room's members (a `room_message`, or the
/// `member_joined` of a join) that each of `texts` from `from` produces.
fn fan_out_frames(sim: &mut Sim, from: ConnId, texts: &[&str]) -> Vec<Bytes> {
    texts
        .iter()
        .map(|text| {
            let mut out = Vec::new();
            sim.cores[from.core.index()].handle_message(from, text.as_bytes(), NOW, 0, &mut out);
            let frame = out.iter().find_map(|effect| match effect {
                Effect::Post {
                    envelope: Envelope::ToMembers { frame, .. },
                    ..
                }
                | Effect::SendToEach { frame, .. } => Some(frame.clone()),
                _ => None,
            });
            sim.apply(from.core.index(), out);
            sim.settle();
            frame.expect("a fan-out to the room's members")
        })
        .collect()
}

#[test]
fn a_senders_messages_to_one_room_are_encoded_end_to_end() {
    let mut sim = Sim::new(1, 3);
    let (a, b) = (sim.connect(0), sim.connect(0));
    for conn in [a, b] {
        for room in ["r", "s"] {
            sim.send(conn, json!({"type": "join_room", "room": room}));
        }
    }
    sim.settle();
    let to_r = r#"{"type":"room_message","room":"r","message":"m"}"#;
    let to_s = r#"{"type":"room_message","room":"s","message":"m"}"#;
    let frames = fan_out_frames(&mut sim, a, &[to_r, to_r, to_s, to_s]);
    let touch = |x: &Bytes, y: &Bytes| x.as_ptr().wrapping_add(x.len()) == y.as_ptr();
    assert!(touch(&frames[0], &frames[1]), "same room: one run");
    assert!(!touch(&frames[1], &frames[2]), "another room: a new chunk");
    assert!(touch(&frames[2], &frames[3]));
    // b got all four, whole and in order.
    let got = sim.take(b);
    let rooms: Vec<_> = got
        .iter()
        .filter(|m| m["type"] == "room_message")
        .map(|m| m["room"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rooms, ["r", "r", "s", "s"]);
}

#[test]
fn a_big_rooms_notices_are_encoded_end_to_end() {
    let mut sim = Sim::new(1, 5);
    let join = r#"{"type":"join_room","room":"big"}"#;
    let members: Vec<ConnId> = (0..BIG_ROOM).map(|_| sim.connect(0)).collect();
    for &member in &members[..BIG_ROOM - 1] {
        sim.send_raw(member, join);
        sim.settle();
    }
    // The join that makes the room big, then two more: their notices touch.
    let last = *members.last().unwrap();
    let (x, y) = (sim.connect(0), sim.connect(0));
    let mut notices = fan_out_frames(&mut sim, last, &[join]);
    notices.extend(fan_out_frames(&mut sim, x, &[join]));
    notices.extend(fan_out_frames(&mut sim, y, &[join]));
    let touch = |a: &Bytes, b: &Bytes| a.as_ptr().wrapping_add(a.len()) == b.as_ptr();
    assert!(touch(&notices[0], &notices[1]) && touch(&notices[1], &notices[2]));
    // Every earlier member saw the three joins, in order, with exact counts.
    let counts: Vec<_> = sim
        .take(members[0])
        .iter()
        .filter(|m| m["type"] == "member_joined")
        .map(|m| m["total_members"].as_u64().unwrap())
        .collect();
    assert_eq!(
        counts[counts.len() - 3..],
        [BIG_ROOM as u64, BIG_ROOM as u64 + 1, BIG_ROOM as u64 + 2]
    );
}

#[test]
fn messages_over_the_rate_limit_are_refused_with_their_id_and_not_handled() {
    let limit = RateLimit {
        per_second: 2,
        burst: 2,
    };
    let mut sim = Sim::new(2, 5).with_rate_limit(limit);
    let (a, b) = (sim.connect(0), sim.connect(1));
    let b_id = welcome_id(&mut sim, b);
    sim.take(a);
    let refused = |id: u64| json!({"type": "error", "message": "Rate limit exceeded", "timestamp": NOW, "id": id});
    let private = |n: u64| json!({"type": "private_message", "to": b_id, "message": n, "id": n});
    for n in 1..=4 {
        sim.send(a, private(n));
    }
    sim.settle();
    assert_eq!(sim.take(a), vec![refused(3), refused(4)]);
    let relayed: Vec<Value> = sim.take(b).iter().map(|m| m["message"].clone()).collect();
    assert_eq!(
        relayed,
        vec![json!(1), json!(2)],
        "refused ones were not handled"
    );
    // Malformed messages count too, and are refused before they are looked at.
    sim.send_raw(a, "not json");
    sim.settle();
    assert_eq!(
        sim.take(a),
        vec![json!({"type": "error", "message": "Rate limit exceeded", "timestamp": NOW})]
    );
    // b has its own allowance; a gets one message per 500 ms back.
    sim.send(b, json!({"type": "set_metadata", "metadata": {}, "id": 9}));
    sim.settle();
    assert_eq!(sim.take(b)[0]["type"], "metadata_updated");
    sim.now_ms += 499;
    sim.send(a, private(5));
    sim.now_ms += 1;
    sim.send(a, private(6));
    sim.settle();
    assert_eq!(sim.take(a), vec![refused(5)]);
    assert_eq!(sim.take(b)[0]["message"], 6);
}

#[test]
fn errors_name_their_cause_and_carry_the_request_id() {
    let mut sim = Sim::new(2, 3);
    let (a, b) = (sim.connect(0), sim.connect(1));
    sim.take(a);
    sim.take(b);
    sim.send(b, json!({"type": "join_room", "room": "taken"}));
    sim.settle();
    sim.take(b);
    let cases = [
        (
            json!({"type": "join_room", "room": "", "id": 1}),
            "Room name required",
        ),
        (
            json!({"type": "room_message", "room": "nowhere", "message": "x", "id": 2}),
            "Room does not exist",
        ),
        (
            json!({"type": "room_message", "room": "taken", "message": "x", "id": 3}),
            "You are not in this room",
        ),
        (
            json!({"type": "private_message", "to": "client_0_99_99", "message": "x", "id": 4}),
            "Recipient not found",
        ),
        (
            json!({"type": "private_message", "to": "client_9_0_1", "message": "x", "id": 5}),
            "Recipient not found",
        ),
        (
            json!({"type": "private_message", "to": "bob", "message": "x", "id": 6}),
            "Recipient not found",
        ),
        (json!({"type": "fly", "id": 7}), "Unknown message type: fly"),
        (
            json!({"type": "join_room", "room": 12, "id": 8}),
            "Invalid message format",
        ),
    ];
    for (request, text) in cases {
        let id = request["id"].clone();
        sim.send(a, request);
        sim.settle();
        assert_eq!(
            sim.take(a),
            vec![json!({"type": "error", "message": text, "timestamp": NOW, "id": id})]
        );
    }
    sim.send_raw(a, "garbage");
    assert_eq!(
        sim.take(a),
        vec![json!({"type": "error", "message": "Invalid message format", "timestamp": NOW})]
    );
    assert!(sim.take(b).is_empty(), "errors go to the requester only");
}

#[test]
fn private_message_to_a_departed_client_on_another_core_is_not_found() {
    let mut sim = Sim::new(2, 5);
    let (a, b) = (sim.connect(0), sim.connect(1));
    let a_id = welcome_id(&mut sim, a);
    let b_id = welcome_id(&mut sim, b);
    sim.send(
        a,
        json!({"type": "private_message", "to": b_id, "message": "psst"}),
    );
    sim.settle();
    assert_eq!(
        sim.take(b),
        vec![json!({"type": "private_message", "from": a_id, "message": "psst", "timestamp": NOW})]
    );
    sim.close(b);
    // A new client on the same core may reuse the slot, never the id.
    let c = sim.connect(1);
    assert_eq!(c.slot, b.slot);
    sim.take(c);
    sim.send(
        a,
        json!({"type": "private_message", "to": b_id, "message": "late", "id": "q"}),
    );
    sim.settle();
    assert_eq!(
        sim.take(a),
        vec![
            json!({"type": "error", "message": "Recipient not found", "timestamp": NOW, "id": "q"})
        ]
    );
    assert!(sim.take(c).is_empty());
}

#[test]
fn broadcast_reaches_every_other_client_on_every_core() {
    let mut sim = Sim::new(3, 9);
    let conns: Vec<ConnId> = (0..6).map(|n| sim.connect(n % 3)).collect();
    let sender_id = welcome_id(&mut sim, conns[0]);
    for conn in &conns[1..] {
        sim.take(*conn);
    }
    sim.send(conns[0], json!({"type": "broadcast", "message": "all"}));
    sim.settle();
    assert!(sim.take(conns[0]).is_empty());
    for conn in &conns[1..] {
        assert_eq!(
            sim.take(*conn),
            vec![
                json!({"type": "broadcast", "from": sender_id, "message": "all", "timestamp": NOW})
            ]
        );
    }
}

#[test]
fn leaving_and_disconnecting_notify_the_rest_in_join_order_and_empty_rooms_vanish() {
    let mut sim = Sim::new(2, 11);
    let (a, b) = (sim.connect(0), sim.connect(1));
    let a_id = welcome_id(&mut sim, a);
    sim.take(b);
    for room in ["first", "second", "third"] {
        sim.send(a, json!({"type": "join_room", "room": room}));
        sim.send(b, json!({"type": "join_room", "room": room}));
        sim.settle();
    }
    sim.take(a);
    sim.take(b);
    sim.send(a, json!({"type": "leave_room", "room": "second"}));
    sim.send(a, json!({"type": "leave_room", "room": "second"}));
    sim.settle();
    assert_eq!(
        sim.take(b),
        vec![
            json!({"type": "member_left", "room": "second", "client_id": a_id, "total_members": 1})
        ]
    );
    sim.close(a);
    sim.settle();
    let left: Vec<Value> = sim.take(b);
    assert_eq!(
        left,
        vec![
            json!({"type": "member_left", "room": "first", "client_id": a_id, "total_members": 1}),
            json!({"type": "member_left", "room": "third", "client_id": a_id, "total_members": 1}),
        ]
    );
    sim.send(b, json!({"type": "leave_room", "room": "first"}));
    sim.settle();
    assert!(
        sim.take(b).is_empty(),
        "nothing is sent when a room becomes empty"
    );
    sim.send(
        b,
        json!({"type": "room_message", "room": "first", "message": "?"}),
    );
    sim.settle();
    assert_eq!(sim.take(b)[0]["message"], "Room does not exist");
    assert_eq!(
        sim.cores
            .iter()
            .map(|c| c.local_member_count("third"))
            .sum::<usize>(),
        1
    );
}

#[test]
fn metadata_merges_shallowly_and_answers_with_the_whole_object() {
    let mut sim = Sim::new(1, 1);
    let a = sim.connect(0);
    sim.take(a);
    sim.send(
        a,
        json!({"type": "set_metadata", "metadata": {"name": "ann", "tags": [1]}}),
    );
    sim.send(
        a,
        json!({"type": "set_metadata", "metadata": {"tags": {"x": 1}, "age": 3}, "id": "m"}),
    );
    let got = sim.take(a);
    assert_eq!(
        got[0],
        json!({"type": "metadata_updated", "metadata": {"name": "ann", "tags": [1]}})
    );
    assert_eq!(
        got[1],
        json!({"type": "metadata_updated", "metadata": {"name": "ann", "tags": {"x": 1}, "age": 3}, "id": "m"})
    );
}

/// The race the design exists for: a member that has seen `member_joined(J)` and then
/// speaks must reach J, with sender, joiner, home and members on different cores, in
/// every interleaving the seeds produce; and per-sender order holds across rooms.
#[test]
fn a_member_that_saw_the_join_reaches_the_joiner_and_order_holds_across_rooms() {
    for seed in 1..200 {
        let mut sim = Sim::new(4, seed);
        let member = sim.connect(1);
        let joiner = sim.connect(2);
        let member_id = welcome_id(&mut sim, member);
        sim.take(joiner);
        sim.send(member, json!({"type": "join_room", "room": "r1"}));
        sim.send(member, json!({"type": "join_room", "room": "r2"}));
        sim.settle();
        sim.take(member);
        sim.send(joiner, json!({"type": "join_room", "room": "r1"}));
        sim.send(joiner, json!({"type": "join_room", "room": "r2"}));
        // Step until the member has seen both joins, then speak at once.
        let mut seen = 0;
        while seen < 2 {
            assert!(
                sim.step(),
                "seed {seed}: the joins never reached the member"
            );
            seen += sim
                .take(member)
                .iter()
                .filter(|m| m["type"] == "member_joined")
                .count();
        }
        for n in 0..10 {
            let room = if n % 2 == 0 { "r1" } else { "r2" };
            sim.send(
                member,
                json!({"type": "room_message", "room": room, "message": n}),
            );
        }
        sim.settle();
        let got: Vec<Value> = sim
            .take(joiner)
            .into_iter()
            .filter(|m| m["type"] == "room_message")
            .collect();
        let order: Vec<i64> = got.iter().map(|m| m["message"].as_i64().unwrap()).collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>(), "seed {seed}");
        assert!(got.iter().all(|m| m["from"] == member_id));
    }
}

#[test]
fn counts_stay_exact_under_interleaved_joins_and_leaves_on_many_cores() {
    for seed in 1..50 {
        let mut sim = Sim::new(3, seed);
        let conns: Vec<ConnId> = (0..12).map(|n| sim.connect(n % 3)).collect();
        for conn in &conns {
            sim.take(*conn);
            sim.send(*conn, json!({"type": "join_room", "room": "busy"}));
        }
        for conn in &conns[..5] {
            sim.send(*conn, json!({"type": "leave_room", "room": "busy"}));
        }
        sim.settle();
        let home = home_of("busy", 3);
        let room = &sim.cores[home.index()].homed["busy"];
        assert_eq!(room.members, 7, "seed {seed}");
        let local: usize = sim.cores.iter().map(|c| c.local_member_count("busy")).sum();
        assert_eq!(local, 7, "seed {seed}");
        // The last member_joined or member_left anyone saw carries the final count.
        let last = conns[5..]
            .iter()
            .filter_map(|c| sim.take(*c).into_iter().last())
            .collect::<Vec<_>>();
        assert!(last
            .iter()
            .any(|m| m.get("total_members") == Some(&json!(7))
                || m.get("members") == Some(&json!(7))));
    }
}

#[test]
fn requests_over_a_client_limit_get_an_error_with_their_id_and_change_nothing() {
    let limits = ClientLimits {
        max_rooms: 2,
        max_room_name_bytes: 8,
        max_metadata_bytes: 40,
    };
    let mut sim = Sim::new(2, 9).with_limits(limits);
    let (a, b) = (sim.connect(0), sim.connect(1));
    sim.take(a);
    sim.take(b);
    let error =
        |text: &str, id: i32| json!({"type": "error", "message": text, "timestamp": NOW, "id": id});

    // Room names: 8 bytes of UTF-8 pass, 9 do not ("é" counts 2).
    sim.send(a, json!({"type": "join_room", "room": "12345678"}));
    sim.send(
        a,
        json!({"type": "join_room", "room": "1234567\u{e9}", "id": 1}),
    );
    sim.settle();
    let got = sim.take(a);
    assert_eq!(got[0]["type"], "room_joined");
    assert_eq!(got[1], error("Room name too long", 1));

    // Rooms per client: a second room passes, a third does not; joining one already
    // joined is still the silent no-op it was; after a leave there is room again.
    sim.send(a, json!({"type": "join_room", "room": "two"}));
    sim.send(a, json!({"type": "join_room", "room": "three", "id": 2}));
    sim.send(a, json!({"type": "join_room", "room": "two", "id": 3}));
    sim.settle();
    let got = sim.take(a);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1], error("Too many rooms", 2));
    sim.send(
        b,
        json!({"type": "room_message", "room": "three", "message": "x", "id": 4}),
    );
    sim.settle();
    assert_eq!(
        sim.take(b),
        vec![error("Room does not exist", 4)],
        "three was never made"
    );
    sim.send(a, json!({"type": "leave_room", "room": "two"}));
    sim.send(a, json!({"type": "join_room", "room": "three"}));
    sim.settle();
    assert_eq!(sim.take(a)[0]["type"], "room_joined");

    // Metadata: the merged object's JSON text is what counts; over it, the old stays.
    sim.send(
        a,
        json!({"type": "set_metadata", "metadata": {"name": "ann"}}),
    );
    sim.send(
        a,
        json!({"type": "set_metadata", "metadata": {"bio": "x".repeat(30)}, "id": 5}),
    );
    sim.send(
        a,
        json!({"type": "set_metadata", "metadata": {"name": "bo"}}),
    );
    let got = sim.take(a);
    assert_eq!(got[0]["metadata"], json!({"name": "ann"}));
    assert_eq!(got[1], error("Metadata too large", 5));
    assert_eq!(
        got[2]["metadata"],
        json!({"name": "bo"}),
        "the refused key was not kept"
    );
}

#[test]
fn a_client_in_20000_rooms_on_one_core_leaves_them_all_without_recursing() {
    // Each leave used to handle the next one in a nested call: 20,000 frames deep.
    // Run on a small thread stack, so recursion would overflow it.
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let limits = ClientLimits {
                max_rooms: 20_000,
                ..ClientLimits::default()
            };
            let mut sim = Sim::new(1, 1).with_limits(limits);
            let (a, b) = (sim.connect(0), sim.connect(0));
            for n in 0..20_000 {
                sim.send(a, json!({"type": "join_room", "room": format!("r{n}")}));
            }
            sim.send(b, json!({"type": "join_room", "room": "r19999"}));
            sim.settle();
            sim.take(b);
            sim.close(a);
            sim.settle();
            assert_eq!(sim.cores[0].home_member_count("r0"), 0);
            assert_eq!(sim.cores[0].home_member_count("r19999"), 1);
            assert_eq!(sim.cores[0].local_member_count("r19999"), 1);
            let got = sim.take(b);
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0]["type"], "member_left");
            assert_eq!(got[0]["total_members"], 1);
        })
        .unwrap()
        .join()
        .expect("no stack overflow, every room left");
}

#[test]
fn a_non_members_room_message_is_answered_as_the_rooms_home_knows_it() {
    // The room's home is core 1; the outsider is on core 0, whose replica of the room's
    // core set learns of the room's end only later.
    let room = (0..)
        .map(|n| format!("r{n}"))
        .find(|r| home_of(r, 2).index() == 1)
        .unwrap();
    for seed in 1..20 {
        let mut sim = Sim::new(2, seed);
        let (member, outsider) = (sim.connect(0), sim.connect(0));
        sim.take(member);
        sim.take(outsider);
        sim.send(member, json!({"type": "join_room", "room": room}));
        sim.settle();
        sim.take(member);
        let message = json!({"type": "room_message", "room": room, "message": "x", "id": 1});
        sim.send(outsider, message.clone());
        sim.settle();
        assert_eq!(sim.take(outsider)[0]["message"], "You are not in this room");
        sim.send(member, json!({"type": "leave_room", "room": room}));
        // Before the core set's update can reach core 0.
        sim.send(outsider, message);
        sim.settle();
        let got = sim.take(outsider);
        assert_eq!(got[0]["message"], "Room does not exist", "seed {seed}");
        assert_eq!(got[0]["id"], 1);
    }
}

mod history;
mod identity;
