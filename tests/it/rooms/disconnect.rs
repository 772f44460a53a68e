//! However a client goes (closing handshake, FIN, reset, idle timeout), it leaves its
//! rooms in join order with `member_left` to the others on every core or node, and its
//! id stops resolving.

use ringcast::ws::Incoming;
use serde_json::{json, Value};

use super::{
    assert_quiet_among, error, join_in_turn, member_left, pump, room_message_from, send_private,
    send_to_room, Rooms, Setup,
};
use crate::WAIT;

on_cores_and_nodes!(
    clean_close_leaves_every_room_in_join_order,
    close_without_a_close_frame_leaves_every_room_in_join_order,
    reset_leaves_every_room_in_join_order,
    idle_timeout_leaves_every_room_in_join_order,
);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Departure {
    /// The closing handshake.
    CloseFrame,
    /// TCP FIN without a close frame.
    Fin,
    /// TCP RST (SO_LINGER 0).
    Reset,
    /// Silent: no pong, no data, until the server's idle timeout.
    IdleTimeout,
}

fn clean_close_leaves_every_room_in_join_order(setup: Setup) {
    leaves_every_room_in_join_order(setup, Departure::CloseFrame);
}

fn close_without_a_close_frame_leaves_every_room_in_join_order(setup: Setup) {
    leaves_every_room_in_join_order(setup, Departure::Fin);
}

fn reset_leaves_every_room_in_join_order(setup: Setup) {
    leaves_every_room_in_join_order(setup, Departure::Reset);
}

fn idle_timeout_leaves_every_room_in_join_order(setup: Setup) {
    leaves_every_room_in_join_order(setup, Departure::IdleTimeout);
}

/// For a departing client on each place in turn: three rooms homed on alternating
/// cores (so its leaves go to different homes), two watchers (on places 0 and 1) in
/// all of them.
fn leaves_every_room_in_join_order(setup: Setup, how: Departure) {
    let places = setup.places();
    for departing_place in 0..places {
        // A fresh server each time: under a short idle timeout, old connections die.
        let mut rooms = Rooms::start_with(setup, |c| {
            if how == Departure::IdleTimeout {
                c.ping_interval_ms = 200;
                c.idle_timeout_ms = 2000;
                c.close_timeout_ms = 200;
            }
        });
        let names: Vec<String> = (0..3)
            .map(|r| rooms.room_on((r + 1) % places, &format!("room{r}")))
            .collect();
        let mut watchers = rooms.clients_vec(2);
        let mut departing = rooms.client_on(departing_place);
        for room in &names {
            let [first, second] = &mut watchers[..] else {
                unreachable!()
            };
            join_in_turn(room, &mut [first, second, &mut departing]);
        }
        let id = departing.id.clone();
        // Kept (silent) until the server closes it, in the idle case.
        let mut silent = None;
        match how {
            Departure::CloseFrame => departing.close(),
            Departure::Fin => drop(departing.into_ws()),
            Departure::Reset => departing.into_ws().reset(),
            Departure::IdleTimeout => silent = Some(departing.into_ws()),
        }
        let expected: Vec<Value> = names.iter().map(|room| member_left(room, &id, 2)).collect();
        // Reading keeps the watchers alive while the departing client stays silent.
        let got = pump(&mut watchers, names.len());
        for (watcher, got) in watchers.iter().zip(got) {
            assert_eq!(
                Value::from(got),
                Value::from(expected.clone()),
                "{} sees {id} ({how:?}, from place {departing_place}) leave in join order",
                watcher.id
            );
        }
        if let Some(mut ws) = silent {
            assert_eq!(closed_by_server(&mut ws), 1001, "the idle timeout's code");
        }
        // The id stops resolving everywhere (the leaves came from its core after it
        // forgot the client); the rooms live on.
        for watcher in &mut watchers {
            watcher.request(
                &send_private(&id, json!("still there?")),
                &error("Recipient not found"),
            );
        }
        let message = json!("the rest of us");
        watchers[0].send(&send_to_room(&names[1], message.clone()));
        let from = watchers[0].id.clone();
        watchers[1].expect(&room_message_from(&names[1], &from, message));
        assert_quiet_among(&mut watchers);
    }
}

/// Reads past pings to the server's close frame: its code.
fn closed_by_server(ws: &mut crate::client::TestClient) -> u16 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match ws.recv_until(deadline) {
            Ok(Incoming::Ping(_)) => {}
            Ok(Incoming::Close(frame)) => return frame.map_or(1005, |(code, _)| code),
            other => panic!("expected pings then a close frame, got {other:?}"),
        }
    }
}
