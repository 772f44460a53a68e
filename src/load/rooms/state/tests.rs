use super::*;
use crate::load::args::BROADCAST_HEADER_LEN;
use crate::load::payload::fill_broadcast;

const SIZE: usize = BROADCAST_HEADER_LEN + 3;

fn layout(connections: usize, rooms: usize, publishers: usize) -> Layout {
    Layout {
        connections,
        rooms,
        publishers,
        threads: 1,
    }
}

/// A book for one thread holding every connection, each welcomed and joined in
/// index order, so every room is full and settled.
fn settled_book(layout: Layout, window: usize, rate: Option<f64>) -> Book {
    let all: Vec<usize> = (0..layout.connections).collect();
    let mut book = Book::new(layout, &all, window, SIZE, rate);
    for m in 0..layout.connections {
        let welcome = format!(r#"{{"type":"welcome","client_id":"client_{m}","timestamp":1}}"#);
        assert!(book.handle(m, welcome.as_bytes(), 0, false).welcomed);
        assert!(book.take_join(m).is_some());
    }
    let mut joined = vec![0u64; layout.rooms];
    for m in 0..layout.connections {
        let room = layout.room_of(m);
        joined[room] += 1;
        let reply = format!(
            r#"{{"type":"room_joined","room":"load-{room}","members":{}}}"#,
            joined[room]
        );
        book.handle(m, reply.as_bytes(), 0, false);
        for earlier in (room..m).step_by(layout.rooms) {
            let notice = format!(
                r#"{{"type":"member_joined","room":"load-{room}","client_id":"client_{m}","total_members":{}}}"#,
                joined[room]
            );
            book.handle(earlier, notice.as_bytes(), 0, false);
        }
    }
    assert_eq!(
        book.checks,
        RoomChecks {
            join_notices: book.checks.join_notices,
            ..RoomChecks::default()
        }
    );
    book
}

/// What the server relays to a member for `stamp`, sent by connection `from` in `room`.
fn relayed(room: usize, from: usize, stamp: Stamp) -> Vec<u8> {
    let mut body = vec![0; SIZE];
    fill_broadcast(&mut body, stamp);
    let body = String::from_utf8(body).unwrap();
    format!(
        r#"{{"type":"room_message","room":"load-{room}","from":"client_{from}","message":"{body}","timestamp":1}}"#
    )
    .into_bytes()
}

/// Tops up publisher (room, slot), returning the stamps it sent.
fn send_all(book: &mut Book, publisher: (usize, usize), now: u64) -> Vec<Stamp> {
    let mut stamps = Vec::new();
    book.top_up(publisher, now, |template, stamp| {
        let mut out = vec![0; template.len(SIZE)];
        template.write(&mut out, |body| fill_broadcast(body, stamp));
        serde_json::from_slice::<serde_json::Value>(&out).expect("requests are JSON");
        stamps.push(stamp);
    });
    stamps
}

#[test]
fn connections_spread_evenly_and_each_room_lives_on_one_thread() {
    let l = Layout {
        connections: 10,
        rooms: 3,
        publishers: 2,
        threads: 2,
    };
    assert_eq!(
        (0..3).map(|r| l.room_size(r)).collect::<Vec<_>>(),
        [4, 3, 3]
    );
    assert_eq!(l.connections_of(0), [0, 2, 3, 5, 6, 8, 9]);
    assert_eq!(l.connections_of(1), [1, 4, 7]);
    let one = Layout { threads: 1, ..l };
    assert_eq!(one.connections_of(0).len(), 10);
    let idle = Layout { threads: 4, ..l };
    assert!(
        idle.connections_of(3).is_empty(),
        "more threads than rooms: some idle"
    );
}

#[test]
fn a_member_joins_once_and_only_after_its_welcome() {
    let mut book = Book::new(layout(4, 2, 1), &[0, 1, 2, 3], 4, SIZE, None);
    assert_eq!(book.take_join(0), None, "no welcome yet");
    let h = book.handle(
        0,
        br#"{"type":"welcome","client_id":"client_a","timestamp":1}"#,
        0,
        false,
    );
    assert!(h.welcomed);
    assert_eq!(book.take_join(0), Some("load-0"));
    assert_eq!(book.take_join(0), None, "already sent");
    book.handle(
        0,
        br#"{"type":"welcome","client_id":"client_b","timestamp":1}"#,
        0,
        false,
    );
    assert_eq!(book.checks.unexpected, 1, "a second welcome is unexpected");
}

#[test]
fn a_member_settles_when_it_has_seen_its_room_full() {
    let mut book = Book::new(layout(6, 2, 0), &[0, 2, 4], 4, SIZE, None);
    for m in 0..3 {
        book.handle(
            m,
            br#"{"type":"welcome","client_id":"c","timestamp":1}"#,
            0,
            false,
        );
        book.take_join(m);
    }
    let h = book.handle(
        1,
        br#"{"type":"room_joined","room":"load-0","members":1}"#,
        0,
        false,
    );
    assert!(h.joined && !h.settled);
    let notice = |n: u64| {
        format!(r#"{{"type":"member_joined","room":"load-0","client_id":"x","total_members":{n}}}"#)
    };
    assert!(!book.handle(1, notice(2).as_bytes(), 0, false).settled);
    assert!(book.handle(1, notice(3).as_bytes(), 0, false).settled);
    let h = book.handle(
        0,
        br#"{"type":"room_joined","room":"load-0","members":3}"#,
        0,
        false,
    );
    assert!(
        h.joined && h.settled,
        "the last joiner sees the room full at once"
    );
    assert_eq!(book.checks.join_notices, 2);
    assert_eq!(book.checks.problems(), 0);
}

#[test]
fn inexact_counts_are_caught() {
    let mut book = Book::new(layout(6, 2, 0), &[0, 2, 4], 4, SIZE, None);
    for m in 0..3 {
        book.handle(
            m,
            br#"{"type":"welcome","client_id":"c","timestamp":1}"#,
            0,
            false,
        );
        book.take_join(m);
    }
    // A notice that skips a count, and two joiners told they made the room 2.
    book.handle(
        0,
        br#"{"type":"room_joined","room":"load-0","members":1}"#,
        0,
        false,
    );
    book.handle(
        0,
        br#"{"type":"member_joined","room":"load-0","client_id":"x","total_members":3}"#,
        0,
        false,
    );
    assert_eq!(book.checks.count_errors, 1);
    book.handle(
        1,
        br#"{"type":"room_joined","room":"load-0","members":2}"#,
        0,
        false,
    );
    book.handle(
        2,
        br#"{"type":"room_joined","room":"load-0","members":2}"#,
        0,
        false,
    );
    book.finish();
    assert_eq!(
        book.checks.count_errors, 2,
        "joins said 1, 2, 2, not 1, 2, 3"
    );
    assert!(book.checks.first.as_deref().unwrap().contains("inexact"));
}

#[test]
fn messages_for_another_room_or_before_joining_are_unexpected() {
    let mut book = Book::new(layout(4, 2, 0), &[0, 2], 4, SIZE, None);
    book.handle(
        0,
        br#"{"type":"room_joined","room":"load-0","members":1}"#,
        0,
        false,
    );
    assert_eq!(
        book.checks.unexpected, 1,
        "room_joined before any join_room"
    );
    book.handle(
        0,
        br#"{"type":"welcome","client_id":"c","timestamp":1}"#,
        0,
        false,
    );
    book.take_join(0);
    book.handle(
        0,
        br#"{"type":"room_joined","room":"load-1","members":1}"#,
        0,
        false,
    );
    book.handle(
        0,
        br#"{"type":"member_left","room":"load-0","client_id":"x","total_members":1}"#,
        0,
        false,
    );
    book.handle(0, b"not json", 0, false);
    assert_eq!(book.checks.unexpected, 4);
    book.handle(
        0,
        br#"{"type":"error","message":"Room does not exist","timestamp":1}"#,
        0,
        false,
    );
    assert_eq!(book.checks.server_errors, 1);
}

#[test]
fn every_other_member_of_the_room_gets_each_message_once_in_order() {
    // Rooms of 3 (0, 2, 4) and (1, 3, 5); publishers 0 and 1.
    let mut book = settled_book(layout(6, 2, 2), 4, None);
    let publishers = book.publishers();
    assert_eq!(publishers, [(0, 0), (1, 0)]);
    let stamps = send_all(&mut book, (0, 0), 1_000);
    assert_eq!(stamps.len(), 4, "a full window");
    assert!(
        send_all(&mut book, (0, 0), 1_000).is_empty(),
        "the window is full"
    );
    // Connection 2 gets all four; connection 4 the first two.
    for stamp in &stamps {
        let h = book.handle(2, &relayed(0, 0, *stamp), 3_000, true);
        assert!(h.counted && h.top_up.is_none());
    }
    let h = book.handle(4, &relayed(0, 0, stamps[0]), 5_000, true);
    assert_eq!(h.top_up, Some((0, 0)), "message 0 reached the whole room");
    book.handle(4, &relayed(0, 0, stamps[1]), 5_000, true);
    assert_eq!(
        send_all(&mut book, (0, 0), 6_000).len(),
        2,
        "two slots freed"
    );
    assert!(!book.all_delivered());
    // A repeat is neither counted nor an acknowledgement.
    let h = book.handle(4, &relayed(0, 0, stamps[1]), 7_000, true);
    assert!(!h.counted);
    assert_eq!(book.latency.percentiles().unwrap().samples, 6);
    assert_eq!(book.fanout.percentiles().unwrap().samples, 2);
    assert_eq!(book.fanout.value_at(1.0), Some(4_000));
    let tally = book.finish();
    // 6 messages sent, owed to 2 members each; connection 2 missed the last two,
    // connection 4 the last four; one duplicate.
    assert_eq!(
        (
            tally.expected,
            tally.delivered,
            tally.lost,
            tally.duplicates
        ),
        (12, 6, 6, 1)
    );
    assert_eq!(book.checks.problems(), 0);
}

#[test]
fn out_of_order_delivery_is_counted_and_still_acknowledged() {
    let mut book = settled_book(layout(2, 1, 1), 2, None);
    let stamps = send_all(&mut book, (0, 0), 0);
    book.handle(1, &relayed(0, 0, stamps[1]), 10, true);
    let h = book.handle(1, &relayed(0, 0, stamps[0]), 10, true);
    assert_eq!(h.top_up, Some((0, 0)));
    assert!(book.all_delivered());
    let tally = book.finish();
    assert_eq!((tally.delivered, tally.reordered, tally.lost), (2, 1, 0));
}

#[test]
fn own_misrouted_and_foreign_messages_are_problems_not_deliveries() {
    let mut book = settled_book(layout(4, 2, 2), 4, None);
    let stamps = send_all(&mut book, (0, 0), 0);
    let own = book.handle(0, &relayed(0, 0, stamps[0]), 1, true);
    assert!(!own.counted);
    assert_eq!(book.checks.own_messages, 1);
    // Connection 1 is in room 1: publisher 0 is not in its room.
    book.handle(1, &relayed(0, 0, stamps[0]), 1, true);
    // The right member, but naming another room or another sender.
    book.handle(2, &relayed(1, 0, stamps[0]), 1, true);
    book.handle(2, &relayed(0, 2, stamps[0]), 1, true);
    assert_eq!(book.checks.misrouted, 3);
    book.handle(2, br#"{"type":"room_message","room":"load-0","from":"client_0","message":"hi","timestamp":1}"#, 1, true);
    assert_eq!(book.checks.unexpected, 1);
    assert!(book.latency.percentiles().is_none(), "nothing counted");
}

#[test]
fn nothing_is_counted_outside_the_measured_interval() {
    let mut book = settled_book(layout(2, 1, 1), 1, None);
    let stamps = send_all(&mut book, (0, 0), 0);
    let h = book.handle(1, &relayed(0, 0, stamps[0]), 1, false);
    assert!(!h.counted);
    assert_eq!(h.top_up, Some((0, 0)), "still acknowledged, for the drain");
    assert!(book.latency.percentiles().is_none() && book.fanout.percentiles().is_none());
}

#[test]
fn rate_mode_sends_on_schedule_and_stamps_the_scheduled_time() {
    // 1,000 msg/s: one every 1 ms; two publishers, the second half a period later.
    let mut book = settled_book(layout(4, 1, 2), 100, Some(1000.0));
    book.start(10_000_000);
    let first = send_all(&mut book, (0, 0), 12_500_000);
    let times: Vec<u64> = first.iter().map(|s| s.sent_ns).collect();
    assert_eq!(times, [10_000_000, 11_000_000, 12_000_000]);
    let second = send_all(&mut book, (0, 1), 12_500_000);
    let times: Vec<u64> = second.iter().map(|s| s.sent_ns).collect();
    assert_eq!(times, [10_500_000, 11_500_000, 12_500_000]);
    assert!(
        send_all(&mut book, (0, 0), 12_900_000).is_empty(),
        "nothing new due"
    );
    assert_eq!(send_all(&mut book, (0, 0), 13_000_000).len(), 1);
}

#[test]
fn rate_mode_behind_its_window_sends_late_with_the_scheduled_stamp() {
    let mut book = settled_book(layout(2, 1, 1), 1, Some(1000.0));
    book.start(0);
    let stamps = send_all(&mut book, (0, 0), 5_000_000);
    assert_eq!(stamps.len(), 1, "the window holds one");
    book.handle(1, &relayed(0, 0, stamps[0]), 9_000_000, true);
    let late = send_all(&mut book, (0, 0), 9_000_000);
    assert_eq!(
        late[0].sent_ns, 1_000_000,
        "due at 1 ms, sent at 9 ms: 8 ms of latency"
    );
}

#[test]
fn a_dropped_member_releases_the_windows_it_held() {
    let mut book = settled_book(layout(3, 1, 1), 2, None);
    let stamps = send_all(&mut book, (0, 0), 0);
    book.handle(1, &relayed(0, 0, stamps[0]), 1, true);
    book.handle(1, &relayed(0, 0, stamps[1]), 1, true);
    assert!(!book.all_delivered());
    assert_eq!(book.handle_end(2), [(0, 0)]);
    assert!(book.all_delivered());
    assert!(book.handle_end(2).is_empty(), "ends once");
    let next = send_all(&mut book, (0, 0), 2);
    assert_eq!(next.len(), 2);
    book.handle(1, &relayed(0, 0, next[0]), 3, true);
    assert!(!book.all_delivered());
    book.handle(1, &relayed(0, 0, next[1]), 3, true);
    assert!(book.all_delivered(), "now owed to connection 1 only");
}

/// What a churn client does in room 0 of a settled 2-room book: join, talk, leave.
const GUEST_NOTICES: [&str; 3] = [
    r#"{"type":"member_joined","room":"load-0","client_id":"guest_1","total_members":4}"#,
    r#"{"type":"room_message","room":"load-0","from":"guest_1","message":"hi","timestamp":1}"#,
    r#"{"type":"member_left","room":"load-0","client_id":"guest_1","total_members":3}"#,
];

#[test]
fn guests_in_a_settled_room_are_counted_not_problems_when_allowed() {
    let mut book = settled_book(layout(6, 2, 2), 4, None);
    book.allow_guests();
    for notice in GUEST_NOTICES {
        let handled = book.handle(0, notice.as_bytes(), 0, true);
        assert_eq!(handled, Handled::default());
    }
    assert_eq!(book.checks.guest_notices, 3);
    assert_eq!(book.checks.problems(), 0, "{:?}", book.checks.first);
}

#[test]
fn guests_are_problems_unless_allowed() {
    let mut book = settled_book(layout(6, 2, 2), 4, None);
    for notice in GUEST_NOTICES {
        book.handle(0, notice.as_bytes(), 0, true);
    }
    assert_eq!(book.checks.guest_notices, 0);
    // The guest's join reads as a fourth member (exact: 3 + 1); its message and its
    // leaving are problems.
    assert_eq!(book.checks.unexpected, 2, "{:?}", book.checks.first);
    assert_eq!(book.checks.problems(), 2);
}

#[test]
fn one_of_our_own_members_leaving_is_never_a_guest() {
    let mut book = settled_book(layout(6, 2, 2), 4, None);
    book.allow_guests();
    let left = r#"{"type":"member_left","room":"load-0","client_id":"client_2","total_members":2}"#;
    book.handle(0, left.as_bytes(), 0, true);
    let other_room =
        r#"{"type":"member_joined","room":"load-1","client_id":"g","total_members":4}"#;
    book.handle(0, other_room.as_bytes(), 0, true);
    assert_eq!(book.checks.guest_notices, 0);
    assert_eq!(book.checks.unexpected, 2, "{:?}", book.checks.first);
}
