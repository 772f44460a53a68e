//! The outbound limit: a client that stops reading is closed with 1008 and counted,
//! while a client that reads keeps getting every message.

use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use ringcast::app::BroadcastApp;
use ringcast::ws::{Incoming, Opcode};
use socket2::{Domain, Socket, Type};

use crate::client::{RecvError, TestClient};
use crate::{start_server, WAIT};

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
fn client_that_stops_reading_is_closed_with_1008_and_others_keep_receiving() {
    let server = start_server(
        |_| BroadcastApp::default(),
        1,
        |c| {
            c.max_outbound_bytes = 64 * 1024;
            c.close_timeout_ms = 5_000;
        },
    );
    let mut slow = TestClient::upgrade(connect_with_small_receive_buffer(server.addr()), &[]);
    let mut reader = TestClient::connect(server.addr());
    let mut publisher = TestClient::connect(server.addr());
    server.wait_for_stats("three open connections", |s| s.open() == 3);

    let mut seq = 0;
    while server.stats().slow_consumers == 0 {
        assert!(
            seq < MAX_MESSAGES,
            "the non-reading client was never closed"
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

    // The slow client finally reads: whole messages, in order, then the 1008 close.
    let mut expected = 0u32;
    let deadline = Instant::now() + WAIT;
    let code = loop {
        match slow.recv_until(deadline) {
            Ok(Incoming::Binary(payload)) => {
                let got = u32::from_be_bytes(payload[..4].try_into().unwrap());
                assert_eq!(got, expected, "the slow client's stream has a gap");
                expected += 1;
            }
            Ok(Incoming::Close(frame)) => break frame.map(|(code, _)| code),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(RecvError::Closed) => {
                panic!("closed without a close frame after {expected} messages")
            }
            Err(error) => panic!("{error:?} after {expected} messages"),
        }
    };
    assert_eq!(code, Some(1008));
    assert!(
        expected < seq,
        "the slow client got everything: it was not cut off"
    );
    // Completing the closing handshake ends the connection without waiting for the
    // server's close timeout.
    slow.send_close(1008, "");
    slow.expect_eof();
}
