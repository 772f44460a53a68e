//! Graceful shutdown: every connection gets close 1001, and shutdown completes as soon
//! as the clients answer, not at the deadline.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringcast::app::EchoApp;

use crate::client::TestClient;
use crate::{start_server, WAIT};

#[test]
fn shutdown_sends_1001_to_every_client_and_completes_once_they_answer() {
    const DEADLINE: Duration = Duration::from_secs(10);
    let mut server = start_server(
        |_| EchoApp,
        2,
        |c| c.shutdown_timeout_ms = DEADLINE.as_millis() as u64,
    );
    let mut clients: Vec<TestClient> = (0..8).map(|_| TestClient::connect(server.addr())).collect();
    server.wait_for_stats("eight open connections", |s| s.open() == 8);

    let handle = server.take_handle();
    let (done_tx, done_rx) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || done_tx.send(handle.shutdown()));

    for client in &mut clients {
        assert_eq!(client.expect_close(), 1001);
    }
    assert!(
        matches!(done_rx.try_recv(), Err(mpsc::TryRecvError::Empty)),
        "shutdown completed before the clients answered the close"
    );
    for client in &mut clients {
        client.send_close(1001, "");
        client.expect_eof();
    }
    let result = done_rx
        .recv_timeout(WAIT)
        .expect("shutdown completes once clients answer");
    result.expect("every core ends cleanly");
    assert!(
        started.elapsed() < DEADLINE,
        "shutdown waited for its deadline"
    );
}

#[test]
fn shutdown_with_no_connections_returns_promptly() {
    let mut server = start_server(|_| EchoApp, 2, |c| c.shutdown_timeout_ms = 10_000);
    let (done_tx, done_rx) = mpsc::channel();
    let handle = server.take_handle();
    std::thread::spawn(move || done_tx.send(handle.shutdown()));
    let result = done_rx.recv_timeout(WAIT).expect("shutdown completes");
    result.expect("every core ends cleanly");
}
