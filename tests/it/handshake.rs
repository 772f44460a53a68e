//! The HTTP upgrade over real sockets: accepted, refused with the right status, the
//! health check, the metrics, the origin allow-list, and the handshake timeout. Not the codec's parsing details (unit tests).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringcast::app::EchoApp;
use ringcast::ws::{Incoming, Opcode};

use crate::client::{http_exchange, TestClient};
use crate::{start_server, WAIT};

fn upgrade_request(extra_headers: &str) -> Vec<u8> {
    format!("GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra_headers}\r\n")
        .into_bytes()
}

#[test]
fn upgrade_is_accepted_with_101_and_the_rfc_accept_key() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // The example of RFC 6455 §1.3.
    let request = upgrade_request(
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    stream.write_all(&request).unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 1024];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream
            .read(&mut chunk)
            .expect("the server answers the upgrade");
        assert!(
            n > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8(raw).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    assert!(
        text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{text}"
    );
    server.wait_for_stats("the connection to count as opened", |s| s.opened == 1);
    assert_eq!(server.stats().rejected_handshakes, 0);
}

#[test]
fn frames_pipelined_behind_the_upgrade_request_are_served() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let frame = ringcast::ws::encode_masked(Opcode::Text, true, b"early", [1, 2, 3, 4]);
    let stream = TcpStream::connect(server.addr()).unwrap();
    let mut client = TestClient::upgrade(stream, &frame);
    assert_eq!(&client.recv_message()[..], b"early");
}

#[test]
fn garbage_instead_of_a_request_gets_400() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let response = http_exchange(
        server.addr(),
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
    );
    assert_eq!(response.status, 400);
    assert_eq!(server.stats().rejected_handshakes, 1);
}

#[test]
fn upgrade_without_a_key_gets_400() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let response = http_exchange(
        server.addr(),
        &upgrade_request("Sec-WebSocket-Version: 13\r\n"),
    );
    assert_eq!(response.status, 400);
    assert_eq!(server.stats().rejected_handshakes, 1);
}

#[test]
fn post_gets_405() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let request = b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n";
    let response = http_exchange(server.addr(), request);
    assert_eq!(response.status, 405);
    assert_eq!(server.stats().rejected_handshakes, 1);
}

#[test]
fn version_8_gets_426_naming_version_13() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let request = upgrade_request(
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
    );
    let response = http_exchange(server.addr(), &request);
    assert_eq!(response.status, 426);
    assert_eq!(response.header("Sec-WebSocket-Version"), Some("13"));
    assert_eq!(server.stats().rejected_handshakes, 1);
}

#[test]
fn plain_get_without_upgrade_gets_426() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let response = http_exchange(server.addr(), b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 426);
    assert_eq!(server.stats().rejected_handshakes, 1);
}

#[test]
fn get_slash_serves_the_page_with_its_security_headers_unless_turned_off() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    for (path, kind) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let response = http_exchange(server.addr(), request.as_bytes());
        assert_eq!(response.status, 200, "{path}");
        let header = |name: &str| response.header(name).unwrap_or("").to_string();
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let csp = header("content-security-policy");
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!response.body.is_empty(), "{path}");
    }
    let off = start_server(|_| EchoApp, 1, |c| c.page = false);
    let response = http_exchange(off.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 426);
}

#[test]
fn header_block_reaching_max_handshake_bytes_gets_431() {
    const MAX: usize = 4096;
    let server = start_server(|_| EchoApp, 1, |c| c.max_handshake_bytes = MAX);
    // Exactly MAX bytes and no end of headers: the server reads all of it before
    // refusing, so its close is a clean FIN and the answer cannot be lost to a reset.
    let mut request = upgrade_request("");
    request.truncate(request.len() - 2);
    request.extend_from_slice(b"X-Padding: ");
    request.resize(MAX, b'a');
    let response = http_exchange(server.addr(), &request);
    assert_eq!(response.status, 431);
    assert_eq!(server.stats().rejected_handshakes, 1);
}

#[test]
fn healthz_answers_200() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let response = http_exchange(server.addr(), b"GET /healthz HTTP/1.1\r\nHost: lb\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ok\n");
    assert_eq!(server.stats().rejected_handshakes, 0);
    assert_eq!(server.stats().opened, 0);
}

/// Sends an upgrade request, with `Origin: origin` when given, and returns the status
/// of the answer once its header block is in.
fn upgrade_status(server: &crate::Server, origin: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let request = upgrade_request(&format!(
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}"
    ));
    stream.write_all(&request).unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 1024];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).expect("the server answers");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&raw);
    text[9..12].parse().expect("a status code")
}

#[test]
fn only_listed_origins_may_upgrade_when_allowed_origins_is_set() {
    let server = start_server(
        |_| EchoApp,
        1,
        |c| {
            c.allowed_origins = vec!["https://chat.example.com".into()];
        },
    );
    assert_eq!(
        upgrade_status(&server, Some("https://chat.example.com")),
        101
    );
    assert_eq!(upgrade_status(&server, None), 101);
    assert_eq!(upgrade_status(&server, Some("https://evil.example")), 403);
    server.wait_for_stats("one refused, two upgraded", |s| {
        s.rejected_handshakes == 1 && s.opened == 2
    });
    // Without an allow-list, any origin is served.
    let open = start_server(|_| EchoApp, 1, |_| {});
    assert_eq!(upgrade_status(&open, Some("https://evil.example")), 101);
}

/// The value of `name{core="N"}` in a `GET /metrics` body.
fn metric(body: &str, name: &str, core: u16) -> u64 {
    let series = format!("{name}{{core=\"{core}\"}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series:?} in\n{body}"))
        .parse()
        .expect("a count")
}

#[test]
fn metrics_give_each_cores_counts() {
    let server = start_server(|_| EchoApp, 2, |_| {});
    let clients: Vec<_> = (0..8).map(|_| TestClient::connect(server.addr())).collect();
    let rejected = http_exchange(server.addr(), b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(rejected.status, 426);
    server.wait_for_stats("clients upgraded, one refused", |s| {
        s.opened == 8 && s.rejected_handshakes == 1
    });
    let response = http_exchange(server.addr(), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    let body = String::from_utf8(response.body).expect("UTF-8");
    let mut open = 0;
    for core in 0..2 {
        let stats = server.core_stats(core);
        assert_eq!(
            metric(&body, "ringcast_connections_open", core),
            stats.open()
        );
        assert_eq!(
            metric(&body, "ringcast_handshakes_rejected_total", core),
            stats.rejected_handshakes
        );
        open += metric(&body, "ringcast_connections_open", core);
        assert_eq!(metric(&body, "ringcast_backlog_envelopes", core), 0);
        assert_eq!(
            metric(&body, "ringcast_backlogged_envelopes_total", core),
            0
        );
    }
    assert_eq!(open, 8);
    drop(clients);
}

#[test]
fn handshake_timeout_closes_a_connection_that_sends_nothing() {
    const TIMEOUT: Duration = Duration::from_millis(150);
    let server = start_server(
        |_| EchoApp,
        1,
        |c| c.handshake_timeout_ms = TIMEOUT.as_millis() as u64,
    );
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "no answer expected, got {rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(
        started.elapsed() >= TIMEOUT,
        "closed after {:?}",
        started.elapsed()
    );
    assert_eq!(server.stats().opened, 0);
    // Counted once, however many sweeps pass before its task has cleaned up.
    let stats = server.wait_for_stats("the timeout counted", |s| s.handshake_timeouts == 1);
    assert_eq!(stats.rejected_handshakes, 0);
}

#[test]
fn metrics_count_bytes_frames_fan_outs_and_handshake_failures_by_status() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let mut client = TestClient::connect(server.addr());
    client.send_text("hello");
    assert!(matches!(client.recv(), Ok(Incoming::Text(payload)) if &payload[..] == b"hello"));
    let refused = http_exchange(server.addr(), b"POST / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(refused.status, 405);
    server.wait_for_stats("the refusal counted", |s| s.rejected_handshakes == 1);
    let response = http_exchange(server.addr(), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let body = String::from_utf8(response.body).expect("UTF-8");
    let value = |line_start: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line_start} in\n{body}"))
    };
    // After the upgrade: the 11-byte masked frame of "hello".
    assert_eq!(value("ringcast_bytes_received_total{core=\"0\"}"), 11);
    // The echo: a 7-byte frame.
    assert_eq!(value("ringcast_messages_sent_total{core=\"0\"}"), 1);
    assert_eq!(value("ringcast_bytes_sent_total{core=\"0\"}"), 7);
    assert_eq!(value("ringcast_outbound_queue_bytes_count{core=\"0\"}"), 1);
    assert_eq!(
        value("ringcast_handshake_failures_total{core=\"0\",status=\"405\"}"),
        1
    );
    assert_eq!(
        value("ringcast_handshake_failures_total{core=\"0\",status=\"426\"}"),
        0
    );
}
