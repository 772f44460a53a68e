//! Offsets, recovery and per-sender order with room messages sequenced by their home
//! (issue 13), over the simulated cores of `tests.rs`.

use serde_json::{json, Value};

use super::{home_of, without_epoch, ConnId, HistoryLimits, Sim};

fn limits(size: usize) -> HistoryLimits {
    HistoryLimits {
        size,
        ..HistoryLimits::default()
    }
}

/// A room whose home is `core` of `cores`.
fn room_on(core: usize, cores: usize, name: &str) -> String {
    (0..)
        .map(|n| format!("{name}-{n}"))
        .find(|room| home_of(room, cores).index() == core)
        .expect("some name hashes to every core")
}

fn join(sim: &mut Sim, conn: ConnId, room: &str) -> Value {
    sim.send(conn, json!({"type": "join_room", "room": room}));
    sim.settle();
    let mut got = sim.take(conn);
    assert_eq!(got.len(), 1, "{got:?}");
    got.remove(0)
}

fn say(sim: &mut Sim, conn: ConnId, room: &str, text: &str) {
    sim.send(
        conn,
        json!({"type": "room_message", "room": room, "message": text}),
    );
}

#[test]
fn offsets_are_one_order_for_every_member_whatever_core_the_senders_are_on() {
    for seed in 1..30 {
        let mut sim = Sim::new(3, seed);
        let conns: Vec<ConnId> = (0..6).map(|n| sim.connect((n % 3) as u16)).collect();
        for conn in &conns {
            sim.take(*conn);
        }
        let room = room_on(1, 3, "r");
        for conn in &conns {
            join(&mut sim, *conn, &room);
            for other in &conns {
                sim.take(*other);
            }
        }
        for round in 0..4 {
            for conn in &conns[..3] {
                say(&mut sim, *conn, &room, &format!("m{round}"));
            }
        }
        sim.settle();
        // Every member got every other sender's messages with offsets rising, and the
        // passive members (3..6) saw the same sequence 1..=12.
        for conn in &conns[3..] {
            let offsets: Vec<u64> = sim
                .take(*conn)
                .iter()
                .map(|m| m["offset"].as_u64().unwrap())
                .collect();
            assert_eq!(offsets, (1..=12).collect::<Vec<_>>(), "seed {seed}");
        }
        for conn in &conns[..3] {
            let offsets: Vec<u64> = sim
                .take(*conn)
                .iter()
                .map(|m| m["offset"].as_u64().unwrap())
                .collect();
            assert_eq!(offsets.len(), 8);
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "seed {seed}: {offsets:?}"
            );
        }
    }
}

#[test]
fn a_rejoining_client_recovers_exactly_what_it_missed_before_anything_live() {
    for seed in 1..20 {
        let mut sim = Sim::new(2, seed).with_cores(|c| c.with_history(limits(8)));
        let (a, b) = (sim.connect(0), sim.connect(1));
        sim.take(a);
        sim.take(b);
        let room = room_on(0, 2, "r");
        let joined = join(&mut sim, b, &room);
        let epoch = joined["epoch"].as_str().unwrap().to_string();
        join(&mut sim, a, &room);
        sim.take(b);
        say(&mut sim, a, &room, "seen");
        sim.settle();
        let seen = sim.take(b);
        assert_eq!(seen[0]["offset"], 1);
        sim.close(b);
        sim.settle();
        sim.take(a);
        for n in 0..3 {
            say(&mut sim, a, &room, &format!("missed {n}"));
        }
        sim.settle();
        // b comes back on the other core, recovers, while a keeps talking.
        let b2 = sim.connect(0);
        sim.take(b2);
        sim.send(b2, json!({"type": "join_room", "room": room, "id": 7, "recover": {"epoch": epoch, "offset": 1}}));
        say(&mut sim, a, &room, "live");
        sim.settle();
        let got = sim.take(b2);
        assert_eq!(
            got[0],
            json!({"type": "room_joined", "room": room, "members": 2, "epoch": epoch, "offset": 4, "recovered": true, "id": 7}),
            "seed {seed}"
        );
        let rest: Vec<(u64, &str)> = got[1..]
            .iter()
            .map(|m| {
                (
                    m["offset"].as_u64().unwrap(),
                    m["message"].as_str().unwrap(),
                )
            })
            .collect();
        // "live" may have been numbered before or after the join: either way it comes
        // once, in order, after the recovered ones.
        assert!(
            rest == [
                (2, "missed 0"),
                (3, "missed 1"),
                (4, "missed 2"),
                (5, "live")
            ] || rest == [(2, "missed 0"), (3, "missed 1"), (4, "missed 2")],
            "seed {seed}: {rest:?}"
        );
    }
}

#[test]
fn a_stale_epoch_or_messages_no_longer_kept_are_not_recovered() {
    let mut sim = Sim::new(1, 3).with_cores(|c| c.with_history(limits(2)));
    let (a, b) = (sim.connect(0), sim.connect(0));
    sim.take(a);
    sim.take(b);
    let epoch = join(&mut sim, a, "r")["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    for n in 0..5 {
        say(&mut sim, a, "r", &format!("{n}"));
    }
    sim.settle();
    for (recover, recovered) in [
        (json!({"epoch": epoch, "offset": 2}), false),
        (json!({"epoch": "another", "offset": 4}), false),
        (json!({"epoch": epoch, "offset": 9}), false),
        (json!({"epoch": epoch, "offset": 3}), true),
    ] {
        sim.send(
            b,
            json!({"type": "join_room", "room": "r", "recover": recover}),
        );
        sim.settle();
        let got = without_epoch(sim.take(b));
        assert_eq!(got[0]["recovered"], recovered, "{recover}");
        assert_eq!(got[0]["offset"], 5);
        let replayed = got.len() - 1;
        assert_eq!(replayed, if recovered { 2 } else { 0 }, "{recover}");
        sim.send(b, json!({"type": "leave_room", "room": "r"}));
        sim.settle();
        sim.take(a);
    }
}

#[test]
fn one_senders_messages_to_two_rooms_and_a_private_message_arrive_in_order() {
    for seed in 1..40 {
        let mut sim = Sim::new(3, seed);
        let (sender, reader) = (sim.connect(0), sim.connect(2));
        sim.take(sender);
        let reader_id = sim.take(reader)[0]["client_id"]
            .as_str()
            .unwrap()
            .to_string();
        let (r1, r2) = (room_on(1, 3, "a"), room_on(2, 3, "b"));
        for room in [&r1, &r2] {
            join(&mut sim, sender, room);
            join(&mut sim, reader, room);
            sim.take(sender);
        }
        for n in 0..5 {
            say(&mut sim, sender, &r1, &format!("{n}"));
            say(&mut sim, sender, &r2, &format!("{n}"));
            sim.send(
                sender,
                json!({"type": "private_message", "to": reader_id, "message": format!("{n}")}),
            );
            sim.step();
        }
        sim.settle();
        let order: Vec<String> = sim
            .take(reader)
            .iter()
            .map(|m| {
                format!(
                    "{}:{}",
                    m.get("room").and_then(Value::as_str).unwrap_or("private"),
                    m["message"].as_str().unwrap()
                )
            })
            .collect();
        let expected: Vec<String> = (0..5)
            .flat_map(|n| {
                [
                    format!("{r1}:{n}"),
                    format!("{r2}:{n}"),
                    format!("private:{n}"),
                ]
            })
            .collect();
        assert_eq!(order, expected, "seed {seed}");
    }
}
