//! `ringcast::client` against the real room server: a round trip of every message
//! type, pings answered, a clean close, the server restarted on the same port (the
//! client reconnects on its seeded schedule, rejoins its rooms with its metadata, and
//! gets room messages again), failing over between two servers given as two URLs;
//! and against scripted fake servers, each error it names. History recovery after a
//! reconnect (issue 13) is in `client_lib/recover.rs`.

pub(crate) mod proxy;
pub(crate) mod recover;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringcast::client::{
    Backoff, Client, ClientConfig, ClientError, ClientMessage, ConnectOptions, Connection, Event,
    Phase, ReconnectPolicy, RequestId, ServerMessage, StopReason,
};
use ringcast::rooms::RoomsApp;
use ringcast::ws::handshake::{accept_response, parse_request, HttpRequest};
use ringcast::ws::{encode_unmasked, Opcode};
use serde_json::{json, Map, Value};

use crate::{start_server, Server, WAIT};

fn rooms_server(tweak: impl FnOnce(&mut ringcast::config::Config)) -> Server {
    start_server(RoomsApp::configured, 1, tweak)
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

fn connect(addr: SocketAddr) -> Connection {
    Connection::connect(&url(addr), &ConnectOptions::default()).expect("connect")
}

/// The next message, which must come within [`WAIT`].
fn recv(conn: &mut Connection) -> ServerMessage {
    conn.recv_timeout(WAIT)
        .expect("connection still up")
        .expect("a message within the wait")
        .message
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().expect("a JSON object").clone()
}

#[test]
fn every_message_type_round_trips_through_the_server() {
    let server = rooms_server(|_| {});
    let mut a = connect(server.addr());
    let mut b = connect(server.addr());
    let (a_id, b_id) = (a.client_id().to_string(), b.client_id().to_string());
    assert!(a_id.starts_with("client_") && b_id.starts_with("client_") && a_id != b_id);
    assert!(
        matches!(&a.welcome().message, ServerMessage::Welcome { client_id, .. } if *client_id == a_id)
    );

    a.send_with_id(&ClientMessage::join_room("lobby"), &RequestId::from(1))
        .unwrap();
    assert!(matches!(
        recv(&mut a),
        ServerMessage::RoomJoined { room, members: 1, id: Some(id), .. }
            if room == "lobby" && id == 1.into()
    ));
    b.send(&ClientMessage::join_room("lobby")).unwrap();
    assert!(matches!(
        recv(&mut b),
        ServerMessage::RoomJoined { members: 2, .. }
    ));
    assert_eq!(
        recv(&mut a),
        ServerMessage::MemberJoined {
            room: "lobby".into(),
            client_id: b_id.clone(),
            total_members: 2
        }
    );

    a.send(&ClientMessage::room_message("lobby", "hi")).unwrap();
    assert!(matches!(recv(&mut b),
        ServerMessage::RoomMessage { room, from, message, .. }
            if room == "lobby" && from == a_id && message == json!("hi")));
    let structured = json!({"text": "é ☃", "n": [1, 2.5, null]});
    b.send(&ClientMessage::room_message("lobby", structured.clone()))
        .unwrap();
    assert!(matches!(recv(&mut a),
        ServerMessage::RoomMessage { from, message, .. } if from == b_id && message == structured));

    a.send(&ClientMessage::broadcast("all")).unwrap();
    assert!(matches!(recv(&mut b),
        ServerMessage::Broadcast { from, message, .. } if from == a_id && message == json!("all")));
    b.send(&ClientMessage::private_message(a_id.as_str(), "psst"))
        .unwrap();
    assert!(matches!(recv(&mut a),
        ServerMessage::PrivateMessage { from, message, .. } if from == b_id && message == json!("psst")));

    a.send_with_id(
        &ClientMessage::set_metadata(object(json!({"name": "ann"}))),
        &"m1".into(),
    )
    .unwrap();
    assert_eq!(
        recv(&mut a),
        ServerMessage::MetadataUpdated {
            metadata: object(json!({"name": "ann"})),
            id: Some("m1".into())
        }
    );
    a.send(&ClientMessage::set_metadata(object(json!({"age": 3}))))
        .unwrap();
    assert!(matches!(recv(&mut a),
        ServerMessage::MetadataUpdated { metadata, .. } if metadata == object(json!({"name": "ann", "age": 3}))));

    a.send(&ClientMessage::room_message("nowhere", "x"))
        .unwrap();
    assert!(matches!(recv(&mut a),
        ServerMessage::Error { message, .. } if message == "Room does not exist"));
    a.send_text("not json").unwrap();
    assert!(matches!(recv(&mut a),
        ServerMessage::Error { message, .. } if message == "Invalid message format"));

    b.send(&ClientMessage::leave_room("lobby")).unwrap();
    assert_eq!(
        recv(&mut a),
        ServerMessage::MemberLeft {
            room: "lobby".into(),
            client_id: b_id.clone(),
            total_members: 1
        }
    );
    b.send(&ClientMessage::join_room("lobby")).unwrap();
    assert!(matches!(recv(&mut b), ServerMessage::RoomJoined { .. }));
    assert!(matches!(recv(&mut a), ServerMessage::MemberJoined { .. }));

    // A clean close: the server answers it, and b sees a leave the room.
    a.close().expect("the server answers our close");
    assert!(matches!(recv(&mut b),
        ServerMessage::MemberLeft { client_id, total_members: 1, .. } if client_id == a_id));
    server.wait_for_stats("a's connection closed", |s| s.open() == 1);
}

#[test]
fn server_pings_are_answered_so_a_quiet_client_stays_connected() {
    let server = rooms_server(|c| {
        c.ping_interval_ms = 50;
        c.idle_timeout_ms = 300;
    });
    let mut conn = connect(server.addr());
    // Unanswered, the server's pings would end in close 1001 after 300 ms.
    let quiet = conn.recv_timeout(Duration::from_millis(1_000));
    assert!(matches!(quiet, Ok(None)), "{quiet:?}");
    conn.send(&ClientMessage::join_room("r")).unwrap();
    assert!(matches!(recv(&mut conn), ServerMessage::RoomJoined { .. }));
}

/// A client that reconnects fast, on a known schedule.
fn fast_policy() -> ReconnectPolicy {
    ReconnectPolicy {
        base: Duration::from_millis(50),
        factor: 2.0,
        max: Duration::from_millis(400),
        reset_after: Duration::from_secs(30),
        max_attempts: None,
    }
}

const SEED: u64 = 0x5EED;

fn next_event(client: &Client) -> Event {
    client
        .events()
        .recv_timeout(WAIT)
        .expect("an event within the wait")
}

/// Skips events until `pick` takes one; panics after [`WAIT`].
fn wait_for<T>(client: &Client, what: &str, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = client
            .events()
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
        if let Some(value) = pick(event) {
            return value;
        }
    }
}

fn message(event: Event) -> Option<ServerMessage> {
    match event {
        Event::Message(received) => Some(received.message),
        _ => None,
    }
}

/// A port that was free a moment ago: bind port 0, note the port, let it go.
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr")
}

#[test]
fn after_a_server_restart_the_client_reconnects_on_schedule_and_rejoins_with_its_metadata() {
    let addr = free_port();
    let mut server = rooms_server(|c| c.listen = addr);
    let config = ClientConfig {
        reconnect: Some(fast_policy()),
        jitter_seed: Some(SEED),
        ..ClientConfig::default()
    };
    let client = Client::start(&url(addr), config).expect("start");
    let first_id = wait_for(&client, "connected", |e| match e {
        Event::Connected {
            client_id,
            reconnected: false,
            ..
        } => Some(client_id),
        _ => None,
    });
    let handle = client.handle();
    handle.join_room("lobby").unwrap();
    handle.set_metadata(object(json!({"name": "ann"}))).unwrap();
    let room = wait_for(&client, "room_joined", |e| match message(e) {
        Some(ServerMessage::RoomJoined { room, .. }) => Some(room),
        _ => None,
    });
    assert_eq!(room, "lobby");
    wait_for(&client, "metadata_updated", |e| match message(e) {
        Some(ServerMessage::MetadataUpdated { .. }) => Some(()),
        _ => None,
    });

    // The server goes away: the client answers its close 1001 and reports it.
    server.take_handle().shutdown().expect("server stops");
    let reason = wait_for(&client, "disconnected", |e| match e {
        Event::Disconnected { reason } => Some(reason),
        _ => None,
    });
    assert!(
        matches!(reason, ClientError::Closed { code: 1001, .. }),
        "{reason}"
    );
    // State asked for while disconnected is applied on the next connection.
    handle.join_room("second").unwrap();
    handle.set_metadata(object(json!({"age": "3"}))).unwrap();

    let mut expected = Backoff::new(fast_policy(), SEED);
    let mut restarted: Option<(Server, Instant)> = None;
    let mut attempts = 0;
    let second_id = loop {
        match next_event(&client) {
            Event::Reconnecting { attempt, delay } => {
                attempts += 1;
                assert_eq!(attempt, attempts);
                assert_eq!(
                    Some(delay),
                    expected.next(),
                    "attempt {attempt} off schedule"
                );
            }
            Event::ConnectFailed { error, .. } => {
                assert!(matches!(error, ClientError::Refused { .. }), "{error}");
                // Refused once: bring the server back on the same port.
                if restarted.is_none() {
                    restarted = Some((rooms_server(|c| c.listen = addr), Instant::now()));
                }
            }
            Event::Connected {
                client_id,
                reconnected,
                ..
            } => {
                assert!(reconnected);
                break client_id;
            }
            other => panic!("unexpected while reconnecting: {other:?}"),
        }
    };
    let (server, back_at) = restarted.expect("an attempt failed before the restart");
    let waited = back_at.elapsed();
    assert!(
        waited < fast_policy().max + Duration::from_secs(2),
        "reconnected {waited:?} after the server came back"
    );
    assert!(second_id.starts_with("client_"));

    // Welcome, the rooms rejoined in join order, the merged metadata re-applied.
    assert!(matches!(message(next_event(&client)),
        Some(ServerMessage::Welcome { client_id, .. }) if client_id == second_id));
    for room in ["lobby", "second"] {
        let recovered = match message(next_event(&client)) {
            Some(ServerMessage::RoomJoined {
                room: r,
                members: 1,
                recovered,
                ..
            }) if r == room => recovered,
            other => panic!("expected {room} rejoined, got {other:?}"),
        };
        // A server with history (issue 13) started a new epoch: lobby's history is
        // lost. `second` was never joined before, so it asked for nothing.
        if recovered.is_some() {
            assert_eq!((room, recovered), ("lobby", Some(false)));
            assert!(matches!(next_event(&client), Event::HistoryLost { room } if room == "lobby"));
        }
    }
    assert_eq!(
        message(next_event(&client)),
        Some(ServerMessage::MetadataUpdated {
            metadata: object(json!({"name": "ann", "age": "3"})),
            id: None
        })
    );
    let _ = first_id;

    // Room messages flow again, both ways.
    let mut peer = connect(server.addr());
    peer.send(&ClientMessage::join_room("lobby")).unwrap();
    assert!(matches!(
        recv(&mut peer),
        ServerMessage::RoomJoined { members: 2, .. }
    ));
    peer.send(&ClientMessage::room_message("lobby", "welcome back"))
        .unwrap();
    let got = wait_for(&client, "the room message", |e| match message(e) {
        Some(ServerMessage::RoomMessage { from, message, .. }) => Some((from, message)),
        _ => None,
    });
    assert_eq!(got, (peer.client_id().to_string(), json!("welcome back")));
    handle.room_message("lobby", "thanks").unwrap();
    assert!(matches!(recv(&mut peer),
        ServerMessage::RoomMessage { from, .. } if from == second_id));

    client.close();
    assert!(
        matches!(recv(&mut peer), ServerMessage::MemberLeft { client_id, .. } if client_id == second_id)
    );
}

#[test]
fn with_two_urls_the_client_fails_over_to_the_second_server_when_the_first_stops() {
    let mut first = rooms_server(|_| {});
    let second = rooms_server(|_| {});
    let (first_url, second_url) = (url(first.addr()), url(second.addr()));
    let config = ClientConfig {
        reconnect: Some(fast_policy()),
        jitter_seed: Some(SEED),
        ..ClientConfig::default()
    };
    let client =
        Client::start_any([first_url.as_str(), second_url.as_str()], config).expect("start");
    let connected_to = wait_for(&client, "connected", |e| match e {
        Event::Connected { url, .. } => Some(url.to_string()),
        _ => None,
    });
    assert_eq!(connected_to, first_url);
    client.handle().join_room("lobby").unwrap();
    wait_for(&client, "room_joined", |e| match message(e) {
        Some(ServerMessage::RoomJoined { .. }) => Some(()),
        _ => None,
    });

    // The first node goes away: the next attempt goes to the second, which is up.
    first.take_handle().shutdown().expect("first server stops");
    wait_for(&client, "disconnected", |e| match e {
        Event::Disconnected { .. } => Some(()),
        _ => None,
    });
    assert!(matches!(
        next_event(&client),
        Event::Reconnecting { attempt: 1, .. }
    ));
    let second_id = match next_event(&client) {
        Event::Connected {
            url,
            client_id,
            reconnected: true,
        } => {
            assert_eq!(url.to_string(), second_url);
            client_id
        }
        other => panic!("expected a reconnect to the second server, got {other:?}"),
    };
    assert!(matches!(message(next_event(&client)),
        Some(ServerMessage::Welcome { client_id, .. }) if client_id == second_id));
    assert!(matches!(
        message(next_event(&client)),
        Some(ServerMessage::RoomJoined { room, members: 1, .. }) if room == "lobby"
    ));
    second.wait_for_stats("the client on the second server", |s| s.opened == 1);

    // The rejoined room works on the second node.
    let mut peer = connect(second.addr());
    peer.send(&ClientMessage::join_room("lobby")).unwrap();
    assert!(matches!(
        recv(&mut peer),
        ServerMessage::RoomJoined { members: 2, .. }
    ));
    client.handle().room_message("lobby", "moved").unwrap();
    assert!(matches!(recv(&mut peer),
        ServerMessage::RoomMessage { from, message, .. }
            if from == second_id && message == json!("moved")));

    // Once the second goes too, the attempts go round: the first, then the second.
    drop(second);
    wait_for(&client, "disconnected", |e| match e {
        Event::Disconnected { .. } => Some(()),
        _ => None,
    });
    for expected in [&first_url, &second_url] {
        let failed_at = wait_for(&client, "a failed attempt", |e| match e {
            Event::ConnectFailed { url, .. } => Some(url.to_string()),
            _ => None,
        });
        assert_eq!(&failed_at, expected);
    }
    client.close();
}

#[test]
fn reconnect_attempts_follow_the_seeded_schedule_and_stop_at_the_limit() {
    let addr = free_port();
    let policy = ReconnectPolicy {
        base: Duration::from_millis(2),
        max_attempts: Some(3),
        ..fast_policy()
    };
    let config = ClientConfig {
        reconnect: Some(policy.clone()),
        jitter_seed: Some(SEED),
        ..ClientConfig::default()
    };
    let client = Client::start(&url(addr), config).expect("start");
    let mut expected = Backoff::new(policy, SEED);
    for attempt in 1..=3 {
        assert!(matches!(
            next_event(&client),
            Event::ConnectFailed {
                error: ClientError::Refused { .. },
                ..
            }
        ));
        match next_event(&client) {
            Event::Reconnecting { attempt: n, delay } => {
                assert_eq!(n, attempt);
                assert_eq!(Some(delay), expected.next());
            }
            other => panic!("expected reconnecting, got {other:?}"),
        }
    }
    assert!(matches!(next_event(&client), Event::ConnectFailed { .. }));
    assert!(matches!(
        next_event(&client),
        Event::Stopped(StopReason::GaveUp)
    ));
}

#[test]
fn without_reconnect_the_client_stops_when_the_server_is_unreachable_or_gone() {
    let addr = free_port();
    let client = Client::start(&url(addr), ClientConfig::default()).expect("start");
    let error = match next_event(&client) {
        Event::ConnectFailed { error, .. } => error,
        other => panic!("expected a failed connect, got {other:?}"),
    };
    assert!(
        matches!(error, ClientError::Refused { addr: a } if a == addr),
        "{error}"
    );
    assert!(matches!(
        next_event(&client),
        Event::Stopped(StopReason::GaveUp)
    ));

    let mut server = rooms_server(|_| {});
    let client = Client::start(&url(server.addr()), ClientConfig::default()).expect("start");
    assert!(matches!(next_event(&client), Event::Connected { .. }));
    server.take_handle().shutdown().expect("server stops");
    let reason = wait_for(&client, "disconnected", |e| match e {
        Event::Disconnected { reason } => Some(reason),
        _ => None,
    });
    assert!(
        matches!(reason, ClientError::Closed { code: 1001, .. }),
        "{reason}"
    );
    assert!(matches!(
        next_event(&client),
        Event::Stopped(StopReason::GaveUp)
    ));
}

#[test]
fn bad_urls_fail_at_start() {
    assert!(matches!(
        Connection::connect("http://127.0.0.1:1/", &ConnectOptions::default()),
        Err(ClientError::InvalidUrl { .. })
    ));
}

/// A one-connection server that completes the upgrade (or not) and then does what
/// the test scripts; returns what the client sent after the upgrade.
fn fake_server(
    script: impl FnOnce(&mut TcpStream, Option<String>) + Send + 'static,
) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = Vec::new();
        let key = loop {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).expect("read the request");
            buf.extend_from_slice(&chunk[..n]);
            if let Some((request, _)) = parse_request(&buf, 8192).expect("a valid request") {
                break match request {
                    HttpRequest::Upgrade { key, .. } => Some(key),
                    HttpRequest::Health | HttpRequest::Metrics | HttpRequest::Page(_) => None,
                };
            }
        };
        script(&mut stream, key);
        // Whatever the client sends until it ends the connection (or the wait ends).
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        rest
    });
    (addr, thread)
}

fn welcome_then(stream: &mut TcpStream, key: Option<String>, after: &[u8]) {
    stream
        .write_all(&accept_response(&key.expect("an upgrade")))
        .unwrap();
    let welcome = br#"{"type":"welcome","client_id":"client_9_9_9","timestamp":1}"#;
    stream
        .write_all(&encode_unmasked(Opcode::Text, welcome))
        .unwrap();
    stream.write_all(after).unwrap();
}

#[test]
fn a_refused_upgrade_reports_the_http_status() {
    let (addr, server) = fake_server(|stream, _| {
        stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    let result = Connection::connect(&url(addr), &ConnectOptions::default());
    assert!(
        matches!(result, Err(ClientError::HandshakeRejected { status: 404 })),
        "{result:?}"
    );
    server.join().unwrap();
}

#[test]
fn a_silent_server_is_pinged_then_given_up_on() {
    let (addr, server) = fake_server(|stream, key| welcome_then(stream, key, b""));
    let options = ConnectOptions {
        ping_after: Duration::from_millis(100),
        pong_timeout: Duration::from_millis(200),
        ..ConnectOptions::default()
    };
    let mut conn = Connection::connect(&url(addr), &options).expect("connect");
    assert_eq!(conn.client_id(), "client_9_9_9");
    let started = Instant::now();
    match conn.recv() {
        Err(ClientError::TimedOut {
            during: Phase::Keepalive,
            after,
        }) => assert_eq!(after, Duration::from_millis(300)),
        other => panic!("expected a keepalive timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    let sent = server.join().unwrap();
    // One masked ping with an empty payload: FIN + opcode 9, MASK bit + length 0.
    assert_eq!(&sent[..2], &[0x89, 0x80], "{sent:?}");
}

#[test]
fn a_server_close_is_answered_with_the_same_code_and_reported() {
    let mut close = vec![0x88, 8];
    close.extend_from_slice(&1008u16.to_be_bytes());
    close.extend_from_slice(b"policy");
    let (addr, server) = fake_server(move |stream, key| {
        welcome_then(stream, key, &close);
        // Let the client's answer arrive, then end the connection first, as a server does.
        let mut answer = [0u8; 8];
        stream
            .read_exact(&mut answer)
            .expect("the client answers the close");
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let code = [answer[6] ^ answer[2], answer[7] ^ answer[3]];
        assert_eq!(
            answer[..2],
            [0x88, 0x82],
            "a masked close with a 2-byte payload"
        );
        assert_eq!(u16::from_be_bytes(code), 1008);
    });
    let mut conn = Connection::connect(&url(addr), &ConnectOptions::default()).expect("connect");
    match conn.recv() {
        Err(ClientError::Closed { code: 1008, reason }) => assert_eq!(reason, "policy"),
        other => panic!("expected close 1008, got {other:?}"),
    }
    assert!(matches!(conn.recv(), Err(ClientError::NotConnected)));
    server.join().unwrap();
}

#[test]
fn a_server_that_sends_no_welcome_times_out_naming_the_welcome() {
    let (addr, server) = fake_server(|stream, key| {
        stream
            .write_all(&accept_response(&key.expect("an upgrade")))
            .unwrap();
    });
    let options = ConnectOptions {
        handshake_timeout: Duration::from_millis(200),
        ..ConnectOptions::default()
    };
    let result = Connection::connect(&url(addr), &options);
    assert!(
        matches!(
            result,
            Err(ClientError::TimedOut {
                during: Phase::Welcome,
                ..
            })
        ),
        "{result:?}"
    );
    server.join().unwrap();
}
