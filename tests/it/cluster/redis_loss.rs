//! Redis unreachable at start, lost while nodes run, and back empty.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use ringcast::client::{Client, ClientConfig, ClientError, Event, ReconnectPolicy};
use serde_json::{json, Value};

use super::{
    assert_link, join_in_turn, metric, node_of, normalize, wait_link, NodeClient, RECONNECT_WITHIN,
};
use crate::redis::RedisServer;
use crate::rooms::{
    broadcast_from, error, member_joined, room_joined, room_message_from, send_private,
    send_to_room, with_id, TS,
};
use crate::serve_cli::{serve, stderr_of, wait_exit};
use crate::{start_node, WAIT};

#[test]
fn serve_refuses_to_start_when_redis_is_unreachable_and_names_the_address() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("redis://{closed}/0");
    let mut child = serve(&["--listen", "127.0.0.1:0", "--cores", "1", "--redis", &url]);
    let status = wait_exit(&mut child);
    let stderr = stderr_of(&mut child);
    assert!(!status.success(), "it started without Redis: {stderr}");
    assert!(
        stderr.contains("Redis") && stderr.contains(&closed.to_string()),
        "{stderr}"
    );
}

#[test]
fn cut_off_from_redis_a_node_serves_its_own_clients_and_reports_the_link_down() {
    let mut redis = RedisServer::start();
    let a = start_node(&redis.url(), 1, |_| {});
    let b = start_node(&redis.url(), 1, |_| {});
    let (mut a1, mut a2) = (NodeClient::connect(a.addr()), NodeClient::connect(a.addr()));
    let mut b1 = NodeClient::connect(b.addr());
    join_in_turn("r", &mut [&mut a1, &mut a2, &mut b1]);
    assert_link(a.addr(), true);

    redis.stop();
    wait_link(a.addr(), false, WAIT);
    wait_link(b.addr(), false, WAIT);
    a1.send(&send_to_room("r", json!("still here")));
    a2.expect(&room_message_from("r", &a1.id, json!("still here")));
    a1.send(&json!({"type": "broadcast", "message": "to whoever hears"}));
    a2.expect(&broadcast_from(&a1.id, json!("to whoever hears")));
    // Another node's client cannot be reached: answered at once, not after a deadline.
    a1.request(
        &with_id(send_private(&b1.id, json!("hello?")), json!(4)),
        &with_id(error("Recipient not found"), json!(4)),
    );
    assert!(metric(a.addr(), "ringcast_cluster_dropped_total") >= 2);
    // Both nodes still serve their own clients; nothing of A's reached B's client (the
    // next thing it reads is its own marker).
    a2.sync();
    b1.sync();
}

#[test]
fn when_redis_comes_back_empty_nodes_restart_their_clients_under_new_ids_and_rejoins_count_exactly()
{
    let mut redis = RedisServer::start();
    let a = start_node(&redis.url(), 1, |_| {});
    let b = start_node(&redis.url(), 1, |_| {});
    let mut a1 = NodeClient::connect(a.addr());
    let mut b1 = NodeClient::connect(b.addr());
    a1.join("r", 1);
    let config = ClientConfig {
        reconnect: Some(ReconnectPolicy {
            base: Duration::from_millis(50),
            factor: 2.0,
            max: Duration::from_millis(400),
            reset_after: Duration::from_secs(30),
            max_attempts: None,
        }),
        jitter_seed: Some(12),
        ..ClientConfig::default()
    };
    let auto = Client::start(&format!("ws://{}/", a.addr()), config).expect("client starts");
    let (auto_id, _) = auto_connected(&auto, Instant::now() + WAIT);
    auto.handle().join_room("r").unwrap();
    expect_event(&auto, &room_joined("r", 2));
    a1.expect(&member_joined("r", &auto_id, 2));
    b1.join("r", 3);
    a1.expect(&member_joined("r", &b1.id, 3));
    expect_event(&auto, &member_joined("r", &b1.id, 3));
    let (old_a, old_b) = (a1.node.clone(), b1.node.clone());

    redis.stop();
    wait_link(a.addr(), false, WAIT);
    wait_link(b.addr(), false, WAIT);
    redis.restart();
    // Their heartbeat keys are gone with the rest: each node restarts its clients.
    let back = Instant::now() + RECONNECT_WITHIN;
    assert_eq!(a1.expect_close(back), 1012);
    assert_eq!(b1.expect_close(back), 1012);
    wait_link(a.addr(), true, RECONNECT_WITHIN);
    wait_link(b.addr(), true, RECONNECT_WITHIN);
    assert_eq!(metric(a.addr(), "ringcast_cluster_restarts_total"), 1);
    assert_eq!(metric(b.addr(), "ringcast_cluster_restarts_total"), 1);

    // The library's client reconnects and rejoins by itself, under the new node id.
    let (new_auto_id, closed) = auto_connected(&auto, back);
    assert!(
        matches!(closed, Some(ClientError::Closed { code: 1012, .. })),
        "{closed:?}"
    );
    let new_a = node_of(&new_auto_id).to_string();
    assert_ne!(new_a, old_a, "a restarted node takes a new node id");
    // It asked to recover its position; Redis came back empty, so the history is lost.
    let mut rejoined = room_joined("r", 1);
    rejoined["recovered"] = json!(false);
    expect_event(&auto, &rejoined);
    match auto.events().recv_timeout(WAIT) {
        Ok(Event::HistoryLost { room }) => assert_eq!(room, "r"),
        other => panic!("expected the history of r reported lost, got {other:?}"),
    }

    // Clients that reconnect and rejoin by hand count exactly across both nodes.
    let mut a1 = NodeClient::connect(a.addr());
    assert_eq!(a1.node, new_a);
    a1.join("r", 2);
    expect_event(&auto, &member_joined("r", &a1.id, 2));
    let mut b1 = NodeClient::connect(b.addr());
    assert_ne!(b1.node, old_b, "a restarted node takes a new node id");
    b1.join("r", 3);
    a1.expect(&member_joined("r", &b1.id, 3));
    expect_event(&auto, &member_joined("r", &b1.id, 3));
    auto.handle().room_message("r", "all back").unwrap();
    a1.expect(&room_message_from("r", &new_auto_id, json!("all back")));
    b1.expect(&room_message_from("r", &new_auto_id, json!("all back")));
    auto.close();
}

/// Waits for the reconnecting client's next connection (before `deadline`): its
/// client id and, if a connection ended first, why.
fn auto_connected(client: &Client, deadline: Instant) -> (String, Option<ClientError>) {
    let mut lost = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.events().recv_timeout(left) {
            Ok(Event::Connected { client_id, .. }) => {
                expect_event(
                    client,
                    &json!({"type": "welcome", "client_id": client_id, "timestamp": TS}),
                );
                return (client_id, lost);
            }
            Ok(Event::Disconnected { reason }) => lost = Some(reason),
            Ok(Event::Reconnecting { .. }) => {}
            Ok(other) => panic!("unexpected while connecting: {other:?}"),
            Err(_) => panic!("no connection by the deadline (lost: {lost:?})"),
        }
    }
}

/// The reconnecting client's next event must be the message `expected`.
fn expect_event(client: &Client, expected: &Value) {
    match client.events().recv_timeout(WAIT) {
        Ok(Event::Message(received)) => {
            let actual: Value = serde_json::from_str(&received.raw).expect("JSON from the server");
            assert_eq!(&normalize(actual, expected), expected);
        }
        other => panic!("expected {expected}, got {other:?}"),
    }
}
