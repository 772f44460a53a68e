//! Tests of the blocking connection against a scripted peer on a local socket,
//! which decodes what the client sent as a server would.

use std::net::TcpListener;
use std::thread::JoinHandle;

use super::*;
use crate::ws::handshake::{accept_response, parse_request, HttpRequest};
use crate::ws::ProtocolError;

/// What the scripted peer decoded: a frame, or the error that ended decoding.
type Decoded = Result<Incoming, ProtocolError>;

/// A peer on a local socket that answers the upgrade, sends `after` behind its
/// 101, and returns the request and everything the client sent after it, decoded
/// as a server would (frames until the first protocol error).
fn scripted_server(after: &'static [u8]) -> (SocketAddr, JoinHandle<(HttpRequest, Vec<Decoded>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = BytesMut::new();
        let mut chunk = [0u8; 4096];
        let (request, len) = loop {
            if let Some(parsed) = parse_request(&buf, 8192).unwrap() {
                break parsed;
            }
            let n = stream.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.advance(len);
        let HttpRequest::Upgrade { key, .. } = &request else {
            panic!("not an upgrade: {request:?}");
        };
        stream.write_all(&accept_response(key)).unwrap();
        stream.write_all(after).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        buf.extend_from_slice(&rest);
        let mut decoder = Decoder::new(Role::Server, 1 << 20);
        let mut items = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => items.push(Ok(item)),
                Ok(None) => break,
                Err(error) => {
                    items.push(Err(error));
                    break;
                }
            }
        }
        (request, items)
    });
    (addr, thread)
}

#[test]
fn upgrade_sends_extra_headers_and_pipelined_frames_and_keeps_what_follows_the_101() {
    let (addr, server) = scripted_server(b"\x81\x02hi");
    let early = crate::ws::encode_masked(Opcode::Text, true, b"early", [1, 2, 3, 4]);
    let request = UpgradeRequest::new(addr.to_string(), "/room")
        .header("Origin", "https://example.com")
        .pipelined(&early);
    let mut ws = WsConnection::upgrade(
        TcpStream::connect(addr).unwrap(),
        &request,
        &Default::default(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    assert_eq!(
        ws.reader().recv_until(deadline).unwrap(),
        Some(Incoming::Text("hi".into()))
    );
    ws.writer().send_close(Some(1000)).unwrap();
    assert!(matches!(
        ws.writer().send(Opcode::Text, b"late"),
        Err(ClientError::NotConnected)
    ));
    ws.writer().shutdown();
    let (request, items) = server.join().unwrap();
    assert!(matches!(
        request,
        HttpRequest::Upgrade { path, origin: Some(origin), .. }
            if path == "/room" && origin == "https://example.com"
    ));
    assert_eq!(
        items,
        [
            Ok(Incoming::Text("early".into())),
            Ok(Incoming::Close(Some((1000, bytes::Bytes::new()))))
        ]
    );
}

#[test]
fn raw_frames_go_out_as_told_in_one_write() {
    let (addr, server) = scripted_server(b"");
    let url = WsUrl::parse(&format!("ws://{addr}/")).unwrap();
    let mut ws = WsConnection::open(&url, &ConnectOptions::default()).unwrap();
    ws.writer().send_close(None).unwrap();
    let keyed = RawFrame {
        mask: RawMask::Key([9, 8, 7, 6]),
        ..RawFrame::new(Opcode::Continuation, b"b")
    };
    ws.writer()
        .send_raw_frames(&[
            RawFrame::new(Opcode::Text, b"a").not_final(),
            keyed,
            RawFrame::new(Opcode::Text, b"bare").unmasked(),
        ])
        .unwrap();
    ws.writer().send_raw(b"garbage after it").unwrap();
    ws.writer().shutdown();
    let (_, items) = server.join().unwrap();
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[0], Ok(Incoming::Close(None)));
    assert_eq!(items[1], Ok(Incoming::Text("ab".into())));
    // RFC 6455 §5.1: the server refuses the unmasked frame.
    assert!(items[2].is_err(), "{:?}", items[2]);
}

#[test]
fn mask_keys_differ_across_refills() {
    let mut masks = MaskSource::default();
    let keys: Vec<[u8; 4]> = (0..200).map(|_| masks.next_mask().unwrap()).collect();
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    // 200 draws from 2^32 collide with probability under 1e-5.
    assert!(distinct.len() >= 199, "{} distinct keys", distinct.len());
    assert_ne!(random_nonce().unwrap(), random_nonce().unwrap());
}
