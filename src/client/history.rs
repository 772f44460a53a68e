//! How far this client has read each joined room's history (**ext**, issue 13): the
//! room's `epoch` and the last `offset` accounted for, what a rejoin asks to recover,
//! and what each `room_joined` and `room_message` says about it (recovered, lost, a
//! gap, a duplicate). Pure: messages in, verdicts out; `reconnect.rs` holds it and
//! turns the verdicts into events.

use std::collections::HashMap;

use crate::proto::{RoomPosition, ServerMessage};

/// What the tracker has to say about a room, beside delivering (or not) the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Note {
    /// A join with `recover` got everything since: `missed` messages were replayed
    /// (they were delivered before this note).
    Recovered { room: String, missed: u64 },
    /// A join with `recover` could not recover: the epoch changed, the messages are no
    /// longer kept, or the server keeps no history.
    HistoryLost { room: String },
    /// `missing` messages before the one at `offset` never arrived.
    Gap {
        room: String,
        missing: u64,
        offset: u64,
    },
    /// A message at or before the position (already delivered): dropped.
    Duplicate { room: String, offset: u64 },
}

/// The verdict on one received message: a note to report before it, whether to
/// deliver it, a note to report after it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Seen {
    pub before: Option<Note>,
    pub deliver: bool,
    pub after: Option<Note>,
}

impl Seen {
    fn deliver() -> Seen {
        Seen {
            before: None,
            deliver: true,
            after: None,
        }
    }

    fn deliver_then(after: Option<Note>) -> Seen {
        Seen {
            after,
            ..Seen::deliver()
        }
    }
}

/// Every room this client is in (or has asked to join), by name.
#[derive(Debug, Default)]
pub(super) struct Positions {
    rooms: HashMap<String, Track>,
}

#[derive(Debug, Default)]
struct Track {
    /// From the last `room_joined`; `None` from a server without history.
    epoch: Option<String>,
    /// The last offset accounted for: delivered, reported missing, or our own.
    last: Option<u64>,
    /// What the join on its way asked to recover from, until its `room_joined`.
    asked: Option<RoomPosition>,
    /// A recovery whose replayed messages are still arriving.
    replay: Option<Replay>,
    /// Our own room messages sent on this connection and not yet accounted for: the
    /// server gives each an offset but never sends it back to us (PROTOCOL.md: "except
    /// the sender"), so a jump over them is not a gap. A message the server refused
    /// (rate limit) stays counted and can hide a real gap of the same size.
    own_unseen: u64,
}

#[derive(Clone, Copy, Debug)]
struct Replay {
    /// The `room_joined`'s offset: the last replayed message.
    until: u64,
    missed: u64,
}

impl Track {
    fn position(&self) -> Option<RoomPosition> {
        Some(RoomPosition {
            epoch: self.epoch.clone()?,
            offset: self.last?,
        })
    }
}

impl Positions {
    /// A `join_room` goes out, from the application (`recover` as it asked).
    pub fn handle_join(&mut self, room: &str, recover: Option<&RoomPosition>) {
        let track = self.rooms.entry(room.to_string()).or_default();
        if let Some(from) = recover {
            track.asked = Some(from.clone());
        }
    }

    /// A `leave_room` goes out: the room's position is forgotten, so a later join
    /// starts afresh rather than replaying what came while we were out.
    pub fn handle_leave(&mut self, room: &str) {
        self.rooms.remove(room);
    }

    /// One of our `room_message`s goes out to `room`.
    pub fn handle_own_message(&mut self, room: &str) {
        if let Some(track) = self.rooms.get_mut(room) {
            track.own_unseen = track.own_unseen.saturating_add(1);
        }
    }

    /// A rejoin goes out on a new connection: what it asks to recover from (the
    /// remembered position, else one the application asked for; `None` when the
    /// server gave no epoch and offset, e.g. before the room was ever joined).
    pub fn rejoin(&mut self, room: &str) -> Option<RoomPosition> {
        let track = self.rooms.entry(room.to_string()).or_default();
        track.replay = None;
        track.own_unseen = 0;
        let from = track.position().or_else(|| track.asked.take());
        track.asked.clone_from(&from);
        from
    }

    /// A message arrived; `room_joined` and `room_message` move the position.
    pub fn handle(&mut self, message: &ServerMessage) -> Seen {
        match message {
            ServerMessage::RoomJoined {
                room,
                epoch,
                offset,
                recovered,
                ..
            } => {
                Seen::deliver_then(self.handle_joined(room, epoch.as_deref(), *offset, *recovered))
            }
            ServerMessage::RoomMessage { room, offset, .. } => self.handle_message(room, *offset),
            _ => Seen::deliver(),
        }
    }

    fn handle_joined(
        &mut self,
        room: &str,
        epoch: Option<&str>,
        offset: Option<u64>,
        recovered: Option<bool>,
    ) -> Option<Note> {
        // Not tracked: we left before the reply came.
        let track = self.rooms.get_mut(room)?;
        track.replay = None;
        let asked = track.asked.take();
        if let (Some(asked), Some(latest)) = (&asked, offset) {
            // Defensive: a `recovered: true` that contradicts what we asked for (another
            // epoch, an offset behind ours) counts as lost.
            let resumed = recovered == Some(true)
                && epoch == Some(asked.epoch.as_str())
                && latest >= asked.offset;
            if resumed {
                track.epoch = Some(asked.epoch.clone());
                track.last = Some(asked.offset);
                let missed = latest - asked.offset;
                if missed == 0 {
                    return Some(Note::Recovered {
                        room: room.to_string(),
                        missed,
                    });
                }
                track.replay = Some(Replay {
                    until: latest,
                    missed,
                });
                return None;
            }
        }
        // A first join, or history lost: live delivery starts after the join's offset.
        // A server that ignored `recover` (no `recovered`) lost it too.
        track.epoch = epoch.map(str::to_string);
        track.last = offset;
        asked.map(|_| Note::HistoryLost {
            room: room.to_string(),
        })
    }

    fn handle_message(&mut self, room: &str, offset: Option<u64>) -> Seen {
        let Some(track) = self.rooms.get_mut(room) else {
            return Seen::deliver();
        };
        let Some(offset) = offset else {
            return Seen::deliver();
        };
        let Some(last) = track.last else {
            track.last = Some(offset);
            return Seen::deliver();
        };
        if offset <= last {
            return Seen {
                before: None,
                deliver: false,
                after: Some(Note::Duplicate {
                    room: room.to_string(),
                    offset,
                }),
            };
        }
        let skipped = offset - last - 1;
        let own = skipped.min(track.own_unseen);
        track.own_unseen -= own;
        // Past a gap the position moves on: the server never replays on a live
        // connection, and recovering from before the gap would repeat what came after.
        track.last = Some(offset);
        let before = (skipped > own).then(|| Note::Gap {
            room: room.to_string(),
            missing: skipped - own,
            offset,
        });
        let after = match track.replay {
            Some(replay) if offset >= replay.until => {
                track.replay = None;
                Some(Note::Recovered {
                    room: room.to_string(),
                    missed: replay.missed,
                })
            }
            _ => None,
        };
        Seen {
            before,
            deliver: true,
            after,
        }
    }
}

#[cfg(test)]
mod tests;
