//! Clients with a verified JWT (`auth::Identity`, issue 14): `user` in their metadata
//! and fixed, joins limited to the token's `rooms`, over the simulated cores of
//! `tests.rs`.

use serde_json::{json, Value};

use super::{Identity, Sim, NOW};

fn identity(user: &str, rooms: Option<&[&str]>) -> Option<Box<Identity>> {
    Some(Box::new(Identity {
        user: user.into(),
        rooms: rooms.map(|rooms| rooms.iter().map(|r| r.to_string()).collect()),
    }))
}

fn error(text: &str, id: i32) -> Value {
    json!({"type": "error", "message": text, "timestamp": NOW, "id": id})
}

#[test]
fn the_tokens_sub_is_the_users_metadata_and_cannot_change() {
    let mut sim = Sim::new(1, 1);
    let ann = sim.connect_as(0, identity("ann", None));
    sim.take(ann);
    let set =
        |metadata: Value, id: i32| json!({"type": "set_metadata", "metadata": metadata, "id": id});
    sim.send(ann, set(json!({"name": "Ann"}), 1));
    sim.send(ann, set(json!({"user": "eve", "name": "Eve"}), 2));
    sim.send(ann, set(json!({"user": null}), 3));
    sim.send(ann, set(json!({"user": "ann", "age": 3}), 4));
    let got = sim.take(ann);
    let updated = |metadata: Value, id: i32| json!({"type": "metadata_updated", "metadata": metadata, "id": id});
    assert_eq!(got[0], updated(json!({"user": "ann", "name": "Ann"}), 1));
    assert_eq!(got[1], error("Cannot change user", 2));
    assert_eq!(got[2], error("Cannot change user", 3));
    assert_eq!(
        got[3],
        updated(json!({"user": "ann", "name": "Ann", "age": 3}), 4)
    );
    // Without JWT, `user` is ordinary metadata.
    let bo = sim.connect(0);
    sim.take(bo);
    sim.send(bo, set(json!({"user": "anyone"}), 5));
    assert_eq!(sim.take(bo)[0], updated(json!({"user": "anyone"}), 5));
}

#[test]
fn the_rooms_claim_limits_joins_on_every_core() {
    let mut sim = Sim::new(2, 5);
    let ann = sim.connect_as(1, identity("ann", Some(&["lobby", "ops"])));
    let none = sim.connect_as(0, identity("bo", Some(&[])));
    sim.take(ann);
    sim.take(none);
    for (n, room) in ["lobby", "ops"].into_iter().enumerate() {
        sim.send(ann, json!({"type": "join_room", "room": room}));
        sim.settle();
        let got = sim.take(ann);
        assert_eq!(got[0]["type"], "room_joined", "{room}: {got:?}");
        assert_eq!(got.len(), 1, "{n}");
    }
    sim.send(ann, json!({"type": "join_room", "room": "secret", "id": 7}));
    sim.send(none, json!({"type": "join_room", "room": "lobby", "id": 8}));
    sim.settle();
    assert_eq!(sim.take(ann), [error("Not allowed to join this room", 7)]);
    assert_eq!(sim.take(none), [error("Not allowed to join this room", 8)]);
    // An empty name is still "Room name required", whatever the claim.
    sim.send(none, json!({"type": "join_room", "room": "", "id": 9}));
    assert_eq!(sim.take(none), [error("Room name required", 9)]);
}
