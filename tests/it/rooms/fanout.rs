//! Many clients in many rooms on every core or node: each message reaches exactly the
//! clients it is for, once, in its sender's order; and room counts stay exact while
//! clients on different cores or nodes join and leave at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Barrier;
use std::thread;

use serde_json::{json, Value};

use super::{
    broadcast_from, join_room, leave_room, member_joined, member_left, private_from, room_joined,
    room_message_from, send_private, send_to_room, Rooms, Setup,
};

on_cores_and_nodes!(
    many_clients_in_many_rooms_get_every_message_once_in_sender_order,
    counts_stay_exact_under_concurrent_joins_and_leaves,
    rejoining_at_once_never_reports_your_own_departure_to_you,
);

// A stand-alone server's own workings: the cross-core inboxes of one server and the
// backlog metrics of its home cores (a cluster node's inboxes are fed by its link).
on_one_and_two_cores!(counts_stay_exact_through_full_inboxes);

const CLIENTS: usize = 12;
const ROOMS: usize = 4;
/// Client `i` is on place `i % places`: on two cores, publishers 0 and 10 sit on core
/// 0, 3 and 5 on core 1; on three nodes, 0 and 3 on node 0, 10 on node 1, 5 on node 2.
const PUBLISHERS: [usize; 4] = [0, 3, 5, 10];
const MESSAGES: usize = 300;

/// Every client is in two or three of the four rooms; every room has eight members.
fn in_room(client: usize, room: usize) -> bool {
    !(client + room).is_multiple_of(3)
}

/// What a publisher sends as its message number `seq`.
#[derive(Clone, Copy)]
enum Send {
    Room(usize),
    Private(usize),
    Broadcast,
}

fn nth_send(publisher: usize, seq: usize) -> Send {
    let rooms: Vec<usize> = (0..ROOMS).filter(|&r| in_room(publisher, r)).collect();
    match seq % 6 {
        0..=3 => Send::Room(rooms[seq % rooms.len()]),
        4 => Send::Private((publisher + 1 + seq % (CLIENTS - 1)) % CLIENTS),
        _ => Send::Broadcast,
    }
}

fn many_clients_in_many_rooms_get_every_message_once_in_sender_order(setup: Setup) {
    let mut rooms = Rooms::start(setup);
    let names: Vec<String> = (0..ROOMS)
        .map(|r| rooms.room_on(r % setup.places(), &format!("room{r}")))
        .collect();
    let mut clients = rooms.clients_vec(CLIENTS);
    let ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();

    // Joins one at a time, each seen exactly by the members before it.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); ROOMS];
    for client in 0..CLIENTS {
        for room in (0..ROOMS).filter(|&r| in_room(client, r)) {
            members[room].push(client);
            let total = members[room].len();
            clients[client].join(&names[room], total);
            for &member in &members[room][..total - 1] {
                clients[member].expect(&member_joined(&names[room], &ids[client], total));
            }
        }
    }

    // What each client must receive from each publisher, in order.
    let expected: Vec<HashMap<String, VecDeque<Value>>> = (0..CLIENTS)
        .map(|client| {
            PUBLISHERS
                .iter()
                .filter(|&&p| p != client)
                .map(|&p| {
                    let from = &ids[p];
                    let messages = (0..MESSAGES)
                        .filter_map(|seq| {
                            let message = json!({"p": p, "seq": seq});
                            match nth_send(p, seq) {
                                Send::Room(r) if in_room(client, r) => {
                                    Some(room_message_from(&names[r], from, message))
                                }
                                Send::Private(to) if to == client => {
                                    Some(private_from(from, message))
                                }
                                Send::Broadcast => Some(broadcast_from(from, message)),
                                _ => None,
                            }
                        })
                        .collect();
                    (from.clone(), messages)
                })
                .collect()
        })
        .collect();

    thread::scope(|scope| {
        for (index, (client, mut expected)) in clients.iter_mut().zip(expected).enumerate() {
            let (names, ids) = (&names, &ids);
            scope.spawn(move || {
                if PUBLISHERS.contains(&index) {
                    for seq in 0..MESSAGES {
                        let message = json!({"p": index, "seq": seq});
                        client.send(&match nth_send(index, seq) {
                            Send::Room(r) => send_to_room(&names[r], message),
                            Send::Private(to) => send_private(&ids[to], message),
                            Send::Broadcast => json!({"type": "broadcast", "message": message}),
                        });
                    }
                }
                let total: usize = expected.values().map(VecDeque::len).sum();
                for _ in 0..total {
                    let got = client.recv();
                    let from = got["from"].as_str().unwrap_or_default().to_string();
                    let next = expected
                        .get_mut(&from)
                        .and_then(VecDeque::pop_front)
                        .unwrap_or_else(|| panic!("{}: unexpected {got}", client.id));
                    assert_eq!(
                        super::normalize(got, &next),
                        next,
                        "{}: lost, duplicated, misrouted or out of order",
                        client.id
                    );
                }
            });
        }
    });
    // Nothing more: no duplicate is still on its way.
    rooms.assert_quiet(&mut clients);
    assert_eq!(rooms.total(|s| s.slow_consumers), 0);
}

const WORKERS: usize = 8;
const ROUNDS: usize = 25;

/// One room event, as a watcher or worker sees it.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Joined { who: String, total: i64 },
    Left { who: String, total: i64 },
}

fn event(message: &Value, room: &str) -> Event {
    let who = message["client_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let total = message["total_members"].as_i64().unwrap_or(-1);
    let event = match message["type"].as_str() {
        Some("member_joined") => Event::Joined { who, total },
        Some("member_left") => Event::Left { who, total },
        _ => panic!("not a member event: {message}"),
    };
    let expected = match &event {
        Event::Joined { who, total } => member_joined(room, who, *total as usize),
        Event::Left { who, total } => member_left(room, who, *total as usize),
    };
    assert_eq!(*message, expected, "a member event, whole");
    event
}

/// Checks that each event moves the count by one from `total`; returns the new count.
fn follow(total: i64, event: &Event, me: &str) -> i64 {
    let (who, next, expected) = match event {
        Event::Joined { who, total: next } => (who, *next, total + 1),
        Event::Left { who, total: next } => (who, *next, total - 1),
    };
    assert_ne!(who, me, "{me} was told about itself: {event:?}");
    assert_eq!(next, expected, "{me}: the count skipped at {event:?}");
    next
}

fn counts_stay_exact_under_concurrent_joins_and_leaves(setup: Setup) {
    joins_and_leaves_at_once(&mut Rooms::start(setup));
}

/// The smallest inbox: a home answering joins posts more than it can push, its backlog
/// pauses every core's readers, and nothing may be lost, duplicated or miscounted.
fn counts_stay_exact_through_full_inboxes(setup: Setup) {
    let cores = setup.places();
    let mut rooms = Rooms::start_with(setup, |c| c.inbox_capacity = 16);
    let addr = rooms.addr_of(0);
    joins_and_leaves_at_once(&mut rooms);
    // The path under test was taken: the home's answers waited in its backlog (a few
    // hundred envelopes on two cores), and every backlog is empty again.
    let metrics = crate::client::http_exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let body = String::from_utf8(metrics.body).expect("UTF-8");
    let series = |name: &str| -> Vec<u64> {
        body.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix("{core=\""))
            .map(|rest| {
                rest.split_once(' ')
                    .expect("a value")
                    .1
                    .parse()
                    .expect("a count")
            })
            .collect()
    };
    assert_eq!(series("ringcast_backlog_envelopes"), vec![0; cores]);
    let waited: u64 = series("ringcast_backlogged_envelopes_total").iter().sum();
    assert!(cores == 1 || waited > 0, "no envelope ever waited:\n{body}");
}

fn joins_and_leaves_at_once(rooms: &mut Rooms) {
    let room = rooms.room_on(rooms.places() - 1, "busy");
    // Two watchers, one per core or node (both on one alone), stay in the room throughout.
    let mut watchers = rooms.clients_vec(2);
    {
        let [first, second] = &mut watchers[..] else {
            unreachable!()
        };
        super::join_in_turn(&room, &mut [first, second]);
    }
    let mut workers = rooms.clients_vec(WORKERS);
    // Every worker joins and leaves as fast as it can, all at once; the even ones end
    // in the room.
    let start = Barrier::new(WORKERS);
    thread::scope(|scope| {
        for (index, worker) in workers.iter_mut().enumerate() {
            let (room, start) = (&room, &start);
            scope.spawn(move || {
                start.wait();
                for _ in 0..ROUNDS {
                    worker.send(&join_room(room));
                    worker.send(&leave_room(room));
                }
                if index % 2 == 0 {
                    worker.send(&join_room(room));
                }
            });
        }
    });
    let joins = WORKERS * ROUNDS + WORKERS / 2;
    let leaves = WORKERS * ROUNDS;
    let last = 2 + WORKERS as i64 / 2;

    // Watchers see every join and leave, in the one order of the room's home (or Redis).
    let mut seen = Vec::new();
    for watcher in &mut watchers {
        let events: Vec<Event> = (0..joins + leaves)
            .map(|_| event(&watcher.recv(), &room))
            .collect();
        let total = events.iter().fold(2, |t, e| follow(t, e, &watcher.id));
        assert_eq!(total, last, "{}: the final count", watcher.id);
        for (index, worker) in workers.iter().enumerate() {
            let mine: Vec<&Event> = events
                .iter()
                .filter(|e| matches!(e, Event::Joined { who, .. } | Event::Left { who, .. } if *who == worker.id))
                .collect();
            let expected_len = 2 * ROUNDS + usize::from(index % 2 == 0);
            assert_eq!(mine.len(), expected_len, "events of {}", worker.id);
            for (n, e) in mine.iter().enumerate() {
                assert_eq!(matches!(e, Event::Joined { .. }), n % 2 == 0, "{e:?}");
            }
        }
        seen.push(events);
    }
    assert_eq!(seen[0], seen[1], "both watchers see the same history");
    rooms.assert_quiet(&mut watchers);

    // Each worker: a `room_joined` per join, then only other members' events while it
    // is in, each moving the count by one.
    for (index, worker) in workers.iter_mut().enumerate() {
        let messages = rooms.drain(worker);
        let mut total = None;
        let mut joined = 0;
        for message in &messages {
            if message["type"] == "room_joined" {
                let members = message["members"].as_u64().unwrap_or(0) as usize;
                assert_eq!(
                    crate::without_unasked_position(message.clone(), &room_joined(&room, members)),
                    room_joined(&room, members)
                );
                assert!((1..=2 + WORKERS).contains(&members), "{message}");
                total = Some(members as i64);
                joined += 1;
            } else {
                let at = total.unwrap_or_else(|| panic!("{message} before any room_joined"));
                total = Some(follow(at, &event(message, &room), &worker.id));
            }
        }
        assert_eq!(
            joined,
            ROUNDS + usize::from(index % 2 == 0),
            "{}",
            worker.id
        );
        if index % 2 == 0 {
            assert_eq!(total, Some(last), "{}: in the room to the end", worker.id);
        }
    }
    // A newcomer is counted on top of exactly the final membership.
    let mut newcomer = rooms.client_on(0);
    newcomer.join(&room, last as usize + 1);
}

/// A regression test for a join, leave and join read in one go on a core other than
/// the room's home: the first `Joined` coming back found the client in the room again
/// (by its second join) and re-added it early, so it was sent the `member_left` of its
/// own first leave.
fn rejoining_at_once_never_reports_your_own_departure_to_you(setup: Setup) {
    let mut rooms = Rooms::start(setup);
    let last = setup.places() - 1;
    let room = rooms.room_on(last, "revolving");
    // x and y on place 0 (y keeps it in the room), w on the home core (or another node).
    let mut x = rooms.client_on(0);
    let mut y = rooms.client_on(0);
    let mut w = rooms.client_on(last);
    super::join_in_turn(&room, &mut [&mut w, &mut y]);
    x.send_burst(&[join_room(&room), leave_room(&room), join_room(&room)]);
    // As the seed does it: two answers to x, three events to the others.
    x.expect(&room_joined(&room, 3));
    x.expect(&room_joined(&room, 3));
    for other in [&mut w, &mut y] {
        other.expect(&member_joined(&room, &x.id, 3));
        other.expect(&member_left(&room, &x.id, 2));
        other.expect(&member_joined(&room, &x.id, 3));
    }
    rooms.assert_quiet([&mut x, &mut y, &mut w]);
}
