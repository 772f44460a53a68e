//! `ringcast serve` as a process: it refuses an address another process listens on
//! and a config file it cannot read, with a clear message; SIGTERM shuts it down
//! gracefully (close 1001, exit 0), `--rate-limit` reaches the rooms app, and the
//! server runs the same on monoio's epoll driver (`MONOIO_FORCE_LEGACY_DRIVER=1`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{http_exchange, TestClient};
use crate::rooms::{
    join_in_turn, member_left, room_message_from, send_private, send_to_room, with_id, RoomClient,
};
use crate::WAIT;

pub(crate) fn serve(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringcast serve")
}

/// Waits for the process to exit within [`WAIT`]; kills it and fails otherwise.
pub(crate) fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for ringcast") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringcast serve did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `ringcast serve --cores 1` on a free loopback port, with `extra` flags, once it
/// listens.
fn serve_one_core(extra: &[&str]) -> (SocketAddr, Child) {
    let addr = free_addr();
    let listen = addr.to_string();
    let mut args = vec!["--listen", &listen, "--cores", "1"];
    args.extend_from_slice(extra);
    let child = serve(&args);
    wait_listening(addr);
    (addr, child)
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "server did not start listening");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn free_addr() -> SocketAddr {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

pub(crate) fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

#[test]
fn serve_refuses_an_address_another_process_listens_on() {
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = other.local_addr().unwrap().to_string();
    let mut child = serve(&["--listen", &addr, "--cores", "1"]);
    let status = wait_exit(&mut child);
    assert!(!status.success(), "it must not share the port");
    let stderr = stderr_of(&mut child);
    assert!(stderr.contains("already in use"), "{stderr}");
}

#[test]
fn allow_origin_flag_refuses_other_origins_with_403() {
    let (addr, mut child) = serve_one_core(&[
        "--app",
        "echo",
        "--allow-origin",
        "https://a.example",
        "--allow-origin",
        "https://b.example",
    ]);
    let request = |origin: &str| {
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Origin: {origin}\r\n\r\n"
        )
    };
    let refused = http_exchange(addr, request("https://c.example").as_bytes());
    assert_eq!(refused.status, 403);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(request("https://b.example").as_bytes())
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_config_file_that_cannot_be_read_is_named_with_its_reason_once() {
    let mut child = serve(&["--config", "/nonexistent/ringcast.toml"]);
    let status = wait_exit(&mut child);
    assert!(!status.success());
    let stderr = stderr_of(&mut child);
    assert!(
        stderr.contains("cannot read config file /nonexistent/ringcast.toml"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
}

#[test]
fn sigterm_closes_every_connection_with_1001_and_exits_0() {
    let (addr, mut child) = serve_one_core(&["--app", "echo"]);
    let mut client = TestClient::connect(addr);
    // SAFETY: sending a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    assert_eq!(client.expect_close(), 1001);
    client.send_close(1001, "");
    let status = wait_exit(&mut child);
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        stderr_of(&mut child)
    );
}

/// `--rate-limit 1` with the default burst of 100: of 110 private messages sent at
/// once, the first 100 are relayed and at least one of the rest is refused with its id.
#[test]
fn rate_limit_flag_limits_each_rooms_client() {
    let (addr, mut child) = serve_one_core(&["--rate-limit", "1"]);
    let mut client = RoomClient::connect(addr);
    let to_self: Vec<_> = (0..110)
        .map(|n| with_id(send_private(&client.id, json!(n)), json!(n)))
        .collect();
    client.send_burst(&to_self);
    let replies: Vec<_> = (0..110).map(|_| client.recv()).collect();
    let relayed: Vec<_> = replies
        .iter()
        .filter(|m| m["type"] == "private_message")
        .map(|m| m["message"].as_u64().unwrap())
        .collect();
    let refused: Vec<_> = replies
        .iter()
        .filter(|m| m["type"] == "error")
        .inspect(|m| assert_eq!(m["message"], "Rate limit exceeded", "{m}"))
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(relayed[..100], (0..100).collect::<Vec<u64>>()[..]);
    assert!(
        !refused.is_empty() && refused.iter().all(|id| *id >= 100),
        "{refused:?}"
    );
    assert_eq!(relayed.len() + refused.len(), 110);
    drop(client);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(wait_exit(&mut child).success());
}

#[test]
fn logs_are_levelled_text_or_json_lines_filtered_by_rust_log() {
    let json_lines = |extra: &[&str], rust_log: &str| {
        let addr = free_addr();
        let listen = addr.to_string();
        let mut args = vec!["--listen", &listen, "--cores", "1"];
        args.extend_from_slice(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .arg("serve")
            .args(&args)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ringcast serve");
        wait_listening(addr);
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert!(wait_exit(&mut child).success());
        stderr_of(&mut child)
    };
    let text = json_lines(&["--log-json"], "info");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    assert!(
        events.iter().any(|e| e["level"] == "INFO"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("serving Rooms on ws://"))),
        "{text}"
    );
    assert!(events.iter().any(|e| e["message"] == "stopped"), "{text}");
    let quiet = json_lines(&[], "warn");
    assert!(
        !quiet.contains("serving Rooms"),
        "RUST_LOG=warn hides info: {quiet}"
    );
}

#[test]
fn sighup_without_tls_is_logged_and_the_server_keeps_serving() {
    let (addr, mut child) = serve_one_core(&[]);
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    // Still answering after the signal (its default action would have ended it).
    let response = http_exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 200);
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the server"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(wait_exit(&mut child).success());
    assert!(stderr_of(&mut child).contains("nothing to reload"));
}

/// Without io_uring (a seccomp profile that blocks it, or the variable set) the core's
/// poller is waited on through monoio's epoll driver: rooms, a message larger than one
/// read (its frame arrives in parts) and a client's departure work as under io_uring.
#[test]
fn under_the_epoll_driver_rooms_large_messages_and_departures_work() {
    let addr = free_addr();
    let listen = addr.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["serve", "--listen", &listen, "--cores", "1"])
        .env("MONOIO_FORCE_LEGACY_DRIVER", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringcast serve");
    wait_listening(addr);
    let mut a = RoomClient::connect(addr);
    let mut b = RoomClient::connect(addr);
    join_in_turn("lobby", &mut [&mut a, &mut b]);
    for size in [10, 300_000] {
        let message = json!("x".repeat(size));
        a.send(&send_to_room("lobby", message.clone()));
        b.expect(&room_message_from("lobby", &a.id, message));
    }
    let gone = b.id.clone();
    drop(b);
    a.expect(&member_left("lobby", &gone, 1));
    drop(a);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(wait_exit(&mut child).success());
    let log = stderr_of(&mut child);
    assert!(log.contains("Epoll driver"), "{log}");
}
