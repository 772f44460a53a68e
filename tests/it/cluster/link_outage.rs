//! Only a node's connection to Redis drops (CLIENT KILL), Redis keeping its data: a
//! short outage, a command lost with the connection, an outage past the heartbeat TTL,
//! more changes meanwhile than the node keeps.

use std::time::Instant;

use ringcast::config::Config;
use serde_json::json;

use super::admin::{RedisAdmin, Reply};
use super::{
    assert_link, join_in_turn, metric, poll_until, wait_link, NodeClient, REAP_WITHIN,
    RECONNECT_WITHIN,
};
use crate::redis::RedisServer;
use crate::rooms::{
    broadcast_from, join_room, leave_room, member_joined, member_left, room_joined,
    room_message_from, send_to_room,
};
use crate::{start_node, WAIT};

/// Only A's connection is killed, and a password set meanwhile holds its reconnect
/// off (its HELLO is refused with NOAUTH) until the test has made its changes; the
/// heartbeat key outlives the outage, so A comes back as itself.
#[test]
fn a_dropped_redis_connection_reconnects_as_the_same_node_and_counts_changes_made_meanwhile() {
    let redis = RedisServer::start();
    let mut admin = RedisAdmin::connect(redis.port());
    let a = start_node(&redis.url(), 1, |_| {});
    let a_link = admin.only_link();
    let b = start_node(&redis.url(), 1, |_| {});
    let (mut a1, mut a2) = (NodeClient::connect(a.addr()), NodeClient::connect(a.addr()));
    let mut b1 = NodeClient::connect(b.addr());
    join_in_turn("r", &mut [&mut a1, &mut b1]);
    join_in_turn("q", &mut [&mut b1, &mut a2]);

    assert_eq!(
        admin.call(&["CONFIG", "SET", "requirepass", "held-off"]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        admin.call(&["CLIENT", "KILL", "ID", &a_link.to_string()]),
        Reply::Int(1)
    );
    wait_link(a.addr(), false, WAIT);
    // a2 joins r and leaves q while A is cut off; its broadcast after them is dropped
    // (counted), which shows the link has taken the two changes in.
    a2.send(&join_room("r"));
    a2.send(&leave_room("q"));
    a2.send(&json!({"type": "broadcast", "message": "marker"}));
    a1.expect(&broadcast_from(&a2.id, json!("marker")));
    poll_until("the marker dropped", WAIT, || {
        metric(a.addr(), "ringcast_cluster_dropped_total") == 1
    });
    assert_link(a.addr(), false);
    assert_eq!(
        admin.call(&["CONFIG", "SET", "requirepass", ""]),
        Reply::Status("OK".into())
    );

    wait_link(a.addr(), true, RECONNECT_WITHIN);
    a2.expect(&room_joined("r", 3));
    a1.expect(&member_joined("r", &a2.id, 3));
    b1.expect(&member_joined("r", &a2.id, 3));
    b1.expect(&member_left("q", &a2.id, 1));
    assert_eq!(metric(a.addr(), "ringcast_cluster_reconnects_total"), 1);
    assert_eq!(metric(a.addr(), "ringcast_cluster_restarts_total"), 0);
    // Nobody was closed (the next message is the next room message, not a 1012), and
    // new clients are named after the same node.
    b1.send(&send_to_room("r", json!("still you?")));
    a1.expect(&room_message_from("r", &b1.id, json!("still you?")));
    a2.expect(&room_message_from("r", &b1.id, json!("still you?")));
    let a3 = NodeClient::connect(a.addr());
    assert_eq!(a3.node, a1.node);
    b1.sync();
}

/// A join written to Redis but not yet run when A's connection is killed (Redis is
/// paused, so the command waits there and dies with the connection): A sends it again
/// on its next connection, and it counts once.
#[test]
fn a_join_lost_with_the_connection_is_sent_again_and_counted_once() {
    let redis = RedisServer::start();
    let mut admin = RedisAdmin::connect(redis.port());
    let a = start_node(&redis.url(), 1, |_| {});
    let a_link = admin.only_link();
    let b = start_node(&redis.url(), 1, |_| {});
    let (mut a1, mut a2) = (NodeClient::connect(a.addr()), NodeClient::connect(a.addr()));
    let mut b1 = NodeClient::connect(b.addr());
    join_in_turn("r", &mut [&mut a1, &mut b1]);

    assert_eq!(
        admin.call(&["CLIENT", "PAUSE", "10000", "WRITE"]),
        Reply::Status("OK".into())
    );
    // A's next reaper call (every second) waits in Redis; what A writes after it waits
    // behind it. (Should the count below be a heartbeat's instead, the join is still
    // on its way and must count once all the same.)
    poll_until("A's link held by the pause", WAIT, || {
        admin
            .client(a_link)
            .is_some_and(|fields| fields["flags"].contains('b'))
    });
    let before = metric(a.addr(), "ringcast_cluster_commands_total");
    a2.send(&join_room("r"));
    poll_until("the join written to Redis", WAIT, || {
        metric(a.addr(), "ringcast_cluster_commands_total") > before
    });
    assert_eq!(
        admin.call(&["CLIENT", "KILL", "ID", &a_link.to_string()]),
        Reply::Int(1)
    );
    assert_eq!(
        admin.call(&["CLIENT", "UNPAUSE"]),
        Reply::Status("OK".into())
    );

    a2.expect(&room_joined("r", 3));
    a1.expect(&member_joined("r", &a2.id, 3));
    b1.expect(&member_joined("r", &a2.id, 3));
    b1.send(&send_to_room("r", json!("once?")));
    a1.expect(&room_message_from("r", &b1.id, json!("once?")));
    a2.expect(&room_message_from("r", &b1.id, json!("once?")));
    assert_link(a.addr(), true);
    assert_eq!(metric(a.addr(), "ringcast_cluster_reconnects_total"), 1);
    assert_eq!(metric(a.addr(), "ringcast_cluster_restarts_total"), 0);
}

/// A's link held off past its heartbeat TTL while Redis keeps its data: the other
/// nodes remove A's members meanwhile; A, finding its key gone when it is back,
/// restarts its clients (1012) under a new node id, and what they did while it was
/// away is dropped with its old life.
#[test]
fn a_link_down_past_the_ttl_has_its_members_removed_and_the_node_restart() {
    let redis = RedisServer::start();
    let mut admin = RedisAdmin::connect(redis.port());
    let short_ttl = |c: &mut Config| c.cluster.node_ttl_ms = 1_000;
    let a = start_node(&redis.url(), 1, short_ttl);
    let a_link = admin.only_link();
    let b = start_node(&redis.url(), 1, short_ttl);
    let (mut a1, mut a2) = (NodeClient::connect(a.addr()), NodeClient::connect(a.addr()));
    let mut b1 = NodeClient::connect(b.addr());
    join_in_turn("r", &mut [&mut b1, &mut a1, &mut a2]);
    let old_a = a1.node.clone();

    assert_eq!(
        admin.call(&["CONFIG", "SET", "requirepass", "held-off"]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        admin.call(&["CLIENT", "KILL", "ID", &a_link.to_string()]),
        Reply::Int(1)
    );
    wait_link(a.addr(), false, WAIT);
    a1.send(&join_room("s"));
    let gone = b1.recv_n(2, Instant::now() + REAP_WITHIN);
    let ids: Vec<&str> = gone
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    assert!(
        ids == [a1.id.as_str(), a2.id.as_str()] || ids == [a2.id.as_str(), a1.id.as_str()],
        "{gone:?}"
    );
    assert_eq!(
        gone,
        vec![member_left("r", ids[0], 2), member_left("r", ids[1], 1)]
    );
    assert_eq!(
        admin.call(&["CONFIG", "SET", "requirepass", ""]),
        Reply::Status("OK".into())
    );

    let back = Instant::now() + RECONNECT_WITHIN;
    assert_eq!(a1.expect_close(back), 1012);
    assert_eq!(a2.expect_close(back), 1012);
    wait_link(a.addr(), true, RECONNECT_WITHIN);
    assert_eq!(metric(a.addr(), "ringcast_cluster_restarts_total"), 1);
    let mut a3 = NodeClient::connect(a.addr());
    assert_ne!(a3.node, old_a, "a restarted node takes a new node id");
    a3.join("r", 2);
    b1.expect(&member_joined("r", &a3.id, 2));
    a3.join("s", 1);
}

/// More joins and leaves while cut off than A keeps (`max_pending_changes`): A gives
/// up its state and, once Redis is back, restarts its clients (1012) under a new node
/// id. Its old memberships must go with its old life, so that those who rejoin count
/// exactly.
#[test]
fn more_changes_while_cut_off_than_the_node_keeps_restart_it_and_rejoins_count_exactly() {
    let redis = RedisServer::start();
    let mut admin = RedisAdmin::connect(redis.port());
    let a = start_node(&redis.url(), 1, |c| c.cluster.max_pending_changes = 2);
    let a_link = admin.only_link();
    let b = start_node(&redis.url(), 1, |_| {});
    let mut a1 = NodeClient::connect(a.addr());
    let mut b1 = NodeClient::connect(b.addr());
    join_in_turn("r", &mut [&mut b1, &mut a1]);
    let (old_a, old_a1) = (a1.node.clone(), a1.id.clone());

    assert_eq!(
        admin.call(&["CONFIG", "SET", "requirepass", "held-off"]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        admin.call(&["CLIENT", "KILL", "ID", &a_link.to_string()]),
        Reply::Int(1)
    );
    wait_link(a.addr(), false, WAIT);
    for room in ["x", "y", "z"] {
        a1.send(&join_room(room));
    }
    // The broadcast after the joins is dropped (counted) once the link has them.
    a1.send(&json!({"type": "broadcast", "message": "marker"}));
    poll_until("the marker dropped", WAIT, || {
        metric(a.addr(), "ringcast_cluster_dropped_total") == 1
    });
    assert_eq!(
        admin.call(&["CONFIG", "SET", "requirepass", ""]),
        Reply::Status("OK".into())
    );

    assert_eq!(a1.expect_close(Instant::now() + RECONNECT_WITHIN), 1012);
    wait_link(a.addr(), true, RECONNECT_WITHIN);
    assert_eq!(metric(a.addr(), "ringcast_cluster_restarts_total"), 1);
    b1.expect(&member_left("r", &old_a1, 1));
    let mut a1 = NodeClient::connect(a.addr());
    assert_ne!(a1.node, old_a, "a restarted node takes a new node id");
    a1.join("r", 2);
    b1.expect(&member_joined("r", &a1.id, 2));
    a1.join("x", 1);
}
