//! The outbound limit: a client that stops reading is counted and its connection reset
//! (no orphaned kernel buffers), while a client that reads keeps getting every message.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};

use ringcast::app::BroadcastApp;
use ringcast::ws::Opcode;
use socket2::{Domain, Socket, Type};

use crate::client::{tcp_state, TestClient, TCP_CLOSE};
use crate::{start_server, wait_until};

const MESSAGE_BYTES: usize = 16 * 1024;
/// Enough to fill any loopback socket buffers several times over; the test stops as
/// soon as the server gives up on the slow client.
const MAX_MESSAGES: u32 = 4_000;

/// A connection whose receive buffer is as small as the kernel allows, so it fills fast.
fn connect_with_small_receive_buffer(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

fn message(seq: u32) -> Vec<u8> {
    let mut payload = vec![b'.'; MESSAGE_BYTES];
    payload[..4].copy_from_slice(&seq.to_be_bytes());
    payload
}

/// Publishes `seq` and waits until both the publisher (the sender is included) and
/// the reader have it, so neither of them can fall behind and only the slow client
/// builds up a queue on the server.
fn publish_in_lockstep(publisher: &mut TestClient, reader: &mut TestClient, seq: u32) {
    publisher.send(Opcode::Binary, &message(seq));
    for (who, client) in [("publisher", &mut *publisher), ("reader", &mut *reader)] {
        let got = client.recv_message();
        assert_eq!(got.len(), MESSAGE_BYTES, "{who}");
        assert_eq!(
            got[..4],
            seq.to_be_bytes(),
            "{who} got a message out of order"
        );
    }
}

#[test]
fn client_that_stops_reading_is_reset_and_others_keep_receiving() {
    let server = start_server(
        |_| BroadcastApp::default(),
        1,
        |c| {
            c.max_outbound_bytes = 64 * 1024;
            // Far longer than the test waits: the reset must not wait for it.
            c.close_timeout_ms = 60_000;
        },
    );
    let slow = TestClient::upgrade(connect_with_small_receive_buffer(server.addr()), &[]);
    let mut reader = TestClient::connect(server.addr());
    let mut publisher = TestClient::connect(server.addr());
    server.wait_for_stats("three open connections", |s| s.open() == 3);

    let mut seq = 0;
    while server.stats().slow_consumers == 0 {
        assert!(
            seq < MAX_MESSAGES,
            "the non-reading client was never cut off"
        );
        publish_in_lockstep(&mut publisher, &mut reader, seq);
        seq += 1;
    }
    // The others are unaffected: every later message still reaches them.
    for _ in 0..20 {
        publish_in_lockstep(&mut publisher, &mut reader, seq);
        seq += 1;
    }
    assert_eq!(
        server.stats().slow_consumers,
        1,
        "only the non-reading client is slow"
    );
    // Without ever reading, the slow client's socket is reset (TCP_CLOSE): the server
    // kept no orphaned socket draining megabytes at the client's pace.
    let stream = slow.stream();
    wait_until("the slow client's connection reset", || {
        (tcp_state(stream) == TCP_CLOSE).then_some(())
    });
    server.wait_for_stats("the slow client gone", |s| s.open() == 2 && s.closed == 1);
    let mut byte = [0u8; 1];
    let mut stream: &TcpStream = stream;
    let error = loop {
        match stream.read(&mut byte) {
            Ok(1) => continue, // what arrived before the reset may still be read
            Ok(_) => panic!("a graceful end of stream, not a reset"),
            Err(error) => break error,
        }
    };
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
}
