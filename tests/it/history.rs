//! Room history and recovery (issue 13) on a stand-alone server, on one core and on
//! two: every `room_message` carries the room's next offset, `room_joined` the room's
//! epoch and latest offset, and a join that asks to `recover` from a position gets
//! `recovered: true` and exactly the messages it missed, in order, before anything
//! live, or `recovered: false` and nothing but live messages. `room_joined` is compared
//! as the exact text the server sent (its field order included); every other message
//! whole as JSON, offsets named. "Nothing more" is proved by a live message (or the
//! probes' markers, [`Rooms::assert_quiet`]) being the very next thing a client gets.
//!
//! The cluster's side of the same promises is in `cluster::history`, which shares the
//! helpers below.

use std::time::Instant;

use serde_json::{json, Value};

use crate::rooms::{
    leave_room, member_joined, member_left, private_from, room_message_from, send_private,
    send_to_room, RoomClient, Rooms, Setup, TS,
};
use crate::WAIT;

/// A room member as these tests drive it: a stand-alone server's [`RoomClient`] or a
/// cluster node's client.
pub trait Member {
    fn id(&self) -> &str;
    fn send(&mut self, request: &Value);
    /// Sends `requests` in one write.
    fn send_burst(&mut self, requests: &[Value]);
    /// The next message as JSON, within [`WAIT`].
    fn recv(&mut self) -> Value;
    /// The next message as the exact text the server sent, within [`WAIT`].
    fn recv_text(&mut self) -> String;
    /// The next message must be `expected` (see [`TS`]).
    fn expect(&mut self, expected: &Value);
}

impl Member for RoomClient {
    fn id(&self) -> &str {
        &self.id
    }

    fn send(&mut self, request: &Value) {
        RoomClient::send(self, request);
    }

    fn send_burst(&mut self, requests: &[Value]) {
        RoomClient::send_burst(self, requests);
    }

    fn recv(&mut self) -> Value {
        RoomClient::recv(self)
    }

    fn recv_text(&mut self) -> String {
        let raw = self
            .recv_raw_until(Instant::now() + WAIT)
            .unwrap_or_else(|| panic!("{}: no message within {WAIT:?}", self.id));
        String::from_utf8(raw.to_vec()).expect("server text is UTF-8")
    }

    fn expect(&mut self, expected: &Value) {
        RoomClient::expect(self, expected);
    }
}

/// Runs `fn $name(cores: usize)` as `$name::one_core` and `$name::two_cores`.
/// `#[two_cores(...)]` adds an attribute to the second (e.g. `ignore = "history bug:
/// ..."` on a test that pins a bug not yet fixed).
macro_rules! on_one_and_two_cores {
    ($( $(#[two_cores($two:meta)])? $name:ident ),* $(,)?) => {$(
        mod $name {
            #[test]
            fn one_core() {
                super::$name(1);
            }

            #[test]
            $(#[$two])?
            fn two_cores() {
                super::$name(2);
            }
        }
    )*};
}

on_one_and_two_cores!(
    a_dropped_member_recovers_exactly_what_it_missed_then_goes_live,
    a_stale_epoch_or_a_future_offset_recovers_nothing_then_goes_live,
    missing_more_than_history_size_recovers_nothing,
    recovery_racing_a_stream_of_live_messages_has_no_gap_and_no_duplicate,
    offsets_are_one_total_order_of_the_rooms_messages,
    one_senders_room_and_private_messages_arrive_in_the_order_sent,
    with_history_off_offsets_are_given_and_only_the_latest_offset_recovers,
    a_room_everyone_left_still_recovers_what_was_missed,
);

/// `join_room` asking to recover what came after `(epoch, offset)`.
pub fn recover(room: &str, epoch: &str, offset: u64) -> Value {
    json!({"type": "join_room", "room": room, "recover": {"epoch": epoch, "offset": offset}})
}

/// A `room_message` as members get it: numbered `offset` (see [`TS`]).
pub fn numbered(offset: u64, room: &str, from: &str, message: Value) -> Value {
    let mut expected = room_message_from(room, from, message);
    expected["offset"] = json!(offset);
    expected
}

/// An expected `room_joined`, checked as the exact text the server sends, fields in
/// PROTOCOL.md's order: `type, room, members, epoch, offset, recovered, id`.
pub struct Joined<'a> {
    room: &'a str,
    members: usize,
    offset: u64,
    /// The epoch it must name; any (non-empty) when `None`.
    epoch: Option<&'a str>,
    recovered: Option<bool>,
    id: Option<u64>,
}

impl<'a> Joined<'a> {
    pub fn new(room: &'a str, members: usize, offset: u64) -> Joined<'a> {
        Joined {
            room,
            members,
            offset,
            epoch: None,
            recovered: None,
            id: None,
        }
    }

    pub fn epoch(self, epoch: &'a str) -> Joined<'a> {
        Joined {
            epoch: Some(epoch),
            ..self
        }
    }

    pub fn recovered(self, recovered: bool) -> Joined<'a> {
        Joined {
            recovered: Some(recovered),
            ..self
        }
    }

    pub fn id(self, id: u64) -> Joined<'a> {
        Joined {
            id: Some(id),
            ..self
        }
    }

    /// Checks `text` is exactly this `room_joined`; its epoch.
    pub fn check(&self, who: &str, text: &str) -> String {
        let value: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{who}: invalid JSON ({e}): {text}"));
        let epoch = value["epoch"].as_str().unwrap_or_default().to_string();
        assert!(
            !epoch.is_empty(),
            "{who}: a room_joined with an epoch, got {text}"
        );
        if let Some(expected) = self.epoch {
            assert_eq!(epoch, expected, "{who}: the room's epoch in {text}");
        }
        let mut expected = format!(
            r#"{{"type":"room_joined","room":"{}","members":{},"epoch":"{epoch}","offset":{}"#,
            self.room, self.members, self.offset
        );
        if let Some(recovered) = self.recovered {
            expected += &format!(r#","recovered":{recovered}"#);
        }
        if let Some(id) = self.id {
            expected += &format!(r#","id":{id}"#);
        }
        expected += "}";
        assert_eq!(text, expected, "{who}: not the room_joined expected");
        epoch
    }

    /// The client's next message must be this `room_joined`; its epoch.
    pub fn expect(&self, client: &mut impl Member) -> String {
        let text = client.recv_text();
        self.check(client.id(), &text)
    }
}

/// `client` joins `room` (asking nothing) after `others`, which see it join; the room
/// is at `offset`. The room's epoch.
pub fn join_seen<M: Member>(
    client: &mut M,
    room: &str,
    offset: u64,
    others: &mut [&mut M],
) -> String {
    client.send(&json!({"type": "join_room", "room": room}));
    let members = others.len() + 1;
    let epoch = Joined::new(room, members, offset).expect(client);
    for other in others.iter_mut() {
        other.expect(&member_joined(room, client.id(), members));
    }
    epoch
}

/// `client` joins `room`, which has `members` after the join and is at `offset`: the
/// room's epoch.
fn join(client: &mut RoomClient, room: &str, members: usize, offset: u64) -> String {
    client.send(&json!({"type": "join_room", "room": room}));
    Joined::new(room, members, offset).expect(client)
}

/// `client` joins `joined.room` recovering from `from`, after `others` (who see it
/// join): it must get `joined`, then the `replayed` messages.
pub fn recover_seen<M: Member>(
    client: &mut M,
    from: (&str, u64),
    joined: Joined<'_>,
    replayed: &[Value],
    others: &mut [&mut M],
) {
    client.send(&recover(joined.room, from.0, from.1));
    joined.expect(client);
    for message in replayed {
        client.expect(message);
    }
    // (What it recovered came right behind room_joined, so this is what is next.)
    for other in others.iter_mut() {
        other.expect(&member_joined(joined.room, client.id(), joined.members));
    }
}

/// `from` sends `messages` (in one write) numbered from `first`; each of `to` gets them.
pub fn send_numbered<M: Member>(
    from: &mut M,
    room: &str,
    first: u64,
    messages: &[Value],
    to: &mut [&mut M],
) {
    let requests: Vec<Value> = messages
        .iter()
        .map(|m| send_to_room(room, m.clone()))
        .collect();
    from.send_burst(&requests);
    for member in to.iter_mut() {
        for (n, message) in messages.iter().enumerate() {
            member.expect(&numbered(
                first + n as u64,
                room,
                from.id(),
                message.clone(),
            ));
        }
    }
}

/// Each of `others` sees `id` leave `room`.
pub fn seen_leaving<M: Member>(id: &str, room: &str, others: &mut [&mut M]) {
    let remaining = others.len();
    for other in others.iter_mut() {
        other.expect(&member_left(room, id, remaining));
    }
}

/// The texts `"<tag> <n>"` for `n` in `range`, as JSON strings.
pub fn texts(tag: &str, range: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    range.map(|n| json!(format!("{tag} {n}"))).collect()
}

// Where a join must come after messages nobody else reads, a witness member reads
// them: once it has the last one, the room's home has numbered them all.

/// B sees messages 1..=3, drops its connection (FIN), misses 4..=6, and a new
/// connection (on the other core, with two) recovers exactly those, then goes live.
/// Once with the room homed on each core.
fn a_dropped_member_recovers_exactly_what_it_missed_then_goes_live(cores: usize) {
    let mut rooms = Rooms::start(Setup::Cores(cores));
    for home in 0..cores {
        let room = rooms.room_on(home, "dropped");
        let mut a = rooms.client_on(0);
        let mut witness = rooms.client_on(0);
        let mut b = rooms.client_on(1 % cores);
        let epoch = join_seen(&mut a, &room, 0, &mut []);
        join_seen(&mut witness, &room, 0, &mut [&mut a]);
        join_seen(&mut b, &room, 0, &mut [&mut a, &mut witness]);
        let seen = texts("seen", 1..=3);
        send_numbered(&mut a, &room, 1, &seen, &mut [&mut witness, &mut b]);

        let b_id = b.id.clone();
        drop(b);
        seen_leaving(&b_id, &room, &mut [&mut a, &mut witness]);
        send_numbered(
            &mut a,
            &room,
            4,
            &texts("missed", 4..=6),
            &mut [&mut witness],
        );

        let mut b = rooms.client_on(0);
        let mut request = recover(&room, &epoch, 3);
        request["id"] = json!(7);
        b.send(&request);
        let joined = Joined::new(&room, 3, 6).epoch(&epoch).recovered(true).id(7);
        joined.expect(&mut b);
        for (n, message) in (4..=6).zip(texts("missed", 4..=6)) {
            b.expect(&numbered(n, &room, &a.id, message));
        }
        for member in [&mut a, &mut witness] {
            member.expect(&member_joined(&room, &b.id, 3));
        }
        let live = texts("live", 7..=7);
        send_numbered(&mut a, &room, 7, &live, &mut [&mut witness, &mut b]);
        rooms.assert_quiet([&mut a, &mut witness, &mut b]);
    }
}

/// Recovering from another epoch, or from an offset the room has not reached, gets
/// `recovered: false`, the room's real position, and then only live messages.
fn a_stale_epoch_or_a_future_offset_recovers_nothing_then_goes_live(cores: usize) {
    let mut rooms = Rooms::start(Setup::Cores(cores));
    let room = rooms.room_on(cores - 1, "stale");
    let mut a = rooms.client_on(0);
    let mut witness = rooms.client_on(1 % cores);
    let epoch = join_seen(&mut a, &room, 0, &mut []);
    join_seen(&mut witness, &room, 0, &mut [&mut a]);
    send_numbered(&mut a, &room, 1, &texts("m", 1..=3), &mut [&mut witness]);
    // At the n-th join the room is at n - 1.
    let asks = |n: u64| match n {
        4 => ("not-the-epoch".to_string(), 3),
        5 => (String::new(), 0),
        6 => (epoch.clone(), n),
        _ => (epoch.clone(), n + 1000),
    };
    for n in 4..=7 {
        let (asked_epoch, asked_offset) = asks(n);
        let mut b = rooms.client_on(n as usize % cores);
        b.send(&recover(&room, &asked_epoch, asked_offset));
        let joined = Joined::new(&room, 3, n - 1).epoch(&epoch).recovered(false);
        joined.expect(&mut b);
        for member in [&mut a, &mut witness] {
            member.expect(&member_joined(&room, &b.id, 3));
        }
        let live = [json!({ "live": n })];
        send_numbered(&mut a, &room, n, &live, &mut [&mut witness, &mut b]);
        let b_id = b.id.clone();
        b.into_ws().reset();
        seen_leaving(&b_id, &room, &mut [&mut a, &mut witness]);
    }
    rooms.assert_quiet([&mut a, &mut witness]);
}

/// With `history_size = 4`: who missed 6 (or 5) recovers nothing; who missed exactly 4
/// gets all 4.
fn missing_more_than_history_size_recovers_nothing(cores: usize) {
    let mut rooms = Rooms::start_with(Setup::Cores(cores), |c| c.history_size = 4);
    let room = rooms.room_on(0, "overflow");
    let mut a = rooms.client_on(0);
    let mut witness = rooms.client_on(1 % cores);
    let epoch = join_seen(&mut a, &room, 0, &mut []);
    join_seen(&mut witness, &room, 0, &mut [&mut a]);
    send_numbered(&mut a, &room, 1, &texts("m", 1..=8), &mut [&mut witness]);
    let kept: Vec<Value> = (5..=8)
        .zip(texts("m", 5..=8))
        .map(|(n, message)| numbered(n, &room, &a.id, message))
        .collect();
    // Recovering from 2 misses 3..=8, from 3 misses 4..=8: more than the 4 kept;
    // from 4 it misses 5..=8, all kept.
    let mut members = vec![a, witness];
    for (from, recovered) in [(2, false), (3, false), (4, true)] {
        let mut b = rooms.client_on(from as usize % cores);
        let joined = Joined::new(&room, members.len() + 1, 8).epoch(&epoch);
        let replayed = if recovered { &kept[..] } else { &[] };
        let mut others: Vec<&mut RoomClient> = members.iter_mut().collect();
        let from = (epoch.as_str(), from);
        recover_seen(
            &mut b,
            from,
            joined.recovered(recovered),
            replayed,
            &mut others,
        );
        members.push(b);
    }
    let (a, to) = members.split_first_mut().expect("a first");
    let mut to: Vec<&mut RoomClient> = to.iter_mut().collect();
    send_numbered(a, &room, 9, &texts("live", 9..=9), &mut to);
    rooms.assert_quiet(members.iter_mut());
}

/// One round of a stream racing a recovering join: `a`, the room's only other member,
/// sends `stream` messages in two writes; `b` sends its join recovering from `seen`
/// (the room's latest offset, which the previous round's `b` saw) between the two,
/// after the first `split`. `b` must get `room_joined` at an offset within the
/// stream, then every offset from `seen + 1` to the last `a` sent, once each and in
/// order, whichever way the race went; `a` sees it join. The offset it joined at.
pub fn recover_racing_a_stream<M: Member>(
    (a, b): (&mut M, &mut M),
    (room, epoch): (&str, &str),
    seen: u64,
    (split, stream): (usize, u64),
) -> u64 {
    let tag = format!("{seen}+{split}");
    let messages: Vec<Value> = (1..=stream)
        .map(|n| send_to_room(room, json!({ "race": tag, "n": n })))
        .collect();
    if split > 0 {
        a.send_burst(&messages[..split]);
    }
    b.send(&recover(room, epoch, seen));
    if split < messages.len() {
        a.send_burst(&messages[split..]);
    }
    let text = b.recv_text();
    let at = serde_json::from_str::<Value>(&text).expect("JSON")["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("an offset in {text}"));
    assert!(
        (seen..=seen + stream).contains(&at),
        "{tag}: joined at {at}, outside the stream {seen}..={}",
        seen + stream
    );
    Joined::new(room, 2, at)
        .epoch(epoch)
        .recovered(true)
        .check(b.id(), &text);
    for n in 1..=stream {
        let message = json!({ "race": tag, "n": n });
        b.expect(&numbered(seen + n, room, a.id(), message));
    }
    a.expect(&member_joined(room, b.id(), 2));
    at
}

/// The joins in [`recover_racing_a_stream`]'s rounds: before the first message, in
/// the stream, after the last (of 200).
pub const RACE_SPLITS: [usize; 8] = [0, 1, 7, 50, 100, 150, 199, 200];

/// A stream of 200 messages from A with B's recovering join sent at points through it
/// (see [`recover_racing_a_stream`]), no gap and no duplicate, then nothing more.
/// Rounds on both homes, B on alternating cores.
fn recovery_racing_a_stream_of_live_messages_has_no_gap_and_no_duplicate(cores: usize) {
    const STREAM: u64 = 200;
    let mut rooms = Rooms::start_with(Setup::Cores(cores), |c| c.history_size = 1024);
    for home in 0..cores {
        let room = rooms.room_on(home, "race");
        let mut a = rooms.client_on(0);
        let epoch = join(&mut a, &room, 1, 0);
        for (round, split) in RACE_SPLITS.into_iter().enumerate() {
            let mut b = rooms.client_on(round % cores);
            let seen = round as u64 * STREAM;
            let clients = (&mut a, &mut b);
            recover_racing_a_stream(clients, (&room, &epoch), seen, (split, STREAM));
            rooms.assert_quiet([&mut b]);
            let b_id = b.id.clone();
            drop(b);
            seen_leaving(&b_id, &room, &mut [&mut a]);
        }
    }
}

/// Two senders send `each` messages to `room`, interleaved in bursts of 10, with
/// `reader` and the senders its only members. The reader sees offsets `1..=2 * each`
/// in order, each sender's messages in the order sent; each sender sees the other's
/// messages under the offsets the reader saw.
pub fn one_order_of_two_senders<M: Member>(
    room: &str,
    senders: [&mut M; 2],
    reader: &mut M,
    each: u64,
) {
    let [first, second] = senders;
    for chunk in 0..each.div_ceil(10) {
        for sender in [&mut *first, &mut *second] {
            let burst: Vec<Value> = (chunk * 10 + 1..=(chunk * 10 + 10).min(each))
                .map(|n| send_to_room(room, json!(n)))
                .collect();
            sender.send_burst(&burst);
        }
    }
    let ids = [first.id().to_string(), second.id().to_string()];
    // Which sender's message got each offset, as the reader saw it.
    let mut order = Vec::new();
    let mut next = [1, 1];
    for offset in 1..=2 * each {
        let message = reader.recv();
        let from = message["from"].as_str().unwrap_or_default();
        let sender = ids
            .iter()
            .position(|id| id == from)
            .unwrap_or_else(|| panic!("offset {offset}: a message from a sender, got {message}"));
        let expected = numbered(offset, room, from, json!(next[sender]));
        let mut actual = message.clone();
        assert!(actual["timestamp"].is_u64(), "a timestamp in {message}");
        actual["timestamp"] = json!(TS);
        assert_eq!(actual, expected, "the reader's message at offset {offset}");
        next[sender] += 1;
        order.push(sender);
    }
    for (me, sender) in [first, second].into_iter().enumerate() {
        let other = 1 - me;
        let offsets = (1..=2 * each).filter(|o| order[*o as usize - 1] == other);
        for (n, offset) in (1..).zip(offsets) {
            sender.expect(&numbered(offset, room, &ids[other], json!(n)));
        }
    }
}

/// Two senders (one per core) send 50 messages each to a room homed on either core: a
/// reader and the senders see one order (see [`one_order_of_two_senders`]).
fn offsets_are_one_total_order_of_the_rooms_messages(cores: usize) {
    let mut rooms = Rooms::start(Setup::Cores(cores));
    for home in 0..cores {
        let room = rooms.room_on(home, "order");
        let mut s0 = rooms.client_on(0);
        let mut s1 = rooms.client_on(1 % cores);
        let mut reader = rooms.client_on(1 % cores);
        join_seen(&mut reader, &room, 0, &mut []);
        join_seen(&mut s0, &room, 0, &mut [&mut reader]);
        join_seen(&mut s1, &room, 0, &mut [&mut reader, &mut s0]);
        one_order_of_two_senders(&room, [&mut s0, &mut s1], &mut reader, 50);
        rooms.assert_quiet([&mut s0, &mut s1, &mut reader]);
    }
}

/// A sender in two rooms (homed on different cores, with two) alternates room
/// messages to each with private messages to a reader in both: the reader gets them
/// in the order sent. From each core to a reader on the other.
fn one_senders_room_and_private_messages_arrive_in_the_order_sent(cores: usize) {
    const ROUNDS: u64 = 60;
    let mut rooms = Rooms::start(Setup::Cores(cores));
    for sender_core in 0..cores {
        let room_names = [
            rooms.room_on(sender_core, "mine"),
            rooms.room_on((sender_core + 1) % cores, "theirs"),
        ];
        let mut sender = rooms.client_on(sender_core);
        let mut reader = rooms.client_on((sender_core + 1) % cores);
        for room in &room_names {
            join(&mut reader, room, 1, 0);
            join(&mut sender, room, 2, 0);
            reader.expect(&member_joined(room, &sender.id, 2));
        }
        let mut requests = Vec::new();
        let mut expected = Vec::new();
        for n in 1..=ROUNDS {
            let room = &room_names[n as usize % 2];
            let (first, second) = (json!({ "room": n }), json!({ "private": n }));
            requests.push(send_to_room(room, first.clone()));
            requests.push(send_private(&reader.id, second.clone()));
            let offset = n.div_ceil(2);
            expected.push(numbered(offset, room, &sender.id, first));
            expected.push(private_from(&sender.id, second));
        }
        sender.send_burst(&requests);
        for message in &expected {
            reader.expect(message);
        }
        rooms.assert_quiet([&mut sender, &mut reader]);
    }
}

/// With `history_size = 0` rooms still number their messages and have an epoch; a
/// join recovering from the latest offset is `recovered: true` with nothing to replay,
/// one recovering from anything earlier is `recovered: false`.
fn with_history_off_offsets_are_given_and_only_the_latest_offset_recovers(cores: usize) {
    let mut rooms = Rooms::start_with(Setup::Cores(cores), |c| c.history_size = 0);
    let room = rooms.room_on(cores - 1, "off");
    let mut a = rooms.client_on(0);
    let mut witness = rooms.client_on(1 % cores);
    let mut b = rooms.client_on(1 % cores);
    let epoch = join_seen(&mut a, &room, 0, &mut []);
    join_seen(&mut witness, &room, 0, &mut [&mut a]);
    join_seen(&mut b, &room, 0, &mut [&mut a, &mut witness]);
    send_numbered(
        &mut a,
        &room,
        1,
        &texts("m", 1..=3),
        &mut [&mut witness, &mut b],
    );
    let b_id = b.id.clone();
    b.into_ws().reset();
    seen_leaving(&b_id, &room, &mut [&mut a, &mut witness]);
    send_numbered(&mut a, &room, 4, &texts("m", 4..=5), &mut [&mut witness]);

    let mut members = vec![a, witness];
    for (from, recovered) in [(5, true), (3, false), (4, false)] {
        let mut c = rooms.client_on(from as usize % cores);
        let joined = Joined::new(&room, members.len() + 1, 5).epoch(&epoch);
        let mut others: Vec<&mut RoomClient> = members.iter_mut().collect();
        let from = (epoch.as_str(), from);
        recover_seen(&mut c, from, joined.recovered(recovered), &[], &mut others);
        members.push(c);
    }
    let (a, to) = members.split_first_mut().expect("a first");
    let mut to: Vec<&mut RoomClient> = to.iter_mut().collect();
    send_numbered(a, &room, 6, &texts("live", 6..=6), &mut to);
    rooms.assert_quiet(members.iter_mut());
}

/// A room whose members all left keeps its history (for `history_ttl_s`): B drops
/// after 1..=2, A sends 3..=5 and leaves, and B's new connection still recovers 3..=5
/// as the room's only member, then a new member's messages go on from 6. B's join goes
/// in one write behind a private message to a client of another core (with two),
/// whose outcome holds B's replies: `room_joined` and what it recovered wait behind it.
fn a_room_everyone_left_still_recovers_what_was_missed(cores: usize) {
    let mut rooms = Rooms::start(Setup::Cores(cores));
    let room = rooms.room_on(cores - 1, "emptied");
    let mut a = rooms.client_on(0);
    let mut b = rooms.client_on(1 % cores);
    let epoch = join_seen(&mut a, &room, 0, &mut []);
    join_seen(&mut b, &room, 0, &mut [&mut a]);
    send_numbered(&mut a, &room, 1, &texts("m", 1..=2), &mut [&mut b]);
    let b_id = b.id.clone();
    drop(b);
    seen_leaving(&b_id, &room, &mut [&mut a]);
    send_numbered(&mut a, &room, 3, &texts("m", 3..=5), &mut []);
    a.send(&leave_room(&room));
    a.sync(); // (a fence: A's core has handled the leave, sent after the messages)

    let mut b = rooms.client_on(0);
    let other = rooms.client_on(1 % cores);
    b.send_burst(&[
        send_private(&other.id, json!("first")),
        recover(&room, &epoch, 2),
    ]);
    let missed = (3..=5).zip(texts("m", 3..=5));
    let replayed: Vec<Value> = missed.map(|(n, m)| numbered(n, &room, &a.id, m)).collect();
    let joined = Joined::new(&room, 1, 5).epoch(&epoch).recovered(true);
    joined.expect(&mut b);
    for message in &replayed {
        b.expect(message);
    }
    let mut c = rooms.client_on(1 % cores);
    join_seen(&mut c, &room, 5, &mut [&mut b]);
    send_numbered(&mut c, &room, 6, &texts("m", 6..=6), &mut [&mut b]);
    rooms.assert_quiet([&mut b, &mut c]);
}

/// Regression test (a bug found by this test, fixed in `gate.rs`): on two cores, a sender on core 0
/// in room `away` (homed on core 1) and room `here` (homed on core 0) sends, in one
/// write, a room message to `away`, one to `here`, then a third message: a private
/// message, a broadcast, or another room message to `away`. A reader on core 1 in both
/// rooms must get the three in the order sent; each kind of third message is tried
/// on fresh rooms, and every outcome is shown if any is out of order.
#[test]
fn a_held_room_message_to_the_senders_own_core_is_not_overtaken() {
    let mut rooms = Rooms::start(Setup::Cores(2));
    let mut sender = rooms.client_on(0);
    let mut reader = rooms.client_on(1);
    let mut outcomes = Vec::new();
    for third in ["private", "broadcast", "room"] {
        let (away, here) = (rooms.room_on(1, third), rooms.room_on(0, third));
        for room in [&away, &here] {
            join(&mut reader, room, 1, 0);
            join(&mut sender, room, 2, 0);
            reader.expect(&member_joined(room, &sender.id, 2));
        }
        let (request, delivered) = match third {
            "private" => (
                send_private(&reader.id, json!(3)),
                private_from(&sender.id, json!(3)),
            ),
            "broadcast" => (
                json!({"type": "broadcast", "message": 3}),
                json!({"type": "broadcast", "from": sender.id, "message": 3, "timestamp": TS}),
            ),
            _ => (
                send_to_room(&away, json!(3)),
                numbered(2, &away, &sender.id, json!(3)),
            ),
        };
        let sent = [
            send_to_room(&away, json!(1)),
            send_to_room(&here, json!(2)),
            request,
        ];
        sender.send_burst(&sent);
        let expected = vec![
            numbered(1, &away, &sender.id, json!(1)),
            numbered(1, &here, &sender.id, json!(2)),
            delivered,
        ];
        let got: Vec<Value> = (0..3)
            .map(|_| {
                let mut message = reader.recv();
                message["timestamp"] = json!(TS);
                message
            })
            .collect();
        if got != expected {
            outcomes.push(format!("third message a {third}: got {got:?}"));
        }
        rooms.assert_quiet([&mut sender, &mut reader]);
    }
    assert!(
        outcomes.is_empty(),
        "out of order:\n{}",
        outcomes.join("\n")
    );
}
