//! permessage-deflate (RFC 7692, `deflate = true`): what is agreed for each offer,
//! compressed messages both ways, small messages left plain, the inflated size limit
//! (a decompression bomb gets 1009), RSV1 without the extension still 1002, and a
//! broadcast reaching deflate and plain clients each in their form.
//!
//! The client here is raw (the library's client does not speak deflate): it writes
//! the upgrade with the offer under test and reads frames itself, so it sees RSV1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use ringcast::app::{BroadcastApp, EchoApp};
use ringcast::ws::deflate::{compress_payload, inflate_message};
use ringcast::ws::{encode_masked, Opcode};

use crate::{start_server, Server, WAIT};

const PLAIN_ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// One frame from the server; a compressed one already inflated.
#[derive(Debug)]
struct Frame {
    opcode: u8,
    compressed: bool,
    payload: Vec<u8>,
}

struct DeflateClient {
    stream: TcpStream,
    /// Bytes read past what has been parsed.
    pending: Vec<u8>,
    /// The server's `Sec-WebSocket-Extensions` answer, if any.
    extensions: Option<String>,
}

impl DeflateClient {
    /// Upgrades with `offer` as the `Sec-WebSocket-Extensions` header (none if `None`).
    fn connect(addr: SocketAddr, offer: Option<&str>) -> DeflateClient {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let offer = offer.map_or(String::new(), |o| {
            format!("Sec-WebSocket-Extensions: {o}\r\n")
        });
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        stream.write_all(request.as_bytes()).expect("send upgrade");
        let mut client = DeflateClient {
            stream,
            pending: Vec::new(),
            extensions: None,
        };
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = response.parse(&client.pending).unwrap() {
                assert_eq!(response.code, Some(101));
                client.extensions = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                    .map(|h| String::from_utf8(h.value.to_vec()).unwrap());
                client.pending.drain(..len);
                return client;
            }
            client.read_more();
        }
    }

    fn read_more(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).expect("read within WAIT");
        assert!(n > 0, "server closed the connection");
        self.pending.extend_from_slice(&chunk[..n]);
    }

    /// Sends one final frame, compressed (RSV1) if `compress`.
    fn send(&mut self, opcode: Opcode, payload: &[u8], compress: bool) {
        let mut frame = if compress {
            encode_masked(opcode, true, &compress_payload(payload), [1, 2, 3, 4]).to_vec()
        } else {
            encode_masked(opcode, true, payload, [1, 2, 3, 4]).to_vec()
        };
        if compress {
            frame[0] |= 0x40;
        }
        self.stream.write_all(&frame).expect("send frame");
    }

    fn recv(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.parse() {
                return frame;
            }
            self.read_more();
        }
    }

    /// The next data frame, skipping pongs.
    fn recv_data(&mut self) -> Frame {
        loop {
            let frame = self.recv();
            if frame.opcode != 0xA {
                return frame;
            }
        }
    }

    fn parse(&mut self) -> Option<Frame> {
        let buf = &self.pending;
        if buf.len() < 2 {
            return None;
        }
        assert_eq!(buf[1] & 0x80, 0, "server frames are unmasked");
        let (len, start) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 if buf.len() >= 10 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            len => (len as usize, 2),
        };
        if buf.len() < start + len {
            return None;
        }
        assert_eq!(buf[0] & 0x80, 0x80, "the server does not fragment");
        let compressed = buf[0] & 0x40 != 0;
        let body = &buf[start..start + len];
        let payload = if compressed {
            inflate_message(body, 1 << 30)
                .expect("valid deflate")
                .to_vec()
        } else {
            body.to_vec()
        };
        let frame = Frame {
            opcode: buf[0] & 0x0f,
            compressed,
            payload,
        };
        self.pending.drain(..start + len);
        Some(frame)
    }

    /// Expects a close frame and returns its code.
    fn expect_close(&mut self) -> u16 {
        let frame = self.recv_data();
        assert_eq!(frame.opcode, 0x8, "close frame, got {frame:?}");
        u16::from_be_bytes([frame.payload[0], frame.payload[1]])
    }

    /// Round trip of a ping: the server's reader is running (the connection is open).
    fn ping(&mut self) {
        self.stream
            .write_all(&encode_masked(Opcode::Ping, true, b"ready", [9, 9, 9, 9]))
            .unwrap();
        assert_eq!(self.recv().opcode, 0xA);
    }
}

fn echo_server(deflate: bool, max_message_bytes: usize) -> Server {
    start_server(
        |_| EchoApp,
        1,
        move |c| {
            c.deflate = deflate;
            c.max_message_bytes = max_message_bytes;
        },
    )
}

/// A JSON-like message that compresses well.
fn chat_json(len: usize) -> Vec<u8> {
    let unit = br#"{"type":"room_message","room":"lobby","from":"client_0_1_7","message":"hello"}"#;
    unit.iter().copied().cycle().take(len).collect()
}

#[test]
fn negotiation_answers_each_offer() {
    let server = echo_server(true, 1 << 20);
    let answer = |offer: Option<&str>| DeflateClient::connect(server.addr(), offer).extensions;
    assert_eq!(answer(None), None, "no offer");
    assert_eq!(
        answer(Some("permessage-deflate")).as_deref(),
        Some(PLAIN_ANSWER)
    );
    assert_eq!(
        answer(Some(
            "permessage-deflate; client_max_window_bits; server_no_context_takeover"
        ))
        .as_deref(),
        Some(PLAIN_ANSWER),
        "parameters we honour anyway"
    );
    assert_eq!(
        answer(Some("permessage-deflate; server_max_window_bits=10")),
        Some(format!("{PLAIN_ANSWER}; server_max_window_bits=10")),
        "a smaller server window is echoed"
    );
    for declined in [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; mystery_parameter",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "x-webkit-deflate-frame",
    ] {
        assert_eq!(answer(Some(declined)), None, "{declined}");
    }
    assert_eq!(
        answer(Some(
            "permessage-deflate; server_max_window_bits=99, permessage-deflate; client_max_window_bits"
        ))
        .as_deref(),
        Some(PLAIN_ANSWER),
        "the first acceptable of two offers"
    );

    let off = echo_server(false, 1 << 20);
    let client = DeflateClient::connect(off.addr(), Some("permessage-deflate"));
    assert_eq!(client.extensions, None, "deflate off: never agreed");
}

#[test]
fn echo_is_compressed_both_ways() {
    let server = echo_server(true, 1 << 20);
    let mut client = DeflateClient::connect(server.addr(), Some("permessage-deflate"));
    let message = chat_json(10_000);
    client.send(Opcode::Text, &message, true);
    let echoed = client.recv_data();
    assert!(echoed.compressed, "a compressible reply goes compressed");
    assert_eq!((echoed.opcode, echoed.payload), (0x1, message.clone()));

    // An uncompressed message from a deflate client is fine too, and binary.
    client.send(Opcode::Binary, &message, false);
    let echoed = client.recv_data();
    assert!(echoed.compressed);
    assert_eq!((echoed.opcode, echoed.payload), (0x2, message));
}

#[test]
fn small_message_goes_uncompressed() {
    let server = echo_server(true, 1 << 20);
    let mut client = DeflateClient::connect(server.addr(), Some("permessage-deflate"));
    client.send(Opcode::Text, b"{\"type\":\"ping\"}", true);
    let echoed = client.recv_data();
    assert!(!echoed.compressed, "under MIN_COMPRESS_BYTES");
    assert_eq!(echoed.payload, b"{\"type\":\"ping\"}");
}

#[test]
fn small_server_window_limits_what_goes_compressed() {
    let server = echo_server(true, 1 << 20);
    let offer = "permessage-deflate; server_max_window_bits=8";
    let mut client = DeflateClient::connect(server.addr(), Some(offer));
    client.send(Opcode::Text, &chat_json(200), false);
    assert!(client.recv_data().compressed, "fits a 256-byte window");
    client.send(Opcode::Text, &chat_json(1000), false);
    let echoed = client.recv_data();
    assert!(!echoed.compressed, "would need a larger window");
    assert_eq!(echoed.payload, chat_json(1000));
}

#[test]
fn decompression_bomb_closes_with_1009() {
    let server = echo_server(true, 64 * 1024);
    let mut client = DeflateClient::connect(server.addr(), Some("permessage-deflate"));
    let zeros = vec![0u8; 10_000_000];
    let compressed = compress_payload(&zeros).len();
    assert!(
        compressed < 64 * 1024,
        "the frame itself is allowed: {compressed} bytes"
    );
    client.send(Opcode::Binary, &zeros, true);
    assert_eq!(client.expect_close(), 1009);
    assert_eq!(server.stats().protocol_errors, 1);
}

#[test]
fn rsv1_without_negotiation_closes_with_1002() {
    for deflate in [true, false] {
        let server = echo_server(deflate, 1 << 20);
        let mut client = DeflateClient::connect(server.addr(), None);
        client.send(Opcode::Text, &chat_json(500), true);
        assert_eq!(client.expect_close(), 1002, "deflate {deflate}");
    }
}

#[test]
fn broadcast_reaches_deflate_and_plain_clients_each_in_their_form() {
    let server = start_server(|_| BroadcastApp::default(), 2, |c| c.deflate = true);
    let offers = [
        Some("permessage-deflate"),
        None,
        Some("permessage-deflate"),
        None,
    ];
    let mut clients: Vec<_> = offers
        .iter()
        .map(|offer| DeflateClient::connect(server.addr(), *offer))
        .collect();
    for client in &mut clients {
        client.ping();
    }
    let message = chat_json(5000);
    clients[1].send(Opcode::Text, &message, false);
    clients[0].send(Opcode::Text, &message, true);
    for (client, offer) in clients.iter_mut().zip(offers) {
        for _ in 0..2 {
            let frame = client.recv_data();
            assert_eq!(frame.compressed, offer.is_some());
            assert_eq!((frame.opcode, &frame.payload), (0x1, &message));
        }
    }
}
