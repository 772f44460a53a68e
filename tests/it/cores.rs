//! More than one core: SO_REUSEPORT spreads connections over both cores, and the
//! broadcast app delivers across cores exactly once, in per-sender order.

use std::collections::HashMap;
use std::thread;

use ringcast::app::{BroadcastApp, EchoApp};
use ringcast::ws::Incoming;

use crate::client::TestClient;
use crate::{start_server, wait_until, Server};

#[test]
fn both_cores_accept_connections() {
    let server = start_server(|_| EchoApp, 2, |_| {});
    let mut clients: Vec<TestClient> = (0..64)
        .map(|_| TestClient::connect(server.addr()))
        .collect();
    server.wait_for_stats("64 open connections", |s| s.open() == 64);
    let per_core = [server.core_stats(0).opened, server.core_stats(1).opened];
    // The kernel hashes source ports: 64 connections all on one core is a 2^-63 chance.
    assert!(
        per_core.iter().all(|&n| n > 0),
        "connections per core: {per_core:?}"
    );
    assert_eq!(per_core[0] + per_core[1], 64);
    // And each core serves what it accepted.
    for client in &mut clients {
        client.send_text("ping");
        assert_eq!(&client.recv_message()[..], b"ping");
    }
}

const CLIENTS_PER_CORE: usize = 4;
const PUBLISHERS: usize = 4;
const MESSAGES_PER_PUBLISHER: u32 = 250;

/// Connects until each of the two cores holds `CLIENTS_PER_CORE` clients, dropping
/// extras, so the test does not depend on how the kernel happens to spread them.
/// Returns the clients in core order (the first `CLIENTS_PER_CORE` are on core 0).
fn clients_on_both_cores(server: &Server) -> Vec<TestClient> {
    let mut on_core: [Vec<TestClient>; 2] = [Vec::new(), Vec::new()];
    for attempt in 0.. {
        assert!(
            attempt < 200,
            "the kernel never spread connections over both cores"
        );
        if on_core
            .iter()
            .all(|clients| clients.len() == CLIENTS_PER_CORE)
        {
            break;
        }
        let before = [server.core_stats(0).opened, server.core_stats(1).opened];
        let client = TestClient::connect(server.addr());
        let core = wait_until("the new connection to be counted", || {
            (0..2).find(|&core| server.core_stats(core as u16).opened > before[core])
        });
        if on_core[core].len() < CLIENTS_PER_CORE {
            on_core[core].push(client);
        }
    }
    let [core0, core1] = on_core;
    core0.into_iter().chain(core1).collect()
}

fn payload(sender: usize, seq: u32) -> String {
    format!("{sender}:{seq}")
}

fn parse(payload: &[u8]) -> (usize, u32) {
    let text = std::str::from_utf8(payload).expect("text");
    let (sender, seq) = text.split_once(':').expect("sender:seq");
    (sender.parse().unwrap(), seq.parse().unwrap())
}

/// Reads until every publisher's messages have arrived, checking per-sender order:
/// a gap, a duplicate or a reordering fails at the first wrong sequence number.
fn receive_everything(client: &mut TestClient) {
    let mut next: HashMap<usize, u32> = HashMap::new();
    let total = PUBLISHERS * MESSAGES_PER_PUBLISHER as usize;
    for _ in 0..total {
        let (sender, seq) = parse(&client.recv_message());
        let expected = next.entry(sender).or_insert(0);
        assert_eq!(
            seq, *expected,
            "from sender {sender}: a gap, a duplicate or a reordering"
        );
        *expected += 1;
    }
    for sender in 0..PUBLISHERS {
        assert_eq!(
            next.get(&sender),
            Some(&MESSAGES_PER_PUBLISHER),
            "from sender {sender}"
        );
    }
}

#[test]
fn broadcast_across_two_cores_delivers_every_message_once_in_sender_order() {
    broadcast_to_clients_on_both_cores(start_server(|_| BroadcastApp::default(), 2, |_| {}));
}

#[test]
fn broadcast_through_full_inboxes_still_delivers_every_message_once_in_order() {
    // The smallest inbox: posts overflow into the sending core's backlog and its
    // readers pause, which must lose, duplicate and reorder nothing.
    broadcast_to_clients_on_both_cores(start_server(
        |_| BroadcastApp::default(),
        2,
        |c| c.inbox_capacity = 16,
    ));
}

/// Publishers 0 and 1 sit on core 0, 2 and 3 on core 1: every message crosses cores
/// to half its recipients. Every client (publishers included) must receive everything.
fn broadcast_to_clients_on_both_cores(server: Server) {
    let clients = clients_on_both_cores(&server);
    server.wait_for_stats("only the kept clients open", |s| {
        s.open() == clients.len() as u64
    });
    let publisher_index = [0, 1, CLIENTS_PER_CORE, CLIENTS_PER_CORE + 1];
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(index, mut client)| {
            let sender = publisher_index.iter().position(|&p| p == index);
            thread::spawn(move || {
                if let Some(sender) = sender {
                    for seq in 0..MESSAGES_PER_PUBLISHER {
                        client.send_text(&payload(sender, seq));
                    }
                }
                receive_everything(&mut client);
                client
            })
        })
        .collect();
    let mut clients: Vec<TestClient> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();

    // A fence: anything still in flight (a duplicate) would arrive before it.
    clients[0].send_text("fence");
    for client in &mut clients {
        assert_eq!(client.recv().unwrap(), Incoming::Text("fence".into()));
    }
    assert_eq!(server.stats().slow_consumers, 0);
}
