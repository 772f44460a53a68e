//! `ringcast client` as a process: scripted stdin, stdout checked line by line, and
//! the documented exit codes (0 at end of input, /quit or Ctrl-C, 2 for a bad URL, 3
//! when the server cannot be reached and 4 when it goes away, both with --no-reconnect);
//! several URLs, tried in turn; what a rejoin after a reconnect recovered or lost
//! (issue 13).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::Instant;

use ringcast::client::{ClientMessage, ConnectOptions, Connection, ServerMessage};
use ringcast::rooms::RoomsApp;
use serde_json::{json, Value};

use crate::client_lib::proxy::Proxy;
use crate::client_lib::recover::{next_room_message, room_joined, room_message, Peer};
use crate::{start_server, Server, WAIT};

fn rooms_server() -> Server {
    start_server(RoomsApp::configured, 1, |_| {})
}

/// The CLI, with stdout read line by line on a thread so every wait has a deadline.
struct Cli {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    errors: Receiver<String>,
}

/// Sends each line of `pipe` to the returned channel, from a thread.
fn line_channel(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// The next line from `lines` that `want` takes, within [`WAIT`].
fn next_where(lines: &Receiver<String>, mut want: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no wanted line within {WAIT:?}"));
        if want(&line) {
            return line;
        }
    }
}

impl Cli {
    fn start(args: &[&str]) -> Cli {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .arg("client")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ringcast client");
        Cli {
            stdin: child.stdin.take(),
            lines: line_channel(child.stdout.take().unwrap()),
            errors: line_channel(child.stderr.take().unwrap()),
            child,
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to the client's stdin");
        stdin.flush().unwrap();
    }

    /// The next stdout line whose readable columns are `kind` and `room`: returns its
    /// sender and text. Lines of other kinds are skipped.
    fn expect(&self, kind: &str, room: &str) -> (String, String) {
        let line = self.next_line_where(|line| {
            let mut columns = line.splitn(5, ' ').skip(1);
            columns.next() == Some(kind) && columns.next() == Some(room)
        });
        let columns: Vec<&str> = line.splitn(5, ' ').collect();
        assert_eq!(columns.len(), 5, "{line}");
        assert_eq!(columns[0].len(), 8, "HH:MM:SS first: {line}");
        (columns[3].to_string(), columns[4].to_string())
    }

    fn next_line_where(&self, want: impl FnMut(&str) -> bool) -> String {
        next_where(&self.lines, want)
    }

    /// The next stderr line containing `text`.
    fn expect_status(&self, text: &str) -> String {
        next_where(&self.errors, |line| line.contains(text))
    }

    /// Closes stdin (end of input) and waits for the exit.
    fn end_input(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        self.wait()
    }

    /// Waits for the process to exit; returns its status and stderr.
    fn wait(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("ringcast client did not exit within {WAIT:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        // The process is gone, so its stderr ends and the channel disconnects.
        let mut stderr = Vec::new();
        while let Ok(line) = self.errors.recv_timeout(WAIT) {
            stderr.push(line);
        }
        (status, stderr.join("\n"))
    }
}

fn recv(conn: &mut Connection) -> ServerMessage {
    conn.recv_timeout(WAIT)
        .expect("connection up")
        .expect("a message within the wait")
        .message
}

fn peer_in(server: &Server, room: &str) -> Connection {
    let mut peer = Connection::connect(
        &format!("ws://{}/", server.addr()),
        &ConnectOptions::default(),
    )
    .expect("peer connects");
    peer.send(&ClientMessage::join_room(room)).unwrap();
    assert!(matches!(recv(&mut peer), ServerMessage::RoomJoined { .. }));
    peer
}

#[test]
fn interactive_lines_chat_in_a_room_and_end_of_input_exits_0() {
    let server = rooms_server();
    let mut peer = peer_in(&server, "lobby");
    let peer_id = peer.client_id().to_string();
    let url = format!("ws://{}/", server.addr());
    let mut cli = Cli::start(&[&url, "--room", "lobby", "--meta", "name=Ann"]);

    let (_, me) = cli.expect("welcome", "-");
    assert!(me.starts_with("client_"), "{me}");
    assert_eq!(cli.expect("room_joined", "lobby").1, "2 members");
    assert_eq!(cli.expect("metadata_updated", "-").1, r#"{"name":"Ann"}"#);
    assert!(
        matches!(recv(&mut peer), ServerMessage::MemberJoined { client_id, .. } if client_id == me)
    );

    // A plain line goes to the first joined room.
    cli.say("hello from the terminal");
    assert!(matches!(recv(&mut peer),
        ServerMessage::RoomMessage { room, from, message, .. }
            if room == "lobby" && from == me && message == json!("hello from the terminal")));
    peer.send(&ClientMessage::room_message("lobby", "hi Ann"))
        .unwrap();
    assert_eq!(
        cli.expect("room_message", "lobby"),
        (peer_id.clone(), "hi Ann".to_string())
    );

    cli.say(&format!("/msg {peer_id} psst"));
    assert!(matches!(recv(&mut peer),
        ServerMessage::PrivateMessage { from, message, .. } if from == me && message == json!("psst")));
    cli.say("/rooms");
    assert_eq!(cli.expect("rooms", "-").1, "lobby");
    cli.say("/meta mood=fine");
    assert_eq!(
        cli.expect("metadata_updated", "-").1,
        r#"{"mood":"fine","name":"Ann"}"#
    );

    // Out of every room, a plain line is a broadcast.
    cli.say("/leave lobby");
    assert!(
        matches!(recv(&mut peer), ServerMessage::MemberLeft { client_id, .. } if client_id == me)
    );
    cli.say("to everyone");
    assert!(matches!(recv(&mut peer),
        ServerMessage::Broadcast { from, message, .. } if from == me && message == json!("to everyone")));
    cli.say("/join side");
    assert_eq!(cli.expect("room_joined", "side").1, "1 member");
    cli.say("/nonsense");
    peer.send(&ClientMessage::private_message(me.as_str(), "still there?"))
        .unwrap();
    assert_eq!(
        cli.expect("private_message", "-"),
        (peer_id, "still there?".to_string())
    );

    let (status, stderr) = cli.end_input();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("connected to {url} as {me}")),
        "{stderr}"
    );
    assert!(stderr.contains("unknown command /nonsense"), "{stderr}");
}

#[test]
fn quit_exits_0_with_stdin_still_open() {
    let server = rooms_server();
    let mut cli = Cli::start(&[&format!("ws://{}/", server.addr())]);
    cli.expect("welcome", "-");
    cli.say("/quit");
    let (status, stderr) = cli.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    server.wait_for_stats("the CLI's connection closed", |s| s.open() == 0);
}

/// SIGINT (Ctrl-C) closes like /quit: the process exits 0 on its own (not killed by
/// the signal), and its peers see it leave.
#[test]
fn ctrl_c_closes_the_connection_and_exits_0() {
    let server = rooms_server();
    let mut peer = peer_in(&server, "lobby");
    let url = format!("ws://{}/", server.addr());
    let cli = Cli::start(&[&url, "--room", "lobby"]);
    let (_, me) = cli.expect("welcome", "-");
    cli.expect("room_joined", "lobby");
    assert!(
        matches!(recv(&mut peer), ServerMessage::MemberJoined { client_id, .. } if client_id == me)
    );
    // SAFETY: sending a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(cli.child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let (status, stderr) = cli.wait();
    assert_eq!(status.code(), Some(0), "{status:?}: {stderr}");
    assert!(stderr.contains("closing"), "{stderr}");
    assert!(
        matches!(recv(&mut peer), ServerMessage::MemberLeft { client_id, .. } if client_id == me)
    );
}

#[test]
fn json_mode_sends_raw_lines_and_prints_every_message_as_one_json_line() {
    let server = rooms_server();
    let mut cli = Cli::start(&[&format!("ws://{}/", server.addr()), "--json"]);
    let parse = |line: String| serde_json::from_str::<Value>(&line).expect("a JSON line");
    let welcome = parse(cli.next_line_where(|_| true));
    assert_eq!(welcome["type"], "welcome");
    cli.say(r#"{"type":"join_room","room":"r","id":7}"#);
    let joined = parse(cli.next_line_where(|_| true));
    // Compared field by field: a server with history (issue 13) adds epoch and offset.
    assert_eq!(
        [
            &joined["type"],
            &joined["room"],
            &joined["members"],
            &joined["id"]
        ],
        [&json!("room_joined"), &json!("r"), &json!(1), &json!(7)]
    );
    cli.say("not json");
    let error = parse(cli.next_line_where(|_| true));
    assert_eq!(error["type"], "error");
    assert_eq!(error["message"], "Invalid message format");
    cli.say(r#"{"type":"room_message","room":"nowhere","message":"x"}"#);
    let error = parse(cli.next_line_where(|_| true));
    assert_eq!(error["message"], "Room does not exist");
    let (status, stderr) = cli.end_input();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn an_unreachable_server_with_no_reconnect_exits_3() {
    let addr: SocketAddr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let cli = Cli::start(&[&format!("ws://{addr}/"), "--no-reconnect"]);
    let (status, stderr) = cli.wait();
    assert_eq!(status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
}

#[test]
fn a_lost_connection_with_no_reconnect_exits_4() {
    let mut server = rooms_server();
    let cli = Cli::start(&[&format!("ws://{}/", server.addr()), "--no-reconnect"]);
    cli.expect("welcome", "-");
    server.take_handle().shutdown().expect("server stops");
    let (status, stderr) = cli.wait();
    assert_eq!(status.code(), Some(4), "stderr: {stderr}");
    assert!(stderr.contains("code 1001"), "{stderr}");
}

#[test]
fn over_wss_the_cli_trusts_its_ca_file_and_a_bad_one_exits_2() {
    let pki = crate::tls::Pki::new("cli");
    let server = crate::start_server(ringcast::rooms::RoomsApp::configured, 1, |config| {
        pki.serve_with(config);
    });
    let url = format!("wss://{}/", server.addr());
    let ca = pki.cert.to_str().unwrap();
    let cli = Cli::start(&[&url, "--ca", ca, "--room", "lobby"]);
    let status = cli.expect_status("connected to");
    assert!(status.contains(&url), "{status}");
    assert_eq!(cli.expect("room_joined", "lobby").1, "1 member");
    let (status, stderr) = cli.end_input();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");

    let cli = Cli::start(&[&url, "--ca", "/nonexistent/ca.pem"]);
    let (status, stderr) = cli.wait();
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("/nonexistent/ca.pem"), "{stderr}");
}

#[test]
fn given_two_urls_the_cli_moves_past_a_dead_first_and_names_the_url_it_reached() {
    let dead: SocketAddr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let server = rooms_server();
    let (dead_url, live_url) = (format!("ws://{dead}/"), format!("ws://{}/", server.addr()));
    let cli = Cli::start(&[&dead_url, &live_url, "--room", "lobby"]);
    let failed = cli.expect_status("cannot connect");
    assert!(failed.contains(&dead_url), "{failed}");
    let status = cli.expect_status("connected to");
    let (_, me) = cli.expect("welcome", "-");
    assert!(
        status.ends_with(&format!("connected to {live_url} as {me}")),
        "{status}"
    );
    assert_eq!(cli.expect("room_joined", "lobby").1, "1 member");
    let (status, stderr) = cli.end_input();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn a_bad_url_anywhere_in_the_list_exits_2_naming_it() {
    let cli = Cli::start(&["ws://127.0.0.1:1/", "ws://127.0.0.1:port/"]);
    let (status, stderr) = cli.wait();
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("ws://127.0.0.1:port/"), "{stderr}");
}

#[test]
fn the_cli_survives_a_server_restart_and_rejoins_its_room() {
    let addr: SocketAddr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut server = start_server(RoomsApp::configured, 1, |c| c.listen = addr);
    let url = format!("ws://{addr}/");
    let cli = Cli::start(&[&url, "--room", "lobby"]);
    let (_, first) = cli.expect("welcome", "-");
    cli.expect("room_joined", "lobby");

    server.take_handle().shutdown().expect("server stops");
    let status = cli.expect_status("disconnected:");
    assert!(status.contains("1001"), "{status}");
    let server = start_server(RoomsApp::configured, 1, |c| c.listen = addr);
    cli.expect_status("reconnecting in");
    let status = cli.expect_status("reconnected to");
    let (_, second) = cli.expect("welcome", "-");
    assert!(status.ends_with(&second), "{status}");
    assert_eq!(cli.expect("room_joined", "lobby").1, "1 member");

    let peer = peer_in(&server, "lobby");
    peer.send(&ClientMessage::room_message("lobby", "you are back"))
        .unwrap();
    assert_eq!(
        cli.expect("room_message", "lobby"),
        (peer.client_id().to_string(), "you are back".to_string())
    );
    let _ = first;
    let (status, stderr) = cli.end_input();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

/// A scripted server with history for room `r`: the first connection reads to 3 and is
/// cut, the second recovers 4 and 5 and is cut, the third finds the history lost
/// (a new epoch) and is handed back, open.
fn recover_then_lose() -> (SocketAddr, JoinHandle<Peer>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut first = Peer::accept(&listener, "client_1");
        first.recv();
        first.send(room_joined("e1", 2, None));
        first.send(room_message(3));
        first.cut();
        let mut second = Peer::accept(&listener, "client_2");
        assert_eq!(
            second.recv()["recover"],
            json!({"epoch": "e1", "offset": 3})
        );
        second.send(room_joined("e1", 5, Some(true)));
        second.send(room_message(4));
        second.send(room_message(5));
        second.cut();
        let mut third = Peer::accept(&listener, "client_3");
        assert_eq!(third.recv()["recover"], json!({"epoch": "e1", "offset": 5}));
        third.send(room_joined("e2", 0, Some(false)));
        third
    });
    (addr, server)
}

#[test]
fn after_reconnects_the_cli_says_how_many_messages_it_recovered_or_that_some_were_lost() {
    for json_mode in [false, true] {
        let (addr, server) = recover_then_lose();
        let url = format!("ws://{addr}/");
        let mut args = vec![url.as_str(), "--room", "r"];
        if json_mode {
            args.push("--json");
        }
        let cli = Cli::start(&args);
        for offset in 3..=5 {
            let line = cli.next_line_where(|line| line.contains("room_message"));
            if json_mode {
                let message: Value = serde_json::from_str(&line).expect("a JSON line");
                assert_eq!(message["offset"], offset, "{line}");
            } else {
                assert!(
                    line.ends_with(&format!(" r client_other m{offset}")),
                    "{line}"
                );
            }
        }
        cli.expect_status("recovered 2 missed messages in r");
        cli.expect_status("r: history lost, some messages were missed");
        server.join().expect("the script ran").cut();
        let (status, stderr) = cli.end_input();
        assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    }
}

#[test]
fn the_cli_prints_the_messages_missed_while_away_then_the_count_recovered() {
    let server = rooms_server();
    let proxy = Proxy::start(server.addr());
    let sender = peer_in(&server, "lobby");
    let mut witness = peer_in(&server, "lobby");
    let cli = Cli::start(&[&format!("ws://{}/", proxy.addr()), "--room", "lobby"]);
    cli.expect("room_joined", "lobby");
    sender
        .send(&ClientMessage::room_message("lobby", "before"))
        .unwrap();
    assert_eq!(cli.expect("room_message", "lobby").1, "before");
    next_room_message(&mut witness);

    proxy.cut();
    cli.expect_status("disconnected:");
    for i in 1..=3 {
        sender
            .send(&ClientMessage::room_message("lobby", format!("missed {i}")))
            .unwrap();
        next_room_message(&mut witness);
    }
    proxy.open();
    cli.expect_status("reconnected to");
    for i in 1..=3 {
        assert_eq!(cli.expect("room_message", "lobby").1, format!("missed {i}"));
    }
    cli.expect_status("recovered 3 missed messages in lobby");
    let (status, stderr) = cli.end_input();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}
