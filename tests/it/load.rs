//! `ringcast load` end to end against the real server, one short run per scenario, and
//! runs spread over two servers given as two URLs. Small counts: these assert
//! correctness of the tool and the server, not speed.

use ringcast::app::{BroadcastApp, EchoApp};
use ringcast::load::{run_report, LoadArgs, Report};
use ringcast::rooms::RoomsApp;

use crate::start_server;

/// One short `ringcast load` run (the TLS tests' over wss:// too).
pub(crate) fn load(words: &[&str]) -> Report {
    let short = [
        "--quiet",
        "--duration",
        "0.3",
        "--drain",
        "2",
        "--hold",
        "0.2",
    ];
    let args =
        LoadArgs::parse_words(words.iter().chain(short.iter()).copied()).expect("arguments parse");
    run_report(args).expect("the load run completes")
}

#[test]
fn echo_scenario_gets_every_message_back_from_two_cores() {
    let server = start_server(|_| EchoApp, 2, |_| {});
    let url = format!("ws://{}/", server.addr());
    let report = load(&["echo", &url, "-c", "8", "-p", "4", "--binary"]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.count > 0, "no round trips counted");
    assert_eq!(report.mismatched, Some(0));
    assert_eq!(report.unanswered, Some(0));
}

#[test]
fn echo_scenario_spreads_its_connections_over_two_servers_round_robin() {
    let first = start_server(|_| EchoApp, 1, |_| {});
    let second = start_server(|_| EchoApp, 1, |_| {});
    let urls = [
        format!("ws://{}/", first.addr()),
        format!("ws://{}/", second.addr()),
    ];
    let report = load(&["echo", &urls[0], &urls[1], "-c", "8", "-p", "2"]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.count > 0, "no round trips counted");
    assert_eq!(report.unanswered, Some(0));
    assert_eq!(report.urls, urls);
    assert_eq!(report.connections_per_url, Some(vec![4, 4]));
    for server in [&first, &second] {
        server.wait_for_stats("4 upgrades on each server", |s| s.opened == 4);
    }
}

#[test]
fn broadcast_scenario_counts_every_delivery_exactly_once() {
    let server = start_server(|_| BroadcastApp::default(), 2, |_| {});
    let url = format!("ws://{}/", server.addr());
    let report = load(&["broadcast", &url, "-c", "20", "-k", "3", "-w", "4"]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let delivery = report.delivery.expect("broadcast reports its tally");
    assert!(delivery.expected > 0);
    assert_eq!(delivery.delivered, delivery.expected);
    assert_eq!((delivery.lost, delivery.duplicates), (0, 0));
}

#[test]
fn rooms_scenario_delivers_every_room_message_once_in_order_across_two_cores() {
    let server = start_server(RoomsApp::configured, 2, |_| {});
    let url = format!("ws://{}/", server.addr());
    let report = load(&["rooms", &url, "-c", "24", "-r", "4", "-k", "6", "-w", "4"]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let delivery = report.delivery.expect("rooms reports its tally");
    assert!(delivery.expected > 0);
    assert_eq!(delivery.delivered, delivery.expected);
    assert_eq!((delivery.lost, delivery.duplicates), (0, 0));
    assert_eq!(delivery.reordered, 0);
    let checks = report.room_checks.expect("rooms reports its checks");
    // 4 rooms of 6: each fills with 0 + 1 + ... + 5 = 15 member_joined notices.
    assert_eq!(checks.join_notices, 60);
    assert_eq!(
        checks.misrouted + checks.own_messages + checks.count_errors,
        0
    );
}

#[test]
fn churn_beside_a_rooms_run_with_guests_leaves_its_deliveries_exact() {
    let server = start_server(RoomsApp::configured, 2, |_| {});
    let url = format!("ws://{}/", server.addr());
    let steady_url = url.clone();
    let steady = std::thread::spawn(move || {
        let args = [
            "rooms",
            &steady_url,
            "-c",
            "24",
            "-r",
            "4",
            "-k",
            "4",
            "-w",
            "4",
        ];
        let extra = ["--guests", "--quiet", "--duration", "2.5", "--drain", "2"];
        run_report(LoadArgs::parse_words(args.into_iter().chain(extra)).unwrap())
    });
    // Guests may only enter a room once it is full (the rooms run checks exact counts
    // while filling). The steady members send only their 24 joins until every room is
    // full; the first message past those is a publisher's, so the rooms are full.
    server.wait_for_stats("the steady run publishing", |s| s.messages_received > 24);
    let args = ["churn", &url, "-c", "4", "-r", "4", "--rate", "100"];
    let extra = ["--quiet", "--duration", "1"];
    let churn = run_report(LoadArgs::parse_words(args.into_iter().chain(extra)).unwrap())
        .expect("the churn run completes");
    assert!(churn.problems.is_empty(), "{:?}", churn.problems);
    let counts = churn.churn.expect("churn reports its counts");
    assert!(counts.upgraded > 0 && counts.joins > 0, "{counts:?}");
    assert_eq!(
        counts.attempts,
        counts.upgraded + counts.half_open + counts.failures
    );
    let report = steady.join().unwrap().expect("the rooms run completes");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let delivery = report.delivery.expect("rooms reports its tally");
    assert_eq!(
        (delivery.lost, delivery.duplicates, delivery.reordered),
        (0, 0, 0)
    );
    let checks = report.room_checks.expect("rooms reports its checks");
    assert!(
        checks.guest_notices > 0,
        "the churn visited the steady rooms"
    );
    server.wait_for_stats("every connection closed", |s| s.closed == s.opened);
}

#[test]
fn churn_clients_take_turns_over_two_servers() {
    let first = start_server(RoomsApp::configured, 1, |_| {});
    let second = start_server(RoomsApp::configured, 1, |_| {});
    let (url_a, url_b) = (
        format!("ws://{}/", first.addr()),
        format!("ws://{}/", second.addr()),
    );
    let args = [
        "churn", &url_a, &url_b, "-c", "2", "-r", "0", "--rate", "100",
    ];
    let extra = ["--quiet", "--duration", "0.5"];
    let churn = run_report(LoadArgs::parse_words(args.into_iter().chain(extra)).unwrap())
        .expect("the churn run completes");
    assert!(churn.problems.is_empty(), "{:?}", churn.problems);
    assert_eq!(churn.urls, [url_a, url_b]);
    let counts = churn.churn.expect("churn reports its counts");
    assert!(counts.upgraded >= 2, "{counts:?}");
    for server in [&first, &second] {
        server.wait_for_stats("churn clients on each server", |s| s.opened > 0);
    }
}

#[test]
fn rooms_scenario_reports_a_server_that_refuses_messages() {
    let server = start_server(RoomsApp::configured, 1, |c| {
        c.rate_limit_per_s = 1;
        c.rate_limit_burst = 2;
    });
    let url = format!("ws://{}/", server.addr());
    let args = LoadArgs::parse_words(
        ["rooms", &url, "-c", "4", "-r", "1", "-k", "1", "-w", "8"]
            .into_iter()
            .chain(["--quiet", "--duration", "0.3", "--drain", "0.5"]),
    )
    .expect("arguments parse");
    let report = run_report(args).expect("the run completes and reports");
    let checks = report.room_checks.expect("rooms reports its checks");
    assert!(checks.server_errors > 0, "{checks:?}");
    assert!(
        !report.problems.is_empty(),
        "the errors make it a failed run"
    );
}

#[test]
fn connect_scenario_opens_every_connection_from_several_sources() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let url = format!("ws://{}/", server.addr());
    let report = load(&["connect", &url, "-c", "300", "--sources", "4"]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.count, 300);
    server.wait_for_stats("300 upgrades", |s| s.opened >= 300);
}

#[test]
fn broadcast_scenario_against_an_echo_server_fails_with_a_clear_error() {
    let server = start_server(|_| EchoApp, 1, |_| {});
    let url = format!("ws://{}/", server.addr());
    let words = [
        "broadcast",
        &url,
        "-c",
        "3",
        "--connect-timeout",
        "0.5",
        "--quiet",
        "--duration",
        "0.3",
    ];
    let args = LoadArgs::parse_words(words).expect("arguments parse");
    let error = run_report(args).expect_err("an echo server does not relay to others");
    assert!(error.to_string().contains("sync message"), "{error}");
}

#[test]
fn a_server_that_is_not_there_is_an_error_not_a_hang() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("ws://{free}/");
    let args = LoadArgs::parse_words([
        "echo",
        url.as_str(),
        "-c",
        "2",
        "--quiet",
        "--duration",
        "0.3",
    ])
    .unwrap();
    let error = run_report(args).expect_err("nothing listens there");
    assert!(error.to_string().contains("refused"), "{error}");
}
