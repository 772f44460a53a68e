//! A client breaking RFC 6455 gets the close code the RFC names (1009, 1007, 1002),
//! then the server closes TCP, counts it, and goes on serving others.

use ringcast::app::EchoApp;
use ringcast::ws::{encode_masked, Incoming, Opcode};

use crate::client::TestClient;
use crate::{start_server, Server};

/// Expects a close frame with `code`, then the end of the connection.
fn expect_failed_with(client: &mut TestClient, code: u16) {
    assert_eq!(client.expect_close(), code);
    client.expect_eof();
}

fn echo_server(max_message_bytes: usize) -> Server {
    start_server(
        |_| EchoApp,
        1,
        move |c| c.max_message_bytes = max_message_bytes,
    )
}

#[test]
fn message_over_max_message_bytes_closes_with_1009() {
    let server = echo_server(1024);
    let mut at_limit = TestClient::connect(server.addr());
    at_limit.send(Opcode::Binary, &[7; 1024]);
    assert_eq!(at_limit.recv_message().len(), 1024);

    let mut one_frame = TestClient::connect(server.addr());
    one_frame.send(Opcode::Binary, &[7; 1025]);
    expect_failed_with(&mut one_frame, 1009);

    // Fragments each under the limit, together over it.
    let mut fragments = TestClient::connect(server.addr());
    fragments.send_frame(Opcode::Text, false, &[b'a'; 600]);
    fragments.send_frame(Opcode::Continuation, true, &[b'a'; 600]);
    expect_failed_with(&mut fragments, 1009);
    assert_eq!(server.stats().protocol_errors, 2);
}

#[test]
fn invalid_utf8_in_text_closes_with_1007() {
    let server = echo_server(1 << 20);
    let mut client = TestClient::connect(server.addr());
    client.send(Opcode::Text, &[b'o', b'k', 0xC3, 0x28]);
    expect_failed_with(&mut client, 1007);

    // A character cut short by the end of the message, across fragments.
    let mut fragments = TestClient::connect(server.addr());
    fragments.send_frame(Opcode::Text, false, b"caf");
    fragments.send_frame(Opcode::Continuation, true, &[0xC3]);
    expect_failed_with(&mut fragments, 1007);
    assert_eq!(server.stats().protocol_errors, 2);
}

#[test]
fn unmasked_client_frame_closes_with_1002() {
    let server = echo_server(1 << 20);
    let mut client = TestClient::connect(server.addr());
    client.send_raw(b"\x81\x05hello");
    expect_failed_with(&mut client, 1002);
    assert_eq!(server.stats().protocol_errors, 1);
}

#[test]
fn reserved_opcode_closes_with_1002() {
    let server = echo_server(1 << 20);
    for opcode in [0x3u8, 0xB] {
        let mut client = TestClient::connect(server.addr());
        let mut frame = encode_masked(Opcode::Binary, true, b"x", [9, 8, 7, 6]).to_vec();
        frame[0] = 0x80 | opcode;
        client.send_raw(&frame);
        expect_failed_with(&mut client, 1002);
    }
    assert_eq!(server.stats().protocol_errors, 2);
}

#[test]
fn garbage_after_the_upgrade_closes_with_1002_and_the_next_client_is_served() {
    let server = echo_server(1 << 20);
    let mut client = TestClient::connect(server.addr());
    client.send_raw(b"this is not a websocket frame\r\n\r\n");
    expect_failed_with(&mut client, 1002);

    let mut next = TestClient::connect(server.addr());
    next.send_text("still there?");
    assert_eq!(next.recv().unwrap(), Incoming::Text("still there?".into()));
    assert_eq!(server.stats().protocol_errors, 1);
}
