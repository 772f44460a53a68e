//! The heartbeat: the server pings idle connections, closes one that stays silent past
//! the idle timeout, and keeps one that answers (with pongs or with data).

use std::time::{Duration, Instant};

use ringcast::app::EchoApp;
use ringcast::ws::{Incoming, Opcode};

use crate::client::{tcp_state, RecvError, TestClient, TCP_CLOSE};
use crate::{start_server, wait_until, Server, WAIT};

const PING_INTERVAL: Duration = Duration::from_millis(100);
const IDLE_TIMEOUT: Duration = Duration::from_millis(600);

fn heartbeat_server() -> Server {
    start_server(
        |_| EchoApp,
        1,
        |c| {
            c.ping_interval_ms = PING_INTERVAL.as_millis() as u64;
            c.idle_timeout_ms = IDLE_TIMEOUT.as_millis() as u64;
            c.close_timeout_ms = 200;
        },
    )
}

#[test]
fn silent_client_is_pinged_then_closed_after_the_idle_timeout() {
    let server = heartbeat_server();
    // Taken before connecting, so it is no later than the server's own start of idling.
    let opened = Instant::now();
    let mut client = TestClient::connect(server.addr());
    // One deadline for the whole loop: pings alone would keep each read alive forever.
    let deadline = opened + WAIT;
    let mut pings = 0;
    let code = loop {
        match client.recv_until(deadline) {
            Ok(Incoming::Ping(_)) => pings += 1,
            Ok(Incoming::Close(frame)) => break frame.map(|(code, _)| code),
            other => panic!("expected pings then a close, got {other:?}"),
        }
    };
    assert!(pings >= 1, "no ping before the idle close");
    assert!(
        opened.elapsed() >= IDLE_TIMEOUT,
        "closed after {:?}",
        opened.elapsed()
    );
    assert_eq!(code, Some(1001));
    // No answer to the close either: the server gives up after close_timeout_ms, with
    // a reset (a FIN would leave the server's socket waiting on this silent peer).
    wait_until("the unanswered close to end in a reset", || {
        (tcp_state(client.stream()) == TCP_CLOSE).then_some(())
    });
    client.expect_eof();
    server.wait_for_stats("the connection to count as closed", |s| s.closed == 1);
}

/// What a live client does when the server pings it.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Pong,
    /// Sends a text message instead and reads its echo.
    Data,
}

#[test]
fn client_answering_pings_or_sending_data_stays_open_past_the_idle_timeout() {
    let server = heartbeat_server();
    let mut clients =
        [Answer::Pong, Answer::Data].map(|answer| (answer, TestClient::connect(server.addr()), 0));
    let until = Instant::now() + IDLE_TIMEOUT * 3;
    // Serve each client in turn, each read bounded by a slice of the ping interval, so
    // both answer their pings well within the idle timeout.
    while Instant::now() < until {
        for (answer, client, pings) in clients.iter_mut() {
            match client.recv_until(Instant::now() + PING_INTERVAL / 4) {
                Ok(Incoming::Ping(payload)) => {
                    *pings += 1;
                    match answer {
                        Answer::Pong => client.send(Opcode::Pong, &payload),
                        Answer::Data => client.send_text("still here"),
                    }
                }
                Ok(Incoming::Text(text)) if matches!(answer, Answer::Data) => {
                    assert_eq!(&text[..], b"still here")
                }
                Err(RecvError::Timeout) => {}
                other => panic!("{answer:?} client: {other:?}"),
            }
        }
    }
    for (answer, client, pings) in clients.iter_mut() {
        assert!(*pings >= 2, "{answer:?} client got {pings} pings");
        client.send_text("alive");
        let deadline = Instant::now() + WAIT;
        loop {
            match client.recv_until(deadline) {
                Ok(Incoming::Text(text)) if &text[..] == b"alive" => break,
                Ok(Incoming::Ping(_) | Incoming::Text(_)) => {}
                other => panic!("{answer:?} client: {other:?}"),
            }
        }
    }
    assert_eq!(server.stats().closed, 0);
}
