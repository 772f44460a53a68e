//! wss:// (issue 14): the server terminates TLS on every core with a certificate made
//! at test time (rcgen); the client library trusts it through `tls_ca` (`--ca`).
//! Echo and rooms run over TLS; a plain-text client on the TLS port gets no upgrade;
//! a TLS handshake that never completes is cut at `handshake_timeout_ms`; SIGHUP
//! reloads the certificate for new connections while an open one keeps working; a
//! bad certificate or key refuses to start.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringcast::app::EchoApp;
use ringcast::client::{
    ClientMessage, ConnectOptions, Connection, ServerMessage, WsConnection, WsUrl,
};
use ringcast::rooms::RoomsApp;
use ringcast::ws::{Incoming, Opcode};

use crate::load::load;
use crate::serve_cli::{serve, wait_exit};
use crate::{start_server, wait_until, WAIT};

/// A certificate for 127.0.0.1 and localhost, and its key, as PEM files in a fresh
/// directory named after the test.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl Pki {
    /// Makes a test server's config serve wss:// with this certificate and key.
    pub(crate) fn serve_with(&self, config: &mut ringcast::config::Config) {
        config.tls_cert = Some(self.cert.clone());
        config.tls_key = Some(self.key.clone());
    }

    pub(crate) fn new(test: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("ringcast-tls-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        pki.renew();
        pki
    }

    /// Writes a new self-signed certificate and key over the files.
    fn renew(&self) {
        let made = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        std::fs::write(&self.cert, made.cert.pem()).unwrap();
        std::fs::write(&self.key, made.key_pair.serialize_pem()).unwrap();
    }

    /// A copy of the current certificate, for a client to trust.
    fn keep_ca(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::copy(&self.cert, &path).unwrap();
        path
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn options(ca: &Path) -> ConnectOptions {
    ConnectOptions {
        tls_ca: Some(ca.to_path_buf()),
        handshake_timeout: WAIT,
        ..ConnectOptions::default()
    }
}

fn wss(addr: SocketAddr) -> String {
    format!("wss://{addr}/")
}

fn open_ws(addr: SocketAddr, ca: &Path) -> Result<WsConnection, ringcast::client::ClientError> {
    WsConnection::open(&WsUrl::parse(&wss(addr)).unwrap(), &options(ca))
}

fn echo(conn: &mut WsConnection, text: &str) {
    conn.writer().send(Opcode::Text, text.as_bytes()).unwrap();
    match conn.reader().recv_until(Instant::now() + WAIT).unwrap() {
        Some(Incoming::Text(payload)) => assert_eq!(&payload[..], text.as_bytes()),
        other => panic!("expected the echo of {text:?}, got {other:?}"),
    }
}

#[test]
fn echo_runs_over_tls_small_and_large_messages() {
    let pki = Pki::new("echo");
    let server = start_server(
        |_| EchoApp,
        1,
        |config| {
            pki.serve_with(config);
        },
    );
    let mut conn = open_ws(server.addr(), &pki.cert).expect("wss connect");
    echo(&mut conn, "hello over tls");
    // Several TLS records each way (records carry at most 16 KiB).
    let large = "x".repeat(100_000);
    echo(&mut conn, &large);
    for i in 0..50 {
        echo(&mut conn, &format!("message {i}"));
    }
}

fn recv(conn: &mut Connection) -> ServerMessage {
    conn.recv_timeout(WAIT)
        .unwrap()
        .expect("a message within WAIT")
        .message
}

#[test]
fn rooms_run_over_tls_on_two_cores() {
    let pki = Pki::new("rooms");
    let server = start_server(RoomsApp::configured, 2, |config| {
        pki.serve_with(config);
    });
    let url = wss(server.addr());
    let mut a = Connection::connect(&url, &options(&pki.cert)).expect("a connects");
    let mut b = Connection::connect(&url, &options(&pki.cert)).expect("b connects");
    a.send(&ClientMessage::join_room("lobby")).unwrap();
    assert!(matches!(
        recv(&mut a),
        ServerMessage::RoomJoined { members: 1, .. }
    ));
    b.send(&ClientMessage::join_room("lobby")).unwrap();
    assert!(matches!(
        recv(&mut b),
        ServerMessage::RoomJoined { members: 2, .. }
    ));
    assert!(matches!(
        recv(&mut a),
        ServerMessage::MemberJoined {
            total_members: 2,
            ..
        }
    ));
    a.send(&ClientMessage::room_message("lobby", "hi over tls"))
        .unwrap();
    match recv(&mut b) {
        ServerMessage::RoomMessage { room, message, .. } => {
            assert_eq!(room, "lobby");
            assert_eq!(message, "hi over tls");
        }
        other => panic!("expected the room message, got {other:?}"),
    }
    a.close().unwrap();
    b.close().unwrap();
}

#[test]
fn a_client_that_does_not_trust_the_certificate_fails_its_handshake() {
    let pki = Pki::new("untrusted");
    let other = Pki::new("untrusted-other");
    let server = start_server(
        |_| EchoApp,
        1,
        |config| {
            pki.serve_with(config);
        },
    );
    assert!(open_ws(server.addr(), &other.cert).is_err());
    // The server is unharmed.
    echo(
        &mut open_ws(server.addr(), &pki.cert).unwrap(),
        "still fine",
    );
}

/// Reads until the server closes; returns what it sent.
fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

#[test]
fn a_plain_text_client_on_the_tls_port_gets_no_upgrade() {
    let pki = Pki::new("plain");
    let server = start_server(
        |_| EchoApp,
        1,
        |config| {
            pki.serve_with(config);
        },
    );
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let answer = read_to_end(&mut stream);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "a plain-text request got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn a_tls_handshake_that_never_completes_is_cut_at_the_handshake_timeout() {
    let pki = Pki::new("slow");
    let server = start_server(
        |_| EchoApp,
        1,
        |config| {
            pki.serve_with(config);
            config.handshake_timeout_ms = 300;
        },
    );
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let started = Instant::now();
    // The start of a ClientHello record, and nothing more.
    stream
        .write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01])
        .unwrap();
    read_to_end(&mut stream);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "cut after {took:?}"
    );
    server.wait_for_stats("a handshake timeout counted", |stats| {
        stats.handshake_timeouts == 1
    });
}

/// `ringcast serve --cores 1 --app echo` over TLS with `extra` flags on a free port.
fn serve_tls(pki: &Pki, extra: &[&str]) -> (SocketAddr, std::process::Child) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let listen = addr.to_string();
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let mut args = vec![
        "--listen",
        &listen,
        "--cores",
        "1",
        "--app",
        "echo",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    args.extend_from_slice(extra);
    let child = serve(&args);
    (addr, child)
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_while_old_ones_keep_working() {
    let pki = Pki::new("reload");
    let first = pki.keep_ca("first.pem");
    let (addr, mut child) = serve_tls(&pki, &[]);
    let mut old = wait_until("the server accepts wss", || open_ws(addr, &first).ok());
    echo(&mut old, "before the reload");

    pki.renew();
    let second = pki.keep_ca("second.pem");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGHUP) }, 0);
    let mut new = wait_until("new connections get the new certificate", || {
        open_ws(addr, &second).ok()
    });
    echo(&mut new, "after the reload");
    assert!(
        open_ws(addr, &first).is_err(),
        "a new connection was served the old certificate"
    );
    echo(&mut old, "the old connection still works");
    drop((old, new));

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn a_bad_certificate_or_key_refuses_to_start_with_a_clear_message() {
    let pki = Pki::new("bad");
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = pki.dir.join("missing.pem");
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let not_a_key = pki.keep_ca("not-a-key.pem").to_str().unwrap().to_string();
    let other = Pki::new("bad-other");
    let other_key = other.key.to_str().unwrap().to_string();
    let cases = [
        (garbage.to_str().unwrap(), key, "no certificate in"),
        (
            missing.to_str().unwrap(),
            key,
            "cannot read TLS certificate",
        ),
        (
            cert,
            garbage.to_str().unwrap(),
            "cannot read TLS private key",
        ),
        // A certificate where the key should be.
        (cert, not_a_key.as_str(), "cannot read TLS private key"),
        // A key that is not the certificate's.
        (cert, other_key.as_str(), "do not make a server config"),
    ];
    for (cert, key, expected) in cases {
        let mut child = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ]);
        let status = wait_exit(&mut child);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(1), "{cert} {key}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{cert} {key}: expected {expected:?} in {stderr:?}"
        );
    }
}

#[test]
fn a_connection_over_the_limit_is_closed_without_a_plain_text_answer() {
    let pki = Pki::new("limit");
    let server = start_server(
        |_| EchoApp,
        1,
        |config| {
            pki.serve_with(config);
            config.max_connections = 1;
        },
    );
    let mut first = open_ws(server.addr(), &pki.cert).expect("the first fits");
    let mut second = TcpStream::connect(server.addr()).unwrap();
    let answer = read_to_end(&mut second);
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    assert!(open_ws(server.addr(), &pki.cert).is_err());
    echo(&mut first, "the first still works");
}

#[test]
fn the_load_tool_runs_echo_and_broadcast_over_wss() {
    let pki = Pki::new("load");
    let ca = pki.cert.to_str().unwrap().to_string();
    let echo_server = start_server(
        |_| EchoApp,
        2,
        |config| {
            pki.serve_with(config);
        },
    );
    let url = wss(echo_server.addr());
    let report = load(&["echo", &url, "--ca", &ca, "-c", "8", "-p", "4"]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.count > 0, "no round trips counted");
    assert_eq!(report.mismatched, Some(0));
    assert_eq!(report.unanswered, Some(0));

    let broadcast_server = start_server(
        |_| ringcast::app::BroadcastApp::default(),
        2,
        |config| {
            pki.serve_with(config);
        },
    );
    let url = wss(broadcast_server.addr());
    let report = load(&[
        "broadcast",
        &url,
        "--ca",
        &ca,
        "-c",
        "20",
        "-k",
        "3",
        "-w",
        "4",
    ]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let delivery = report.delivery.expect("broadcast reports its tally");
    assert!(delivery.expected > 0);
    assert_eq!(delivery.delivered, delivery.expected);
    assert_eq!((delivery.lost, delivery.duplicates), (0, 0));
}
