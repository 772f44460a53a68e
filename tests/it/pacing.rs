//! Flush pacing (`flush_pace_us`, `conn::pacing`): after a write pass that fanned
//! several messages out, the next pass waits out the pace; request/response traffic
//! and a single message's fan-out never wait. A pace of
//! 100 ms (the most allowed) makes the difference unmistakable on any machine: these assert that a wait
//! happens or does not, not how fast anything is.

use std::time::{Duration, Instant};

use ringcast::app::{BroadcastApp, EchoApp};

use crate::client::TestClient;
use crate::{start_server, Server};

const PACE: Duration = Duration::from_millis(100);
/// More than `WIDE_PASS_SOCKETS` (64): a broadcast to all of them is a fan-out pass.
const AUDIENCE: usize = 80;

/// [`AUDIENCE`] clients, every one upgraded.
fn audience(server: &Server) -> Vec<TestClient> {
    let clients = (0..AUDIENCE)
        .map(|_| TestClient::connect(server.addr()))
        .collect();
    server.wait_for_stats("every client upgraded", |s| s.opened >= AUDIENCE as u64);
    clients
}

#[test]
fn after_a_fan_out_pass_the_next_waits_out_the_pace() {
    let server = start_server(
        |_| BroadcastApp::default(),
        1,
        |c| c.flush_pace_us = 100_000,
    );
    let mut clients = audience(&server);
    // Two messages read together: one pass writes both to every client.
    clients[0].send_texts_at_once(&["first", "also first"]);
    for client in &mut clients {
        assert_eq!(&client.recv_message()[..], b"first");
        assert_eq!(&client.recv_message()[..], b"also first");
    }
    let sent = Instant::now();
    clients[0].send_text("second");
    for client in &mut clients {
        assert_eq!(&client.recv_message()[..], b"second");
    }
    // The first pass ended before its frames reached us, so the second can only have
    // left after most of the pace (less what reading the first took).
    let waited = sent.elapsed();
    assert!(waited >= PACE / 2, "not paced: {waited:?}");
}

#[test]
fn a_single_message_fan_out_is_not_paced() {
    let server = start_server(
        |_| BroadcastApp::default(),
        1,
        |c| c.flush_pace_us = 100_000,
    );
    let mut clients = audience(&server);
    let started = Instant::now();
    // A publisher that waits for each message to reach everyone before the next:
    // every pass follows one message, and none waits.
    for round in 0..10 {
        let text = format!("round {round}");
        clients[0].send_text(&text);
        for client in &mut clients {
            assert_eq!(&client.recv_message()[..], text.as_bytes());
        }
    }
    let took = started.elapsed();
    assert!(took < PACE * 9, "paced after single messages: {took:?}");
}

#[test]
fn request_response_traffic_is_never_paced() {
    let server = start_server(|_| EchoApp, 1, |c| c.flush_pace_us = 100_000);
    let mut clients = audience(&server);
    let started = Instant::now();
    // 10 rounds of every client sending at once: wide passes, one frame per message.
    for round in 0..10 {
        let text = format!("round {round}");
        for client in &mut clients {
            client.send_text(&text);
        }
        for client in &mut clients {
            assert_eq!(&client.recv_message()[..], text.as_bytes());
        }
    }
    let took = started.elapsed();
    assert!(took < PACE * 9, "paced like a fan-out: {took:?}");
}

#[test]
fn a_pace_of_zero_sends_the_next_fan_out_at_once() {
    let server = start_server(|_| BroadcastApp::default(), 1, |c| c.flush_pace_us = 0);
    let mut clients = audience(&server);
    let started = Instant::now();
    // Two messages at a time: every pass is one a pace would be kept after.
    for round in 0..10 {
        let (a, b) = (format!("round {round} a"), format!("round {round} b"));
        clients[0].send_texts_at_once(&[&a, &b]);
        for client in &mut clients {
            assert_eq!(&client.recv_message()[..], a.as_bytes());
            assert_eq!(&client.recv_message()[..], b.as_bytes());
        }
    }
    let took = started.elapsed();
    assert!(took < PACE * 9, "paced with a pace of 0: {took:?}");
}
