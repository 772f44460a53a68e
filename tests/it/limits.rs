//! Hostile clients at the door: `max_conns_per_ip` (429) and `max_connections` (503)
//! answered at accept with `Retry-After`, counted by reason, and released when clients
//! leave; a silent flood refused without waiting; a handshake trickled byte by byte
//! cut at its deadline; socket buffer sizes. Clients come from several loopback
//! addresses (127.0.0.x, bound before connecting) to play several hosts.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringcast::app::EchoApp;
use ringcast::ws::handshake::client_request;
use ringcast::ws::Opcode;
use socket2::{Domain, Protocol, Socket, Type};

use crate::client::{read_http_response, HttpResponse, TestClient};
use crate::{start_server, wait_until, WAIT};

const HOST_A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const HOST_B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const HOST_C: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// A TCP connection to `server` from `source` (any port).
fn connect_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind the source address");
    socket.connect(&server.into()).expect("connect");
    socket.into()
}

/// A WebSocket client from `source`; panics if the server refuses it.
fn client_from(source: Ipv4Addr, server: SocketAddr) -> TestClient {
    TestClient::upgrade(connect_from(source, server), &[])
}

/// Sends an upgrade request from `source` and reads the answer's head: the open
/// connection on 101 (it holds its place until dropped), else the status.
fn try_upgrade(source: Ipv4Addr, server: SocketAddr) -> Result<TcpStream, u16> {
    let mut stream = connect_from(source, server);
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let (request, _key) = client_request(&server.to_string(), "/", [7; 16]);
    stream.write_all(&request).expect("send the request");
    let mut raw = Vec::new();
    let mut chunk = [0u8; 1024];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).expect("an answer");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&chunk[..n]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    response.parse(&raw).expect("an HTTP answer");
    match response.code.expect("a status") {
        101 => Ok(stream),
        status => Err(status),
    }
}

/// Waits until a client from `source` is admitted, retrying on refusals (a leaving
/// client's place is given back after its socket closes); returns its connection.
fn admitted_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    wait_until("a client from the address to be admitted", || {
        try_upgrade(source, server).ok()
    })
}

/// An upgrade request from `source`, answered with an HTTP refusal read to its end.
fn refused_upgrade(source: Ipv4Addr, server: SocketAddr) -> HttpResponse {
    let mut stream = connect_from(source, server);
    let (request, _key) = client_request(&server.to_string(), "/", [7; 16]);
    stream.write_all(&request).expect("send the request");
    read_http_response(&mut stream)
}

fn assert_busy(response: &HttpResponse, status: u16) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(response.header("retry-after"), Some("5"), "{response:?}");
    assert_eq!(response.header("connection"), Some("close"), "{response:?}");
    assert!(!response.body.is_empty(), "a short text body: {response:?}");
}

/// `GET /metrics` from `source`.
fn metrics_from(source: Ipv4Addr, server: SocketAddr) -> String {
    let mut stream = connect_from(source, server);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send the request");
    let response = read_http_response(&mut stream);
    assert_eq!(response.status, 200);
    String::from_utf8(response.body).expect("UTF-8")
}

/// The sum over cores of the refusals counted with `reason` in a `/metrics` body.
fn refused_in_metrics(body: &str, reason: &str) -> u64 {
    let labels = format!(",reason=\"{reason}\"}} ");
    let counts: Vec<u64> = body
        .lines()
        .filter(|line| line.starts_with("ringcast_connections_refused_total{core="))
        .filter_map(|line| line.split_once(&labels))
        .map(|(_, count)| count.parse().expect("a count"))
        .collect();
    assert_eq!(counts.len(), 2, "one series per core in\n{body}");
    counts.iter().sum()
}

#[test]
fn a_client_over_its_address_limit_gets_429_and_other_addresses_are_served() {
    // Two cores: the count is per address across cores, whichever core accepts.
    let server = start_server(|_| EchoApp, 2, |c| c.max_conns_per_ip = 3);
    let held: Vec<TestClient> = (0..3).map(|_| client_from(HOST_A, server.addr())).collect();
    let refused = refused_upgrade(HOST_A, server.addr());
    assert_busy(&refused, 429);
    let mut other = client_from(HOST_B, server.addr());
    other.send(Opcode::Text, b"still served");
    assert_eq!(&other.recv_message()[..], b"still served");
    let stats = server.wait_for_stats("4 clients opened", |s| s.opened == 4);
    assert_eq!(stats.refused_per_ip, 1);
    assert_eq!(stats.refused_total, 0);
    assert_eq!(stats.accepted, 4, "a refused connection takes no slot");
    let metrics = metrics_from(HOST_C, server.addr());
    assert_eq!(refused_in_metrics(&metrics, "per_ip"), 1);
    assert_eq!(refused_in_metrics(&metrics, "total"), 0);
    drop(held);
}

#[test]
fn an_address_is_admitted_again_once_its_clients_have_gone() {
    let server = start_server(
        |_| EchoApp,
        2,
        |c| {
            c.max_conns_per_ip = 2;
            c.max_connections = 3;
        },
    );
    let mut upgraded = admitted_from(HOST_A, server.addr());
    for round in 0..3 {
        // One upgraded client, and one refused in its handshake (400, then held
        // open by the client): both count while they last, and both give their place
        // back when they end.
        // Retried while a place of the last round is still held (429): a leaving
        // client's place comes back only once the server has seen its socket close.
        let bad = wait_until("a malformed request answered with 400", || {
            let mut bad = connect_from(HOST_A, server.addr());
            bad.write_all(b"NOT HTTP\r\n\r\n").expect("send garbage");
            match read_http_response(&mut bad).status {
                400 => Some(bad),
                429 => None,
                other => panic!("round {round}: {other} for a malformed request"),
            }
        });
        assert_eq!(
            try_upgrade(HOST_A, server.addr()).err(),
            Some(429),
            "round {round}"
        );
        drop((upgraded, bad));
        upgraded = admitted_from(HOST_A, server.addr());
    }
    drop(upgraded);
    // Nothing leaked in the server's count either: it still takes 3 at once.
    let all: Vec<TcpStream> = [HOST_A, HOST_B, HOST_C]
        .into_iter()
        .map(|host| admitted_from(host, server.addr()))
        .collect();
    assert_eq!(try_upgrade(HOST_B, server.addr()).err(), Some(503));
    let stats = server.stats();
    assert!(stats.refused_per_ip >= 3, "{stats:?}");
    assert!(stats.refused_total >= 1, "{stats:?}");
    drop(all);
}

#[test]
fn a_client_over_the_server_limit_gets_503() {
    let server = start_server(|_| EchoApp, 2, |c| c.max_connections = 2);
    let first = client_from(HOST_A, server.addr());
    let _second = client_from(HOST_B, server.addr());
    assert_busy(&refused_upgrade(HOST_C, server.addr()), 503);
    let stats = server.wait_for_stats("the refusal to be counted", |s| s.refused_total == 1);
    assert_eq!(stats.refused_per_ip, 0);
    assert_eq!(stats.accepted, 2);
    drop(first);
    let metrics = wait_until("a place for the metrics request", || {
        let mut stream = connect_from(HOST_C, server.addr());
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send the request");
        let response = read_http_response(&mut stream);
        (response.status == 200).then(|| String::from_utf8(response.body).expect("UTF-8"))
    });
    assert!(refused_in_metrics(&metrics, "total") >= 1);
}

#[test]
fn a_silent_flood_over_the_limit_is_refused_at_once() {
    const FLOOD: usize = 40;
    // The handshake timeout stays at its default (10 s): an answer before it comes
    // from the refusal at accept, not from the timeout.
    let server = start_server(|_| EchoApp, 2, |c| c.max_conns_per_ip = 1);
    let started = Instant::now();
    let _silent = connect_from(HOST_A, server.addr());
    server.wait_for_stats("the first silent connection to hold its place", |s| {
        s.accepted == 1
    });
    let flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| connect_from(HOST_A, server.addr()))
        .collect();
    for mut stream in flood {
        // Nothing is sent: the answer comes without a request.
        let response = read_http_response(&mut stream);
        assert_busy(&response, 429);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused after {:?}",
        started.elapsed()
    );
    let stats = server.wait_for_stats("every refusal counted", |s| {
        s.refused_per_ip == FLOOD as u64
    });
    assert_eq!(stats.accepted, 1, "refused connections take no slot");
    assert_eq!(stats.opened, 0);
}

#[test]
fn a_handshake_trickled_byte_by_byte_is_cut_at_its_deadline() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    const PACE: Duration = Duration::from_millis(10);
    let server = start_server(
        |_| EchoApp,
        1,
        |c| c.handshake_timeout_ms = TIMEOUT.as_millis() as u64,
    );
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    // A request that never ends: a header line that goes on and on.
    let pad = [b'a'; 4096];
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().chain(&pad);
    let mut sent = 0;
    let mut chunk = [0u8; 64];
    for byte in request {
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        sent += 1;
        // The read's timeout paces the trickle: one byte per PACE until the server
        // ends the connection (EOF, or a reset for a byte that came after).
        stream.set_read_timeout(Some(PACE)).expect("read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => panic!("unexpected answer {:?}", &chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("{e}"),
        }
        assert!(started.elapsed() < WAIT, "still open after {sent} bytes");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= TIMEOUT, "cut after {elapsed:?}");
    assert!(
        elapsed < TIMEOUT + Duration::from_secs(1),
        "each byte extended the deadline: cut after {elapsed:?}"
    );
    assert!(sent >= 10, "only {sent} bytes trickled before the cut");
    let stats = server.wait_for_stats("the timeout counted", |s| s.handshake_timeouts == 1);
    assert_eq!((stats.accepted, stats.opened), (1, 0));
}

#[test]
fn a_server_with_socket_buffer_sizes_set_serves_clients() {
    let server = start_server(
        |_| EchoApp,
        1,
        |c| {
            c.send_buffer_bytes = Some(16 * 1024);
            c.recv_buffer_bytes = Some(16 * 1024);
        },
    );
    let mut client = TestClient::connect(server.addr());
    // More than the buffers hold at once, so the sizes are exercised.
    let payload = vec![b'x'; 256 * 1024];
    client.send(Opcode::Binary, &payload);
    assert_eq!(client.recv_message().len(), payload.len());
}
