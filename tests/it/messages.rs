//! Messages over an open connection with the echo app: text and binary, fragments
//! with control frames between them, ping/pong, and the close handshake.

use ringcast::app::EchoApp;
use ringcast::ws::{Incoming, Opcode};

use crate::client::TestClient;
use crate::start_server;

#[test]
fn echo_returns_text_as_text_and_binary_as_binary() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let mut client = TestClient::connect(server.addr());
    client.send_text("hello, ringcast");
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Text("hello, ringcast".into())
    );
    let binary: Vec<u8> = (0..=255).collect();
    client.send(Opcode::Binary, &binary);
    assert_eq!(client.recv().unwrap(), Incoming::Binary(binary.into()));
    client.send_text("");
    assert_eq!(client.recv().unwrap(), Incoming::Text("".into()));
}

#[test]
fn echo_returns_a_large_message_intact() {
    // Over 64 KiB: a 64-bit length, and a read buffer that must grow far past its start.
    let server = start_server(|_| EchoApp, 1, |_| {});
    let mut client = TestClient::connect(server.addr());
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    client.send(Opcode::Binary, &payload);
    assert_eq!(client.recv().unwrap(), Incoming::Binary(payload.into()));
}

#[test]
fn fragmented_message_is_reassembled_and_an_interleaved_ping_answered() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let mut client = TestClient::connect(server.addr());
    // "héllo wörld" with both two-byte characters split across fragments.
    let text = "héllo wörld".as_bytes();
    let (a, rest) = text.split_at(2);
    let (b, c) = rest.split_at(6);
    client.send_frame(Opcode::Text, false, a);
    client.send(Opcode::Ping, b"are you there");
    client.send_frame(Opcode::Continuation, false, b);
    client.send(Opcode::Pong, b"unsolicited");
    client.send_frame(Opcode::Continuation, true, c);
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Pong("are you there".into())
    );
    assert_eq!(client.recv().unwrap(), Incoming::Text("héllo wörld".into()));
    // Binary fragments too, and the decoder is ready for a plain message after them.
    client.send_frame(Opcode::Binary, false, &[1, 2]);
    client.send_frame(Opcode::Continuation, true, &[3]);
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Binary(vec![1, 2, 3].into())
    );
    client.send_text("after");
    assert_eq!(client.recv().unwrap(), Incoming::Text("after".into()));
}

#[test]
fn ping_is_answered_with_a_pong_of_the_same_payload() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let mut client = TestClient::connect(server.addr());
    client.send(Opcode::Ping, b"");
    assert_eq!(client.recv().unwrap(), Incoming::Pong("".into()));
    let payload = [0xA5u8; 125];
    client.send(Opcode::Ping, &payload);
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Pong(payload.to_vec().into())
    );
}

#[test]
fn client_close_1000_is_echoed_and_the_server_closes_tcp() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let mut client = TestClient::connect(server.addr());
    client.send_close(1000, "bye");
    assert_eq!(client.expect_close(), 1000);
    client.expect_eof();
    let stats = server.wait_for_stats("the connection to count as closed", |s| s.closed == 1);
    assert_eq!(stats.protocol_errors, 0);
}

#[test]
fn close_without_a_code_is_answered_and_the_server_closes_tcp() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let mut client = TestClient::connect(server.addr());
    client.send(Opcode::Close, b"");
    let code = client.expect_close();
    // RFC 6455 §5.5.1: the reply echoes the code; with none received, 1000 or none.
    assert!(code == 1000 || code == 1005, "close code {code}");
    client.expect_eof();
}
