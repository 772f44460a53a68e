//! Room history across a cluster (issue 13): three in-process nodes of one core each
//! over one `redis-server`, where Redis numbers a room's messages and keeps its
//! history. A member that drops recovers exactly what it missed through a different
//! node than the one it left; a stale epoch or an overflowed history recovers nothing;
//! a recovering join racing a sender on a third node has no gap and no duplicate; and
//! messages from senders on two nodes reach a member on the third as one contiguous
//! order. The checks are `crate::history`'s, over [`NodeClient`].

use std::time::Instant;

use ringcast::config::Config;
use ringcast::ws::{Incoming, Opcode};
use serde_json::{json, Value};

use super::NodeClient;
use crate::history::{
    join_seen, numbered, one_order_of_two_senders, recover, recover_racing_a_stream, recover_seen,
    seen_leaving, send_numbered, texts, Joined, Member, RACE_SPLITS,
};
use crate::redis::RedisServer;
use crate::rooms::{leave_room, member_joined, private_from, send_private};
use crate::{start_node, Server, WAIT};

impl Member for NodeClient {
    fn id(&self) -> &str {
        &self.id
    }

    fn send(&mut self, request: &Value) {
        NodeClient::send(self, request);
    }

    fn send_burst(&mut self, requests: &[Value]) {
        let texts: Vec<String> = requests.iter().map(Value::to_string).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.ws.send_texts_at_once(&texts);
    }

    fn recv(&mut self) -> Value {
        NodeClient::recv(self)
    }

    fn recv_text(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.ws.recv_until(deadline) {
                Ok(Incoming::Text(payload)) => {
                    return String::from_utf8(payload.to_vec()).expect("server text is UTF-8")
                }
                Ok(Incoming::Ping(payload)) => self.ws.send(Opcode::Pong, &payload),
                Ok(Incoming::Pong(_)) => {}
                other => panic!("{}: expected a message, got {other:?}", self.id),
            }
        }
    }

    fn expect(&mut self, expected: &Value) {
        NodeClient::expect(self, expected);
    }
}

/// Three nodes of one core over `redis`, each with `tweak`.
fn three_nodes(redis: &RedisServer, tweak: impl Fn(&mut Config)) -> [Server; 3] {
    std::array::from_fn(|_| start_node(&redis.url(), 1, &tweak))
}

/// Nothing is queued for `clients` beyond what the test read: a private message from
/// `from` to each must be the next thing it gets (`from` sent everything else first).
fn assert_quiet(from: &mut NodeClient, clients: &mut [&mut NodeClient]) {
    for client in clients.iter_mut() {
        let marker = json!({ "quiet": client.id });
        from.send(&send_private(&client.id, marker.clone()));
        client.expect(&private_from(&from.id, marker));
    }
}

/// A on node 1 and a witness and B on node 2; B sees 1..=3, drops, misses 4..=6, and
/// recovers them through node 3 (which had no member of the room), then goes live;
/// it drops again, misses 8..=9 and recovers them through node 1, the sender's node.
#[test]
fn a_member_recovers_what_it_missed_through_a_different_node_then_goes_live() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&redis, |_| {});
    let room = "dropped";
    let mut a = NodeClient::connect(nodes[0].addr());
    let mut witness = NodeClient::connect(nodes[1].addr());
    let mut b = NodeClient::connect(nodes[1].addr());
    let epoch = join_seen(&mut a, room, 0, &mut []);
    join_seen(&mut witness, room, 0, &mut [&mut a]);
    join_seen(&mut b, room, 0, &mut [&mut a, &mut witness]);
    send_numbered(
        &mut a,
        room,
        1,
        &texts("seen", 1..=3),
        &mut [&mut witness, &mut b],
    );

    let mut seen = 3;
    for (node, missed) in [(2, 4..=6), (0, 8..=9)] {
        let b_id = b.id.clone();
        drop(b);
        seen_leaving(&b_id, room, &mut [&mut a, &mut witness]);
        let (first, last) = (*missed.start(), *missed.end());
        send_numbered(
            &mut a,
            room,
            first,
            &texts("missed", missed.clone()),
            &mut [&mut witness],
        );

        b = NodeClient::connect(nodes[node].addr());
        let mut request = recover(room, &epoch, seen);
        request["id"] = json!(first);
        b.send(&request);
        let joined = Joined::new(room, 3, last).epoch(&epoch).recovered(true);
        joined.id(first).expect(&mut b);
        for (n, message) in missed.clone().zip(texts("missed", missed)) {
            b.expect(&numbered(n, room, &a.id, message));
        }
        for member in [&mut a, &mut witness] {
            member.expect(&member_joined(room, &b.id, 3));
        }
        let live = texts("live", last + 1..=last + 1);
        send_numbered(&mut a, room, last + 1, &live, &mut [&mut witness, &mut b]);
        seen = last + 1;
    }
    assert_quiet(&mut a, &mut [&mut witness, &mut b]);
}

/// With `history_size = 4` on every node: recovering from another epoch, from an
/// offset the room has not reached, or past what is kept (missed 6 or 5) is
/// `recovered: false` with nothing replayed; missing exactly 4 recovers all 4, and
/// missing nothing recovers nothing to replay. Each joiner on another node than the
/// last.
#[test]
fn a_stale_epoch_a_future_offset_or_an_overflowed_history_recovers_nothing() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&redis, |c| c.history_size = 4);
    let room = "overflow";
    let mut a = NodeClient::connect(nodes[0].addr());
    let mut witness = NodeClient::connect(nodes[1].addr());
    let epoch = join_seen(&mut a, room, 0, &mut []);
    join_seen(&mut witness, room, 0, &mut [&mut a]);
    send_numbered(&mut a, room, 1, &texts("m", 1..=8), &mut [&mut witness]);
    let kept: Vec<Value> = (5..=8)
        .zip(texts("m", 5..=8))
        .map(|(n, message)| numbered(n, room, &a.id, message))
        .collect();

    let asks = [
        ("not-the-epoch", 8, false),
        (epoch.as_str(), 9, false),
        (epoch.as_str(), 1000, false),
        (epoch.as_str(), 2, false),
        (epoch.as_str(), 3, false),
        (epoch.as_str(), 4, true),
        (epoch.as_str(), 8, true),
    ];
    let mut members = vec![a, witness];
    for (n, (asked_epoch, from, recovered)) in asks.into_iter().enumerate() {
        let mut b = NodeClient::connect(nodes[(n + 2) % 3].addr());
        let joined = Joined::new(room, members.len() + 1, 8).epoch(&epoch);
        let replayed = if recovered {
            &kept[(from as usize - 4)..]
        } else {
            &[]
        };
        let mut others: Vec<&mut NodeClient> = members.iter_mut().collect();
        let joined = joined.recovered(recovered);
        recover_seen(&mut b, (asked_epoch, from), joined, replayed, &mut others);
        members.push(b);
    }
    let (a, to) = members.split_first_mut().expect("a first");
    let mut to: Vec<&mut NodeClient> = to.iter_mut().collect();
    send_numbered(a, room, 9, &texts("live", 9..=9), &mut to);
    assert_quiet(a, &mut to);
}

/// A on node 1 streams 200 messages per round while B's recovering join, on node 2
/// and node 3 in turn, races it (see `history::recover_racing_a_stream`): no gap, no
/// duplicate, whatever point of the stream the join lands at.
#[test]
fn recovery_racing_a_sender_on_another_node_has_no_gap_and_no_duplicate() {
    const STREAM: u64 = 200;
    let redis = RedisServer::start();
    let nodes = three_nodes(&redis, |c| c.history_size = 1024);
    let room = "race";
    let mut a = NodeClient::connect(nodes[0].addr());
    let epoch = join_seen(&mut a, room, 0, &mut []);
    for (round, split) in RACE_SPLITS.into_iter().enumerate() {
        let mut b = NodeClient::connect(nodes[1 + round % 2].addr());
        let seen = round as u64 * STREAM;
        let clients = (&mut a, &mut b);
        recover_racing_a_stream(clients, (room, &epoch), seen, (split, STREAM));
        assert_quiet(&mut a, &mut [&mut b]);
        let b_id = b.id.clone();
        drop(b);
        seen_leaving(&b_id, room, &mut [&mut a]);
    }
}

/// Senders on node 1 and node 2 send 50 messages each; a member on node 3 sees offsets
/// 1..=100 in order, and every member the same offset for each message (see
/// `history::one_order_of_two_senders`).
#[test]
fn senders_on_two_nodes_make_one_contiguous_order_at_a_member_on_a_third() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&redis, |_| {});
    let room = "order";
    let [mut s0, mut s1, mut reader] = [0, 1, 2].map(|n| NodeClient::connect(nodes[n].addr()));
    join_seen(&mut reader, room, 0, &mut []);
    join_seen(&mut s0, room, 0, &mut [&mut reader]);
    join_seen(&mut s1, room, 0, &mut [&mut reader, &mut s0]);
    one_order_of_two_senders(room, [&mut s0, &mut s1], &mut reader, 50);
    assert_quiet(&mut s0, &mut [&mut s1, &mut reader]);
}

/// A room everyone left keeps its history in Redis: B (node 2) drops after 1..=2, A
/// (node 1) sends 3..=5 and leaves, and B's new connection on node 3 recovers 3..=5
/// as the room's only member. (A also leaves a second room after it, in the same
/// order through its node's one link: a watcher seeing that leave has seen the room
/// emptied.)
#[test]
fn a_room_everyone_left_still_recovers_what_was_missed_on_another_node() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&redis, |_| {});
    let (room, fence) = ("emptied", "fence");
    let mut a = NodeClient::connect(nodes[0].addr());
    let mut b = NodeClient::connect(nodes[1].addr());
    let mut watcher = NodeClient::connect(nodes[2].addr());
    join_seen(&mut watcher, fence, 0, &mut []);
    join_seen(&mut a, fence, 0, &mut [&mut watcher]);
    let epoch = join_seen(&mut a, room, 0, &mut []);
    join_seen(&mut b, room, 0, &mut [&mut a]);
    send_numbered(&mut a, room, 1, &texts("m", 1..=2), &mut [&mut b]);
    let b_id = b.id.clone();
    drop(b);
    seen_leaving(&b_id, room, &mut [&mut a]);
    send_numbered(&mut a, room, 3, &texts("m", 3..=5), &mut []);
    a.send(&leave_room(room));
    a.send(&leave_room(fence));
    seen_leaving(&a.id, fence, &mut [&mut watcher]);

    let mut b = NodeClient::connect(nodes[2].addr());
    let missed = (3..=5).zip(texts("m", 3..=5));
    let replayed: Vec<Value> = missed.map(|(n, m)| numbered(n, room, &a.id, m)).collect();
    let joined = Joined::new(room, 1, 5).epoch(&epoch).recovered(true);
    recover_seen(&mut b, (&epoch, 2), joined, &replayed, &mut []);
    let mut c = NodeClient::connect(nodes[0].addr());
    join_seen(&mut c, room, 5, &mut [&mut b]);
    send_numbered(&mut c, room, 6, &texts("m", 6..=6), &mut [&mut b]);
    assert_quiet(&mut c, &mut [&mut b, &mut watcher]);
}
