//! Private messages to clients that are gone: departed, on a killed node, on a frozen
//! node.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{NodeClient, NodeProcess, SHORT_TTL};
use crate::redis::RedisServer;
use crate::rooms::{error, member_joined, member_left, private_from, send_private, with_id};
use crate::start_node;

/// How long a node waits for another node to say whether it delivered a private
/// message (`PRIVATE_TIMEOUT` in src/cluster/link.rs), plus its sweep (once a second,
/// between reads that wait up to a second) and slack for a loaded machine.
const PRIVATE_DEADLINE: Duration = Duration::from_secs(8);

#[test]
fn private_messages_to_a_departed_client_or_a_killed_nodes_client_get_recipient_not_found() {
    let redis = RedisServer::start();
    let a = start_node(&redis.url(), 1, |_| {});
    let b = start_node(&redis.url(), 1, |_| {});
    let mut c = NodeProcess::start(&redis.url(), SHORT_TTL);
    let mut a1 = NodeClient::connect(a.addr());
    let mut b1 = NodeClient::connect(b.addr());
    let mut c1 = NodeClient::connect(c.addr);
    for to in [&mut b1, &mut c1] {
        a1.send(&send_private(&to.id, json!("hi")));
        to.expect(&private_from(&a1.id, json!("hi")));
    }

    // b1 leaves; once a1 has seen it go, its id resolves nowhere.
    a1.join("fence", 1);
    b1.join("fence", 2);
    a1.expect(&member_joined("fence", &b1.id, 2));
    let b1_id = b1.id.clone();
    b1.close();
    a1.expect(&member_left("fence", &b1_id, 1));
    a1.request(
        &with_id(send_private(&b1_id, json!("too late")), json!(1)),
        &with_id(error("Recipient not found"), json!(1)),
    );

    // C dies: a private message to its client is refused within 5 s.
    let c1_id = c1.id.clone();
    drop(c1);
    c.kill();
    let sent = Instant::now();
    a1.request(
        &with_id(send_private(&c1_id, json!("anyone?")), json!(2)),
        &with_id(error("Recipient not found"), json!(2)),
    );
    let answered_in = sent.elapsed();
    assert!(
        answered_in < Duration::from_secs(5),
        "answered after {answered_in:?}"
    );
}

/// A node that stops answering (SIGSTOP) still has its Redis connection, so the
/// message is delivered to it and the sender's node waits for an outcome that never
/// comes: the deadline answers. (Its heartbeat TTL is the default 10 s: it is not
/// reaped meanwhile.)
#[test]
fn a_private_message_to_a_frozen_nodes_client_is_refused_at_the_deadline() {
    let redis = RedisServer::start();
    let a = start_node(&redis.url(), 1, |_| {});
    let c = NodeProcess::start(&redis.url(), "");
    let mut a1 = NodeClient::connect(a.addr());
    let c1 = NodeClient::connect(c.addr);
    c.freeze();
    let sent = Instant::now();
    a1.send(&with_id(send_private(&c1.id, json!("anyone?")), json!(3)));
    let reply = a1.recv_until(sent + PRIVATE_DEADLINE);
    let answered_in = sent.elapsed();
    let reply = reply.unwrap_or_else(|| panic!("no answer within {answered_in:?}"));
    a1.check(reply, &with_id(error("Recipient not found"), json!(3)));
}
