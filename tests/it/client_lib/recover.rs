//! History recovery (issue 13) from the client's side: a reconnecting [`Client`] rejoins
//! each room with `recover` = the position it had read to, delivers what the server
//! replays once, and reports `Recovered`, `HistoryLost`, gaps and duplicates.
//!
//! Against a scripted server that speaks the extension (these run now), and against
//! the real room server behind a [`Proxy`] (`proxy.rs`) that cuts the client off while the server
//! stays up.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use bytes::BytesMut;
use ringcast::client::{Client, ClientConfig, ClientMessage, Event, RoomPosition, ServerMessage};
use ringcast::ws::handshake::{accept_response, parse_request, HttpRequest};
use ringcast::ws::{encode_unmasked, Decoder, Incoming, Opcode, Role};
use serde_json::{json, Value};

use super::proxy::Proxy;
use super::{connect, fast_policy, message, next_event, recv, rooms_server, url, wait_for, SEED};
use crate::WAIT;

/// One connection of the scripted server: upgraded, `welcome` sent.
pub(crate) struct Peer {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Peer {
    /// Accepts the next connection on `listener` and welcomes it as `client_id`.
    pub(crate) fn accept(listener: &TcpListener, client_id: &str) -> Peer {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = BytesMut::new();
        let key = loop {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).expect("read the request");
            assert!(n > 0, "the client left during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
            if let Some((request, len)) = parse_request(&buf, 8192).expect("a valid request") {
                let _ = buf.split_to(len);
                match request {
                    HttpRequest::Upgrade { key, .. } => break key,
                    other => panic!("expected an upgrade, got {other:?}"),
                }
            }
        };
        stream.write_all(&accept_response(&key)).unwrap();
        let mut peer = Peer {
            stream,
            decoder: Decoder::new(Role::Server, 1 << 20),
            buf,
        };
        peer.send(json!({"type": "welcome", "client_id": client_id, "timestamp": 1}));
        peer
    }

    pub(crate) fn send(&mut self, message: Value) {
        let frame = encode_unmasked(Opcode::Text, message.to_string().as_bytes());
        self.stream.write_all(&frame).expect("send to the client");
    }

    /// The client's next text message, as JSON.
    pub(crate) fn recv(&mut self) -> Value {
        loop {
            match self.decoder.decode(&mut self.buf).expect("a valid frame") {
                Some(Incoming::Text(payload)) => {
                    return serde_json::from_slice(&payload).expect("JSON from the client")
                }
                Some(other) => panic!("expected a text message, got {other:?}"),
                None => {
                    let mut chunk = [0u8; 4096];
                    let n = self.stream.read(&mut chunk).expect("read from the client");
                    assert!(n > 0, "the client left");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }

    /// Ends the TCP connection without a close frame: the client sees it lost.
    pub(crate) fn cut(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// `room_joined` for room `r`, as a server with history sends it.
pub(crate) fn room_joined(epoch: &str, offset: u64, recovered: Option<bool>) -> Value {
    let mut joined = json!({"type": "room_joined", "room": "r", "members": 2,
        "epoch": epoch, "offset": offset});
    if let Some(recovered) = recovered {
        joined["recovered"] = json!(recovered);
    }
    joined
}

/// A room message in `r` at `offset`, whose text is `m<offset>`.
pub(crate) fn room_message(offset: u64) -> Value {
    json!({"type": "room_message", "room": "r", "from": "client_other",
        "message": format!("m{offset}"), "timestamp": 1, "offset": offset})
}

fn reconnecting_config() -> ClientConfig {
    ClientConfig {
        reconnect: Some(fast_policy()),
        jitter_seed: Some(SEED),
        ..ClientConfig::default()
    }
}

/// The next event, which must be the room message at `offset` (with text `m<offset>`).
fn expect_room_message(client: &Client, offset: u64) {
    match message(next_event(client)) {
        Some(ServerMessage::RoomMessage {
            offset: got,
            message,
            ..
        }) => {
            assert_eq!(got, Some(offset));
            assert_eq!(message, json!(format!("m{offset}")));
        }
        other => panic!("expected room message {offset}, got {other:?}"),
    }
}

/// Skips to the next `Connected` with `reconnected: true`, then expects its welcome.
fn wait_for_reconnect(client: &Client) {
    wait_for(client, "reconnected", |e| match e {
        Event::Connected {
            reconnected: true, ..
        } => Some(()),
        _ => None,
    });
    assert!(matches!(
        message(next_event(client)),
        Some(ServerMessage::Welcome { .. })
    ));
}

#[test]
fn a_rejoin_asks_from_the_last_offset_read_and_reports_the_replay_after_it() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut first = Peer::accept(&listener, "client_1");
        let join = first.recv();
        assert_eq!(
            join,
            json!({"type": "join_room", "room": "r"}),
            "no recover"
        );
        first.send(room_joined("e1", 2, None));
        first.send(room_message(3));
        // Our own message takes offset 4, which the server never sends back to us.
        assert_eq!(first.recv()["type"], "room_message");
        first.send(room_message(5));
        first.cut();

        let mut second = Peer::accept(&listener, "client_2");
        assert_eq!(
            second.recv(),
            json!({"type": "join_room", "room": "r", "recover": {"epoch": "e1", "offset": 5}})
        );
        second.send(room_joined("e1", 7, Some(true)));
        for offset in [6, 7, 8] {
            second.send(room_message(offset));
        }
        second.cut();

        // A restarted server: a new epoch, and what came meanwhile is gone.
        let mut third = Peer::accept(&listener, "client_3");
        assert_eq!(third.recv()["recover"], json!({"epoch": "e1", "offset": 8}));
        third.send(room_joined("e2", 1, Some(false)));
        third.send(room_message(2));
        third.recv()
    });

    let client = Client::start(&url(addr), reconnecting_config()).expect("start");
    client.handle().join_room("r").unwrap();
    wait_for(&client, "room_joined", |e| match message(e) {
        Some(ServerMessage::RoomJoined { offset, .. }) => offset,
        _ => None,
    });
    expect_room_message(&client, 3);
    client.handle().room_message("r", "mine").unwrap();
    // No gap reported for our own message's offset.
    expect_room_message(&client, 5);

    wait_for_reconnect(&client);
    assert!(matches!(
        message(next_event(&client)),
        Some(ServerMessage::RoomJoined {
            recovered: Some(true),
            offset: Some(7),
            ..
        })
    ));
    expect_room_message(&client, 6);
    expect_room_message(&client, 7);
    assert!(matches!(
        next_event(&client),
        Event::Recovered { room, missed: 2 } if room == "r"
    ));
    expect_room_message(&client, 8);

    wait_for_reconnect(&client);
    assert!(matches!(
        message(next_event(&client)),
        Some(ServerMessage::RoomJoined {
            recovered: Some(false),
            ..
        })
    ));
    assert!(matches!(next_event(&client), Event::HistoryLost { room } if room == "r"));
    expect_room_message(&client, 2);
    client.handle().room_message("r", "done").unwrap();
    assert_eq!(server.join().unwrap()["message"], "done");
    client.close();
}

#[test]
fn a_gap_is_reported_before_the_message_and_a_duplicate_is_dropped() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut peer = Peer::accept(&listener, "client_1");
        peer.recv();
        peer.send(room_joined("e1", 0, None));
        for offset in [1, 4, 4, 5] {
            peer.send(room_message(offset));
        }
        peer.recv()
    });
    let client = Client::start(&url(addr), ClientConfig::default()).expect("start");
    client.handle().join_room("r").unwrap();
    wait_for(&client, "room_joined", |e| match message(e) {
        Some(ServerMessage::RoomJoined { .. }) => Some(()),
        _ => None,
    });
    expect_room_message(&client, 1);
    assert!(matches!(
        next_event(&client),
        Event::Gap { room, missing: 2, offset: 4 } if room == "r"
    ));
    expect_room_message(&client, 4);
    assert!(matches!(
        next_event(&client),
        Event::DuplicateDropped { room, offset: 4 } if room == "r"
    ));
    expect_room_message(&client, 5);
    client.handle().broadcast("bye").unwrap();
    assert_eq!(server.join().unwrap()["type"], "broadcast");
    client.close();
}

/// A room member on its own connection, joined to `room`.
fn member(server: SocketAddr, room: &str) -> ringcast::client::Connection {
    let mut conn = connect(server);
    conn.send(&ClientMessage::join_room(room)).unwrap();
    assert!(matches!(recv(&mut conn), ServerMessage::RoomJoined { .. }));
    conn
}

/// Skips to `conn`'s next room message: its offset and text.
pub(crate) fn next_room_message(conn: &mut ringcast::client::Connection) -> (u64, Value) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let ServerMessage::RoomMessage {
            offset, message, ..
        } = recv(conn)
        {
            return (offset.expect("room messages carry an offset"), message);
        }
    }
    panic!("no room message within {WAIT:?}");
}

#[test]
fn a_join_with_id_and_recover_gets_both_back_then_the_messages_after_the_position() {
    let server = rooms_server(|_| {});
    let mut first = connect(server.addr());
    first
        .send_with_id(&ClientMessage::join_room("r"), &1.into())
        .unwrap();
    let epoch = match recv(&mut first) {
        ServerMessage::RoomJoined {
            epoch: Some(epoch),
            offset: Some(0),
            id: Some(id),
            ..
        } if id == 1.into() => epoch,
        other => panic!("expected room_joined at offset 0 with its epoch, got {other:?}"),
    };
    let sender = member(server.addr(), "r");
    for text in ["one", "two", "three"] {
        sender
            .send(&ClientMessage::room_message("r", text))
            .unwrap();
    }
    let offsets: Vec<u64> = (0..3).map(|_| next_room_message(&mut first).0).collect();
    assert_eq!(offsets, [1, 2, 3]);

    let mut late = connect(server.addr());
    let from = RoomPosition {
        epoch: epoch.clone(),
        offset: 1,
    };
    late.send_with_id(&ClientMessage::join_room_recovering("r", from), &"j".into())
        .unwrap();
    assert!(matches!(recv(&mut late), ServerMessage::RoomJoined {
            recovered: Some(true), offset: Some(3), id: Some(id), epoch: Some(e), ..
        } if id == "j".into() && e == epoch));
    assert_eq!(next_room_message(&mut late), (2, json!("two")));
    assert_eq!(next_room_message(&mut late), (3, json!("three")));

    // Another epoch: not recovered, and nothing replayed before live messages.
    let mut stranger = connect(server.addr());
    let from = RoomPosition {
        epoch: format!("{epoch}-other"),
        offset: 1,
    };
    stranger
        .send(&ClientMessage::join_room_recovering("r", from))
        .unwrap();
    assert!(matches!(
        recv(&mut stranger),
        ServerMessage::RoomJoined {
            recovered: Some(false),
            offset: Some(3),
            ..
        }
    ));
    sender
        .send(&ClientMessage::room_message("r", "four"))
        .unwrap();
    assert_eq!(next_room_message(&mut stranger), (4, json!("four")));
}

#[test]
fn a_client_that_reconnects_recovers_exactly_the_messages_it_missed_then_goes_live() {
    let server = rooms_server(|_| {});
    let proxy = Proxy::start(server.addr());
    let client = Client::start(&url(proxy.addr()), reconnecting_config()).expect("start");
    client.handle().join_room("r").unwrap();
    let epoch = wait_for(&client, "room_joined", |e| match message(e) {
        Some(ServerMessage::RoomJoined { epoch, .. }) => Some(epoch),
        _ => None,
    });
    let sender = member(server.addr(), "r");
    // A witness that stays connected: it sees when the server has taken the messages.
    let mut witness = member(server.addr(), "r");
    sender
        .send(&ClientMessage::room_message("r", "before"))
        .unwrap();
    let read_to = wait_for(&client, "the first message", |e| match message(e) {
        Some(ServerMessage::RoomMessage { offset, .. }) => Some(offset.expect("an offset")),
        _ => None,
    });
    assert_eq!(next_room_message(&mut witness).0, read_to);

    proxy.cut();
    wait_for(&client, "disconnected", |e| match e {
        Event::Disconnected { .. } => Some(()),
        _ => None,
    });
    for i in 1..=3 {
        sender
            .send(&ClientMessage::room_message("r", format!("missed {i}")))
            .unwrap();
    }
    for i in 1..=3 {
        assert_eq!(next_room_message(&mut witness).0, read_to + i);
    }
    proxy.open();

    wait_for_reconnect(&client);
    match message(next_event(&client)) {
        Some(ServerMessage::RoomJoined {
            room,
            epoch: e,
            offset,
            recovered,
            ..
        }) => {
            assert_eq!(room, "r");
            assert_eq!(e, epoch, "the same server, the same epoch");
            assert_eq!(offset, Some(read_to + 3));
            assert_eq!(recovered, Some(true));
        }
        other => panic!("expected the rejoin's room_joined, got {other:?}"),
    }
    for i in 1..=3 {
        match message(next_event(&client)) {
            Some(ServerMessage::RoomMessage {
                offset, message, ..
            }) => {
                assert_eq!(offset, Some(read_to + i));
                assert_eq!(message, json!(format!("missed {i}")));
            }
            other => panic!("expected replayed message {i}, got {other:?}"),
        }
    }
    assert!(matches!(
        next_event(&client),
        Event::Recovered { room, missed: 3 } if room == "r"
    ));
    sender
        .send(&ClientMessage::room_message("r", "live"))
        .unwrap();
    match message(next_event(&client)) {
        Some(ServerMessage::RoomMessage {
            offset, message, ..
        }) => {
            assert_eq!(offset, Some(read_to + 4));
            assert_eq!(message, json!("live"));
        }
        other => panic!("expected the live message, got {other:?}"),
    }
    client.close();
}

#[test]
fn a_client_whose_server_restarted_reports_the_room_history_lost() {
    let mut server = rooms_server(|_| {});
    let proxy = Proxy::start(server.addr());
    let client = Client::start(&url(proxy.addr()), reconnecting_config()).expect("start");
    client.handle().join_room("r").unwrap();
    let epoch = wait_for(&client, "room_joined", |e| match message(e) {
        Some(ServerMessage::RoomJoined { epoch, .. }) => Some(epoch),
        _ => None,
    });
    assert!(epoch.is_some(), "the server gives the room's epoch");
    let sender = member(server.addr(), "r");
    sender
        .send(&ClientMessage::room_message("r", "before"))
        .unwrap();
    wait_for(&client, "the first message", |e| match message(e) {
        Some(ServerMessage::RoomMessage { .. }) => Some(()),
        _ => None,
    });

    proxy.cut();
    server.take_handle().shutdown().expect("server stops");
    let restarted = rooms_server(|_| {});
    proxy.set_upstream(restarted.addr());
    proxy.open();

    wait_for_reconnect(&client);
    match message(next_event(&client)) {
        Some(ServerMessage::RoomJoined {
            epoch: e,
            recovered,
            ..
        }) => {
            assert_ne!(e, epoch, "a restarted server starts a new epoch");
            assert_eq!(recovered, Some(false));
        }
        other => panic!("expected the rejoin's room_joined, got {other:?}"),
    }
    assert!(matches!(next_event(&client), Event::HistoryLost { room } if room == "r"));
    client.close();
}
