//! A node that dies (SIGKILL), freezes past its heartbeat TTL (SIGSTOP), or comes back
//! under a fixed id: its members leave every room with exact totals.

use std::time::Instant;

use serde_json::Value;

use super::{join_in_turn, NodeClient, NodeProcess, REAP_WITHIN, RECONNECT_WITHIN, SHORT_TTL};
use crate::redis::RedisServer;
use crate::rooms::{member_joined, member_left};
use crate::{start_node, WAIT};

#[test]
fn a_killed_nodes_members_leave_every_room_with_exact_totals_and_its_successor_has_a_new_id() {
    let redis = RedisServer::start();
    let a = NodeProcess::start(&redis.url(), SHORT_TTL);
    let b = NodeProcess::start(&redis.url(), SHORT_TTL);
    let mut c = NodeProcess::start(&redis.url(), SHORT_TTL);
    let (mut a1, mut a2) = (NodeClient::connect(a.addr), NodeClient::connect(a.addr));
    let mut b1 = NodeClient::connect(b.addr);
    let (mut c1, mut c2) = (NodeClient::connect(c.addr), NodeClient::connect(c.addr));
    join_in_turn("shared", &mut [&mut a1, &mut b1, &mut c1, &mut c2]);
    join_in_turn("second", &mut [&mut b1, &mut c1, &mut a2]);
    join_in_turn("c-only", &mut [&mut c1, &mut c2]);
    let (old_c, c1_id, c2_id) = (c1.node.clone(), c1.id.clone(), c2.id.clone());
    drop((c1, c2));

    c.kill();
    let killed = Instant::now();
    let deadline = killed + REAP_WITHIN;
    let a1_got = a1.recv_n(2, deadline);
    let b1_got = b1.recv_n(3, deadline);
    let a2_got = a2.recv_n(1, deadline);
    eprintln!(
        "the killed node's members were gone {:?} after SIGKILL",
        killed.elapsed()
    );

    // "shared" lost both, in the one order the reaper ran (the same for every member),
    // the totals going down by one each time.
    let (b1_shared, b1_second): (Vec<Value>, Vec<Value>) =
        b1_got.into_iter().partition(|m| m["room"] == "shared");
    assert_eq!(
        a1_got, b1_shared,
        "members of one room see its leaves in one order"
    );
    let gone: Vec<&str> = a1_got
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    assert!(
        gone == [c1_id.as_str(), c2_id.as_str()] || gone == [c2_id.as_str(), c1_id.as_str()],
        "{a1_got:?}"
    );
    assert_eq!(
        a1_got,
        vec![
            member_left("shared", gone[0], 3),
            member_left("shared", gone[1], 2)
        ]
    );
    // "second" lost c1 only.
    assert_eq!(b1_second, vec![member_left("second", &c1_id, 2)]);
    assert_eq!(a2_got, vec![member_left("second", &c1_id, 2)]);

    // Joins count exactly afterwards, and nothing else was queued before their notices:
    // "c-only" ceased to exist with its last member.
    let mut a3 = NodeClient::connect(a.addr);
    a3.join("shared", 3);
    a1.expect(&member_joined("shared", &a3.id, 3));
    b1.expect(&member_joined("shared", &a3.id, 3));
    let mut b2 = NodeClient::connect(b.addr);
    b2.join("second", 3);
    b1.expect(&member_joined("second", &b2.id, 3));
    a2.expect(&member_joined("second", &b2.id, 3));
    a3.join("c-only", 1);

    // A new process in C's place is a new node, with a new id in its clients' ids.
    let c = NodeProcess::start(&redis.url(), SHORT_TTL);
    let mut c3 = NodeClient::connect(c.addr);
    assert_ne!(c3.node, old_c, "a restarted node takes a new node id");
    c3.join("shared", 4);
    for member in [&mut a1, &mut b1, &mut a3] {
        member.expect(&member_joined("shared", &c3.id, 4));
    }
}

/// More memberships than the reaper removes per call (1000): it goes on until all
/// have left, each with its notice.
#[test]
fn a_killed_node_with_more_memberships_than_one_reap_batch_loses_them_all() {
    const ROOMS: usize = 1_100;
    let redis = RedisServer::start();
    let a = start_node(&redis.url(), 1, |c| c.max_rooms_per_client = ROOMS);
    let mut c = NodeProcess::start(&redis.url(), SHORT_TTL);
    let rooms: Vec<String> = (0..ROOMS).map(|n| format!("room-{n}")).collect();
    let mut a1 = NodeClient::connect(a.addr());
    a1.join_all(&rooms, 1);
    // C's clients, 100 rooms each (the default limit): one member in every room.
    let mut victims = Vec::new();
    let mut left = Vec::new();
    for chunk in rooms.chunks(100) {
        let mut victim = NodeClient::connect(c.addr);
        victim.join_all(chunk, 2);
        let joined: Vec<Value> = chunk
            .iter()
            .map(|room| member_joined(room, &victim.id, 2))
            .collect();
        assert_eq!(a1.recv_n(chunk.len(), Instant::now() + WAIT), joined);
        left.extend(chunk.iter().map(|room| member_left(room, &victim.id, 1)));
        victims.push(victim);
    }
    drop(victims);

    c.kill();
    let mut got = a1.recv_n(ROOMS, Instant::now() + REAP_WITHIN);
    let key = |m: &Value| m.to_string();
    got.sort_by_key(key);
    left.sort_by_key(key);
    assert_eq!(got, left);
    let mut a2 = NodeClient::connect(a.addr());
    a2.join(&rooms[0], 2);
    a2.join(&rooms[ROOMS - 1], 2);
    a1.expect(&member_joined(&rooms[0], &a2.id, 2));
    a1.expect(&member_joined(&rooms[ROOMS - 1], &a2.id, 2));
}

/// A node frozen (SIGSTOP) past its heartbeat TTL keeps its connection to Redis while
/// the other nodes remove its members. When it resumes it must find that out, as it
/// does on a reconnect, and restart its clients (1012) under a new node id that the
/// reaper knows, so that its members leave when it dies for good. (Before 1e62c97 the
/// resumed node went on serving its reaped members, no longer registered.)
#[test]
fn a_node_frozen_past_its_ttl_restarts_its_clients_when_it_resumes() {
    let redis = RedisServer::start();
    let a = start_node(&redis.url(), 1, |c| c.cluster.node_ttl_ms = 1_000);
    let mut c = NodeProcess::start(&redis.url(), SHORT_TTL);
    let mut a1 = NodeClient::connect(a.addr());
    let mut c1 = NodeClient::connect(c.addr);
    join_in_turn("r", &mut [&mut a1, &mut c1]);

    c.freeze();
    let reaped = a1.recv_n(1, Instant::now() + REAP_WITHIN);
    assert_eq!(reaped, vec![member_left("r", &c1.id, 1)]);
    c.resume();
    assert_eq!(c1.expect_close(Instant::now() + RECONNECT_WITHIN), 1012);
    let mut c2 = NodeClient::connect(c.addr);
    assert_ne!(c2.node, c1.node, "a restarted node takes a new node id");
    c2.join("r", 2);
    a1.expect(&member_joined("r", &c2.id, 2));
    c.kill();
    let reaped = a1.recv_n(1, Instant::now() + REAP_WITHIN);
    assert_eq!(reaped, vec![member_left("r", &c2.id, 1)]);
}

/// A node given a fixed id (`--node-id`) and restarted at once after a crash (as a
/// service manager does) refreshes the same heartbeat key as its previous life: that
/// life's members must still leave, and its client ids must not come back.
#[test]
fn a_node_restarted_under_its_fixed_id_does_not_keep_its_previous_lifes_members() {
    let redis = RedisServer::start();
    let a = start_node(&redis.url(), 1, |_| {});
    let config = format!("{SHORT_TTL}node_id = \"fixed\"\n");
    let mut c = NodeProcess::start(&redis.url(), &config);
    let mut a1 = NodeClient::connect(a.addr());
    let (mut c1, mut c2) = (NodeClient::connect(c.addr), NodeClient::connect(c.addr));
    join_in_turn("r", &mut [&mut a1, &mut c1, &mut c2]);
    let old_ids = [c1.id.clone(), c2.id.clone()];
    drop((c1, c2));

    c.kill();
    let c = NodeProcess::start(&redis.url(), &config);
    let gone = a1.recv_n(2, Instant::now() + REAP_WITHIN);
    let ids: Vec<&str> = gone
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        gone,
        vec![member_left("r", ids[0], 2), member_left("r", ids[1], 1)]
    );
    let mut c3 = NodeClient::connect(c.addr);
    assert!(
        !old_ids.contains(&c3.id),
        "{} was a client of the previous life",
        c3.id
    );
    c3.join("r", 2);
    a1.expect(&member_joined("r", &c3.id, 2));
}
