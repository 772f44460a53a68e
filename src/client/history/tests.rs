use serde_json::json;

use super::*;

fn joined(epoch: &str, offset: u64, recovered: Option<bool>) -> ServerMessage {
    ServerMessage::RoomJoined {
        room: "r".into(),
        members: 2,
        epoch: Some(epoch.into()),
        offset: Some(offset),
        recovered,
        id: None,
    }
}

fn message(offset: u64) -> ServerMessage {
    message_in("r", Some(offset))
}

fn message_in(room: &str, offset: Option<u64>) -> ServerMessage {
    ServerMessage::RoomMessage {
        room: room.into(),
        from: "client_1".into(),
        message: json!("m"),
        timestamp: 1,
        offset,
    }
}

fn at(epoch: &str, offset: u64) -> RoomPosition {
    RoomPosition {
        epoch: epoch.into(),
        offset,
    }
}

const DELIVER: Seen = Seen {
    before: None,
    deliver: true,
    after: None,
};

fn delivered_then(note: Note) -> Seen {
    Seen {
        after: Some(note),
        ..DELIVER
    }
}

/// In room `r` at (`e1`, `offset`), joined on the first connection.
fn in_room_at(offset: u64) -> Positions {
    let mut positions = Positions::default();
    positions.handle_join("r", None);
    assert_eq!(positions.handle(&joined("e1", offset, None)), DELIVER);
    positions
}

#[test]
fn a_first_join_asks_nothing_and_contiguous_messages_move_the_position() {
    let mut positions = Positions::default();
    positions.handle_join("r", None);
    assert_eq!(positions.rejoin("r"), None, "no room_joined yet");
    assert_eq!(positions.handle(&joined("e1", 3, None)), DELIVER);
    for offset in 4..=6 {
        assert_eq!(positions.handle(&message(offset)), DELIVER);
    }
    assert_eq!(positions.rejoin("r"), Some(at("e1", 6)));
}

#[test]
fn a_jump_in_offsets_is_a_gap_reported_before_the_message_and_passed() {
    let mut positions = in_room_at(3);
    assert_eq!(
        positions.handle(&message(7)),
        Seen {
            before: Some(Note::Gap {
                room: "r".into(),
                missing: 3,
                offset: 7
            }),
            ..DELIVER
        }
    );
    assert_eq!(positions.handle(&message(8)), DELIVER);
    assert_eq!(positions.rejoin("r"), Some(at("e1", 8)));
}

#[test]
fn our_own_messages_are_not_gaps_but_a_jump_past_them_is() {
    let mut positions = in_room_at(3);
    // The server numbers our two messages (4 and 5) and never echoes them.
    positions.handle_own_message("r");
    positions.handle_own_message("r");
    assert_eq!(positions.handle(&message(6)), DELIVER);
    positions.handle_own_message("r");
    assert_eq!(
        positions.handle(&message(9)).before,
        Some(Note::Gap {
            room: "r".into(),
            missing: 1,
            offset: 9
        })
    );
}

#[test]
fn a_message_at_or_before_the_position_is_dropped_and_reported() {
    let mut positions = in_room_at(3);
    assert_eq!(positions.handle(&message(4)), DELIVER);
    for offset in [4, 2] {
        assert_eq!(
            positions.handle(&message(offset)),
            Seen {
                before: None,
                deliver: false,
                after: Some(Note::Duplicate {
                    room: "r".into(),
                    offset
                })
            }
        );
    }
    assert_eq!(positions.handle(&message(5)), DELIVER);
}

#[test]
fn a_recovered_rejoin_delivers_the_replay_then_reports_it() {
    let mut positions = in_room_at(3);
    assert_eq!(positions.handle(&message(4)), DELIVER);
    positions.handle_own_message("r");
    assert_eq!(positions.rejoin("r"), Some(at("e1", 4)));
    assert_eq!(positions.handle(&joined("e1", 7, Some(true))), DELIVER);
    assert_eq!(positions.handle(&message(5)), DELIVER);
    assert_eq!(positions.handle(&message(6)), DELIVER);
    assert_eq!(
        positions.handle(&message(7)),
        delivered_then(Note::Recovered {
            room: "r".into(),
            missed: 3
        })
    );
    // Live again; the own message counted before the reconnect does not hide a gap.
    assert_eq!(positions.handle(&message(8)), DELIVER);
    assert!(positions.handle(&message(10)).before.is_some());
}

#[test]
fn a_replayed_message_seen_twice_is_delivered_once() {
    let mut positions = in_room_at(3);
    positions.rejoin("r");
    positions.handle(&joined("e1", 5, Some(true)));
    assert_eq!(positions.handle(&message(4)), DELIVER);
    assert!(!positions.handle(&message(4)).deliver);
    assert_eq!(
        positions.handle(&message(5)).after,
        Some(Note::Recovered {
            room: "r".into(),
            missed: 2
        })
    );
}

#[test]
fn a_recovered_rejoin_with_nothing_missed_says_so_at_once() {
    let mut positions = in_room_at(3);
    positions.rejoin("r");
    assert_eq!(
        positions.handle(&joined("e1", 3, Some(true))),
        delivered_then(Note::Recovered {
            room: "r".into(),
            missed: 0
        })
    );
    assert_eq!(positions.handle(&message(4)), DELIVER);
}

#[test]
fn a_new_epoch_is_history_lost_and_the_position_starts_over_there() {
    let mut positions = in_room_at(9);
    assert_eq!(positions.rejoin("r"), Some(at("e1", 9)));
    // The server restarted: a new epoch, a younger room.
    assert_eq!(
        positions.handle(&joined("e2", 2, Some(false))),
        delivered_then(Note::HistoryLost { room: "r".into() })
    );
    assert_eq!(positions.handle(&message(3)), DELIVER);
    assert_eq!(positions.rejoin("r"), Some(at("e2", 3)));
    // A `recovered: true` for another epoch than the one asked for is not believed.
    assert_eq!(
        positions.handle(&joined("e3", 3, Some(true))),
        delivered_then(Note::HistoryLost { room: "r".into() })
    );
    assert_eq!(positions.rejoin("r"), Some(at("e3", 3)));
    assert_eq!(
        positions.handle(&joined("e3", 3, Some(true))),
        delivered_then(Note::Recovered {
            room: "r".into(),
            missed: 0
        })
    );
}

#[test]
fn not_recovered_or_not_answered_is_history_lost() {
    for recovered in [Some(false), None] {
        let mut positions = in_room_at(3);
        positions.rejoin("r");
        assert_eq!(
            positions.handle(&joined("e1", 8, recovered)),
            delivered_then(Note::HistoryLost { room: "r".into() }),
            "{recovered:?}"
        );
        // Live delivery starts after the join's offset.
        assert_eq!(positions.handle(&message(9)), DELIVER);
    }
    // An offset behind ours, in the same epoch, cannot be a recovery either.
    let mut positions = in_room_at(5);
    positions.rejoin("r");
    assert_eq!(
        positions.handle(&joined("e1", 4, Some(true))).after,
        Some(Note::HistoryLost { room: "r".into() })
    );
}

#[test]
fn a_position_the_application_asked_for_is_recovered_and_kept_for_rejoins() {
    let mut positions = Positions::default();
    positions.handle_join("r", Some(&at("e1", 2)));
    assert_eq!(positions.rejoin("r"), Some(at("e1", 2)));
    positions.handle(&joined("e1", 3, Some(true)));
    assert_eq!(
        positions.handle(&message(3)).after,
        Some(Note::Recovered {
            room: "r".into(),
            missed: 1
        })
    );
}

#[test]
fn a_left_room_is_forgotten_and_its_stray_messages_pass_untracked() {
    let mut positions = in_room_at(3);
    positions.handle_leave("r");
    assert_eq!(positions.handle(&message(9)), DELIVER);
    assert_eq!(positions.handle(&joined("e1", 9, None)), DELIVER);
    positions.handle_join("r", None);
    assert_eq!(positions.rejoin("r"), None);
}

#[test]
fn a_server_without_history_gets_plain_rejoins_and_no_notes() {
    let mut positions = Positions::default();
    positions.handle_join("r", None);
    let old = ServerMessage::RoomJoined {
        room: "r".into(),
        members: 1,
        epoch: None,
        offset: None,
        recovered: None,
        id: None,
    };
    assert_eq!(positions.handle(&old), DELIVER);
    assert_eq!(positions.handle(&message_in("r", None)), DELIVER);
    assert_eq!(positions.rejoin("r"), None);
    assert_eq!(positions.handle(&old), DELIVER);
}
