//! Unusual but legal input is served exactly (Unicode and emoji, 64 KiB messages,
//! binary and fragmented frames); garbage is refused without disturbing anyone else,
//! and the next client is answered correctly.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

use ringcast::ws::{encode_masked, Opcode};
use serde_json::{json, Value};

use super::{
    broadcast_from, error, join_in_turn, join_room, leave_room, member_joined, member_left,
    private_from, room_joined, room_message_from, send_private, send_to_room, with_id, RoomClient,
    Rooms, Setup,
};
use crate::WAIT;

on_cores_and_nodes!(
    unicode_and_emoji_pass_through_room_names_messages_and_metadata,
    a_64_kib_message_is_relayed_whole,
    binary_frames_are_parsed_like_text,
    fragmented_requests_are_parsed_whole,
    garbage_bytes_do_not_disturb_the_server,
    a_client_in_20000_rooms_disconnects_and_the_next_client_is_served,
);

/// `text` as a JSON string with every non-ASCII character escaped (`\uXXXX`, surrogate
/// pairs for emoji): the same string, spelled differently on the wire.
fn ascii_json(text: &str) -> String {
    let mut out = String::from("\"");
    for unit in text.encode_utf16() {
        match unit {
            0x20..=0x7E if unit != u16::from(b'"') && unit != u16::from(b'\\') => {
                out.push(char::from(unit as u8))
            }
            _ => out.push_str(&format!("\\u{unit:04x}")),
        }
    }
    out.push('"');
    out
}

fn unicode_and_emoji_pass_through_room_names_messages_and_metadata(setup: Setup) {
    let mut rooms = Rooms::start(setup);
    let [mut a, mut b] = rooms.clients();
    let room = "café ☕ 部屋 🎉 \"quoted\" \\ slash";
    a.join(room, 1);
    // The same name spelled with escapes is the same room.
    b.send_text(&format!(
        r#"{{"type":"join_room","room":{}}}"#,
        ascii_json(room)
    ));
    b.expect(&room_joined(room, 2));
    a.expect(&member_joined(room, &b.id, 2));
    for text in [
        "👩‍👩‍👧‍👦 family, 🇫🇷 flag, 😀",
        "زبان فارسی, עברית, Ελληνικά, ∑∫√",
        "nul \u{0} tab \t newline \n end",
        "\u{FEFF}\u{200D}\u{10FFFF}",
    ] {
        let message = json!(text);
        a.send(&send_to_room(room, message.clone()));
        b.expect(&room_message_from(room, &a.id, message.clone()));
        b.send(&send_private(&a.id, message.clone()));
        a.expect(&private_from(&b.id, message.clone()));
        a.send(&json!({"type": "broadcast", "message": message}));
        b.expect(&broadcast_from(&a.id, message));
    }
    let metadata = json!({"名前": "アン 🌸", "emoji": "🦀"});
    a.request(
        &json!({"type": "set_metadata", "metadata": metadata}),
        &json!({"type": "metadata_updated", "metadata": metadata}),
    );
    b.send(&leave_room(room));
    a.expect(&member_left(room, &b.id, 1));
    rooms.assert_quiet([&mut a, &mut b]);
}

/// 64 KiB exactly, mixing one- to four-byte characters.
fn text_of_64_kib() -> String {
    let mut text = String::with_capacity(64 << 10);
    let pattern = ['a', 'é', '€', '😀', '"', '\\', 'z'];
    for c in pattern.iter().cycle() {
        if text.len() + c.len_utf8() > (64 << 10) - 4 {
            break;
        }
        text.push(*c);
    }
    while text.len() < 64 << 10 {
        text.push('.');
    }
    text
}

fn a_64_kib_message_is_relayed_whole(setup: Setup) {
    let mut rooms = Rooms::start_with(setup, |c| c.max_message_bytes = 256 << 10);
    let [mut a, mut b, mut c] = rooms.clients();
    let room = rooms.room_on(0, "big");
    join_in_turn(&room, &mut [&mut a, &mut b, &mut c]);
    let text = text_of_64_kib();
    assert_eq!(text.len(), 64 << 10);
    let object = json!({"blob": text, "n": [1, 2, 3]});
    for message in [json!(text), object] {
        a.send(&send_to_room(&room, message.clone()));
        let expected = room_message_from(&room, &a.id, message.clone());
        b.expect(&expected);
        c.expect(&expected);
        b.send(&send_private(&c.id, message.clone()));
        c.expect(&private_from(&b.id, message.clone()));
        c.send(&json!({"type": "broadcast", "message": message}));
        let expected = broadcast_from(&c.id, message);
        a.expect(&expected);
        b.expect(&expected);
    }
    rooms.assert_quiet([&mut a, &mut b, &mut c]);
}

fn binary_frames_are_parsed_like_text(setup: Setup) {
    let mut rooms = Rooms::start(setup);
    let [mut a, mut b] = rooms.clients();
    let room = rooms.room_on(setup.places() - 1, "binary");
    let binary = |client: &mut RoomClient, request: Value| {
        client.send_binary(request.to_string().as_bytes());
    };
    // Answers come back as text frames (`recv` insists on it).
    binary(&mut a, join_room(&room));
    a.expect(&room_joined(&room, 1));
    binary(&mut b, with_id(join_room(&room), json!("bin")));
    b.expect(&with_id(room_joined(&room, 2), json!("bin")));
    a.expect(&member_joined(&room, &b.id, 2));
    let message = json!("über binary 🎉");
    binary(&mut a, send_to_room(&room, message.clone()));
    b.expect(&room_message_from(&room, &a.id, message.clone()));
    binary(&mut b, send_private(&a.id, message.clone()));
    a.expect(&private_from(&b.id, message.clone()));
    binary(&mut a, json!({"type": "broadcast", "message": message}));
    b.expect(&broadcast_from(&a.id, message));
    binary(
        &mut a,
        json!({"type": "set_metadata", "metadata": {"k": "v"}, "id": 1}),
    );
    a.expect(&json!({"type": "metadata_updated", "metadata": {"k": "v"}, "id": 1}));
    // Errors too, and bytes that are not even UTF-8.
    binary(&mut a, json!({"type": "dance"}));
    a.expect(&error("Unknown message type: dance"));
    for bytes in [
        &b"not json"[..],
        b"\xff\xfe{}",
        b"{\"type\":\"broadcast\",\"message\":\"\xc3\x28\"}",
    ] {
        a.send_binary(bytes);
        a.expect(&error("Invalid message format"));
    }
    binary(&mut b, leave_room(&room));
    a.expect(&member_left(&room, &b.id, 1));
    rooms.assert_quiet([&mut a, &mut b]);
}

fn fragmented_requests_are_parsed_whole(setup: Setup) {
    let mut rooms = Rooms::start(setup);
    let [mut a, mut b] = rooms.clients();
    let room = rooms.room_on(0, "fragments");
    join_in_turn(&room, &mut [&mut a, &mut b]);
    let message = json!("split 😀 in the middle of an emoji");
    for opcode in [Opcode::Text, Opcode::Binary] {
        let request = send_to_room(&room, message.clone()).to_string();
        let bytes = request.as_bytes();
        // Cut inside the emoji's four bytes, with a ping between the fragments.
        let emoji = request.find('😀').expect("the emoji") + 2;
        let ws = a.ws();
        ws.send_frame(opcode, false, &bytes[..10]);
        ws.send(Opcode::Ping, b"between");
        ws.send_frame(Opcode::Continuation, false, &bytes[10..emoji]);
        ws.send_frame(Opcode::Continuation, true, &bytes[emoji..]);
        b.expect(&room_message_from(&room, &a.id, message.clone()));
    }
    // The pongs are skipped by `recv`; nothing else came.
    rooms.assert_quiet([&mut a, &mut b]);
}

/// Xorshift bytes: garbage that is the same on every run.
fn garbage(len: usize, mut seed: u32) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        })
        .collect()
}

/// Sends `bytes` on a raw socket to `addr` (then FIN when `finish`), and waits for the
/// server to end the connection, whatever it answers first.
fn raw_exchange(addr: SocketAddr, bytes: &[u8], finish: bool) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    // The server may close before reading it all: a failed write is fine.
    let _ = stream.write_all(bytes);
    if finish {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server kept a garbage connection open: {e}"),
    }
}

fn garbage_bytes_do_not_disturb_the_server(setup: Setup) {
    let mut rooms = Rooms::start(setup);
    let room = rooms.room_on(0, "sturdy");
    let [mut a, mut b] = rooms.clients();
    join_in_turn(&room, &mut [&mut a, &mut b]);

    // Garbage instead of an upgrade request, to every node of a cluster.
    let places = setup.places();
    raw_exchange(rooms.addr_of(0), &garbage(16 << 10, 7), false);
    raw_exchange(rooms.addr_of(1 % places), &garbage(300, 11), true);
    raw_exchange(
        rooms.addr_of(2 % places),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        true,
    );
    raw_exchange(
        rooms.addr_of(places - 1),
        b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
        true,
    );

    // Garbage after the upgrade, from members: each is failed (with the close code
    // named, or by its own reset) and leaves the room.
    let not_utf8 = encode_masked(
        Opcode::Text,
        true,
        b"{\"type\":\"broadcast\",\"message\":\"\xc3\x28\"}",
        [1, 2, 3, 4],
    );
    let breakers: [(Vec<u8>, Option<u16>); 4] = [
        (b"\xff\xffgarbage\x00\x01\x02\x03".to_vec(), Some(1002)),
        (not_utf8.to_vec(), Some(1007)),
        // Half a frame header, then a reset.
        (b"\x81\xfe\x10".to_vec(), None),
        (garbage(64, 3), None),
    ];
    for (n, (bytes, code)) in breakers.into_iter().enumerate() {
        let mut breaker = rooms.client_on(n % places);
        breaker.join(&room, 3);
        a.expect(&member_joined(&room, &breaker.id, 3));
        b.expect(&member_joined(&room, &breaker.id, 3));
        let id = breaker.id.clone();
        let mut ws = breaker.into_ws();
        ws.send_raw(&bytes);
        match code {
            Some(code) => {
                assert_eq!(ws.expect_close(), code);
                ws.expect_eof();
            }
            None => ws.reset(),
        }
        a.expect(&member_left(&room, &id, 2));
        b.expect(&member_left(&room, &id, 2));
    }

    // The others are served as before, and a newcomer is answered correctly.
    let message = json!("still standing");
    a.send(&send_to_room(&room, message.clone()));
    b.expect(&room_message_from(&room, &a.id, message));
    let mut newcomer = RoomClient::connect(rooms.addr_of(places - 1));
    newcomer.join(&room, 3);
    a.expect(&member_joined(&room, &newcomer.id, 3));
    b.expect(&member_joined(&room, &newcomer.id, 3));
    rooms.assert_quiet([&mut a, &mut b, &mut newcomer]);
}

/// Issue 10's crash: on one core, a client in 20,000 rooms that disconnected made the
/// core thread recurse once per room (`thread 'ringcast-core-0' has overflowed its
/// stack`, the process aborted). Its leaves must run as a loop, and the server serve on.
fn a_client_in_20000_rooms_disconnects_and_the_next_client_is_served(setup: Setup) {
    const ROOMS: usize = 20_000;
    let mut rooms = Rooms::start_with(setup, |config| config.max_rooms_per_client = ROOMS);
    let [mut heavy, mut watcher] = rooms.clients();
    let last = format!("room{}", ROOMS - 1);
    let joins: Vec<Value> = (0..ROOMS).map(|n| join_room(&format!("room{n}"))).collect();
    for chunk in joins.chunks(500) {
        heavy.send_burst(chunk);
    }
    for n in 0..ROOMS {
        let joined = heavy.recv();
        assert_eq!(joined["type"], "room_joined", "join {n}: {joined}");
    }
    watcher.join(&last, 2);
    heavy.expect(&member_joined(&last, &watcher.id, 2));
    let heavy_id = heavy.id.clone();
    drop(heavy.into_ws());
    watcher.expect(&member_left(&last, &heavy_id, 1));
    let mut next = RoomClient::connect(rooms.addr_of(setup.places() - 1));
    next.join("room0", 1);
    next.join(&last, 2);
    watcher.expect(&member_joined(&last, &next.id, 2));
}
