//! The replica role: every core keeps every room's core set (where its members are,
//! which decides "Room does not exist" and where a room message goes) and its own
//! local members of each room, in join order, shared with the driver as one list.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::{CoreSet, Effect, Joined, RoomsCore};
use crate::proto::Encoder;
use crate::rooms::join_order::JoinOrder;
use crate::ConnId;

/// A room's members on this core whose join was counted.
#[derive(Debug, Default)]
pub(super) struct LocalRoom {
    members: JoinOrder<ConnId, ()>,
    /// `members` as the list fan-out effects carry; made on the first fan-out after a
    /// change, so a stable room builds it once and shares it with every message.
    recipients: Option<Rc<[ConnId]>>,
}

impl LocalRoom {
    fn insert(&mut self, member: ConnId) {
        if self.members.insert(member, ()) {
            self.recipients = None;
        }
    }

    fn remove(&mut self, member: ConnId) {
        if self.members.remove(&member).is_some() {
            self.recipients = None;
        }
    }

    fn recipients(&mut self) -> Rc<[ConnId]> {
        let members = &self.members;
        self.recipients
            .get_or_insert_with(|| members.keys().copied().collect())
            .clone()
    }
}

impl RoomsCore {
    /// On the joiner's core: the home counted the join. Takes the home's core set (so
    /// this core knows the room exists before the joiner can tell anyone it joined),
    /// adds the joiner to the local members unless the join is stale, and fills the
    /// joiner's held reply with `room_joined`.
    pub(super) fn on_joined(
        &mut self,
        room: Arc<str>,
        joined: Joined,
        id: Option<Box<RawValue>>,
        out: &mut Vec<Effect>,
    ) {
        let Joined {
            member,
            members,
            cores,
            token,
            history,
        } = joined;
        self.room_cores.insert(room.clone(), cores);
        let Some(client) = self.clients.get(&member) else {
            return; // gone before its join was counted; its leave follows
        };
        let current = client.rooms.get(&room) == Some(&token);
        if current {
            self.local_members
                .entry(room.clone())
                .or_default()
                .insert(member);
        }
        let mut encoder = Encoder::new("room_joined")
            .string("room", &room)
            .number("members", members as u64)
            .string("epoch", &history.epoch)
            .number("offset", history.offset);
        if let Some(recovered) = history.recovered {
            encoder = encoder.json("recovered", if recovered { b"true" } else { b"false" });
        }
        let frame = encoder.id(id.as_deref()).frame();
        self.fill_reply(member, token, Some(frame), out);
        if current {
            // Right behind `room_joined`, before anything live (which the home sends
            // after this `Joined`).
            for frame in history.replay {
                self.deliver(member, frame, out);
            }
        }
    }

    /// From the home: the cores with members changed (empty: the room is gone).
    pub(super) fn on_cores(&mut self, room: Arc<str>, cores: CoreSet) {
        if cores.is_empty() {
            self.room_cores.remove(&room);
        } else {
            self.room_cores.insert(room, cores);
        }
    }

    /// A frame for this core's members of `room` but `except`: one effect, unless some
    /// client waits for a reply (then each member's frame may have to queue).
    pub(super) fn on_to_members(
        &mut self,
        room: &str,
        except: Option<ConnId>,
        frame: Bytes,
        out: &mut Vec<Effect>,
    ) {
        let Some(local) = self.local_members.get_mut(room) else {
            return;
        };
        let to = local.recipients();
        if self.blocked == 0 {
            out.push(Effect::SendToEach { to, except, frame });
        } else {
            for member in to.iter().copied().filter(|m| Some(*m) != except) {
                self.deliver(member, frame.clone(), out);
            }
        }
    }

    pub(super) fn leave_locally(&mut self, conn: ConnId, room: &Arc<str>) {
        if let Some(members) = self.local_members.get_mut(room) {
            members.remove(conn);
            if members.members.is_empty() {
                self.local_members.remove(room);
            }
        }
    }

    /// The shared name of a room this core already knows, or a new one.
    pub(super) fn intern(&self, room: &str) -> Arc<str> {
        self.room_cores
            .get_key_value(room)
            .map(|(name, _)| name.clone())
            .or_else(|| {
                self.local_members
                    .get_key_value(room)
                    .map(|(name, _)| name.clone())
            })
            .unwrap_or_else(|| Arc::from(room))
    }

    /// The local members of `room` whose join was counted, in join order (none if
    /// none): what [`Effect::SendToEach`] sends to.
    pub fn local_members(&self, room: &str) -> impl Iterator<Item = ConnId> + '_ {
        self.local_members
            .get(room)
            .into_iter()
            .flat_map(|local| local.members.keys().copied())
    }

    /// Local members of a room that have been counted (for tests and stats).
    pub fn local_member_count(&self, room: &str) -> usize {
        self.local_members
            .get(room)
            .map_or(0, |local| local.members.len())
    }
}
