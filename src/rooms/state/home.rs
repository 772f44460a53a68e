//! The home role: the core a room's name hashes to keeps its authoritative count and
//! how many members each core has, answers joins and leaves, and sends
//! `member_joined` / `member_left` and new core sets, in one order for everyone. It
//! also sequences the room's messages: each gets the room's next offset here, is kept
//! in the room's history (`history.rs`) and sent on to the cores with members, so
//! every member sees one order and a join's recovery meets the live stream exactly.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::{client_id, CoreSet, Effect, Envelope, JoinHistory, RoomsCore};
use crate::proto::{frame_with_offset, Encoder, Recover};
use crate::rooms::history::Recovery;
use crate::ws::FrameBuffer;
use crate::{ConnId, CoreId};

/// A membership change to announce to a room.
struct Notice {
    kind: &'static str,
    member: ConnId,
    members: usize,
    set: CoreSet,
}

/// The authoritative count of a room, kept on its home core.
#[derive(Debug)]
pub(super) struct HomeRoom {
    pub(super) members: usize,
    per_core: Box<[u32]>,
    /// Where the room's messages, and a big room's `member_joined` / `member_left`
    /// notices, are encoded one after another (they all go to the room's members),
    /// so that members write runs of them as one iovec. Made at the room's first
    /// message, or when it reaches [`BIG_ROOM`] members.
    frames: Option<Box<FrameBuffer>>,
}

/// A join, as the home acts on it.
pub(super) struct Join {
    pub(super) member: ConnId,
    pub(super) token: u32,
    pub(super) id: Option<Box<RawValue>>,
    pub(super) recover: Option<Box<Recover>>,
}

/// Members from which a room's notices are encoded end to end (see `HomeRoom`).
pub(super) const BIG_ROOM: usize = 64;

impl HomeRoom {
    fn cores(&self) -> CoreSet {
        let mut set = CoreSet::default();
        for (core, count) in self.per_core.iter().enumerate() {
            if *count > 0 {
                set = set.with(CoreId(core as u16));
            }
        }
        set
    }
}

impl RoomsCore {
    /// On the home core: count a join, then tell (in this order) the joiner's core,
    /// every core if the core set grew, and the cores with members.
    pub(super) fn home_join(
        &mut self,
        room: Arc<str>,
        join: Join,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let Join {
            member,
            token,
            id,
            recover,
        } = join;
        let homed = &self.homed;
        self.histories.sweep(now, |room| homed.contains_key(room));
        let history = self.join_history(&room, recover.as_deref(), now);
        let cores = self.cores;
        let home = self.homed.entry(room.clone()).or_insert_with(|| HomeRoom {
            members: 0,
            per_core: vec![0; cores].into_boxed_slice(),
            frames: None,
        });
        home.members += 1;
        if home.members >= BIG_ROOM && home.frames.is_none() {
            home.frames = Some(Box::default());
        }
        home.per_core[member.core.index()] += 1;
        let (members, grew, set) = (
            home.members,
            home.per_core[member.core.index()] == 1,
            home.cores(),
        );
        let joined = Envelope::Joined {
            room: room.clone(),
            member,
            members,
            cores: set,
            token,
            id,
            history: Box::new(history),
        };
        self.post(member.core, joined, out);
        if grew {
            self.post_to_every_core(&room, set, out);
        }
        let notice = Notice {
            kind: "member_joined",
            member,
            members,
            set,
        };
        self.notify_members(&room, notice, Some(member), out);
    }

    /// On the home core: count a leave; an emptied room ceases to exist silently.
    /// Then passes a disconnect's remaining leaves on to the next room's home.
    pub(super) fn home_leave(
        &mut self,
        room: Arc<str>,
        member: ConnId,
        mut then: VecDeque<Arc<str>>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        if let Some(home) = self.homed.get_mut(&room) {
            home.members -= 1;
            home.per_core[member.core.index()] -= 1;
            let (members, shrank, set) = (
                home.members,
                home.per_core[member.core.index()] == 0,
                home.cores(),
            );
            if members == 0 {
                self.homed.remove(&room);
                self.histories.emptied(&room, now);
                let homed = &self.homed;
                self.histories.sweep(now, |room| homed.contains_key(room));
            }
            if shrank {
                self.post_to_every_core(&room, set, out);
            }
            if members > 0 {
                let notice = Notice {
                    kind: "member_left",
                    member,
                    members,
                    set,
                };
                self.notify_members(&room, notice, None, out);
            }
        }
        if let Some(next) = then.pop_front() {
            let home = self.home(&next);
            let leave = Envelope::Leave {
                room: next,
                member,
                then,
            };
            self.post(home, leave, out);
        }
    }

    /// Sends `member_joined` / `member_left` to the members on every core in the set.
    fn notify_members(
        &mut self,
        room: &Arc<str>,
        notice: Notice,
        except: Option<ConnId>,
        out: &mut Vec<Effect>,
    ) {
        let encoder = Encoder::new(notice.kind)
            .string("room", room)
            .string("client_id", &client_id(notice.member))
            .number("total_members", notice.members as u64);
        let buffer = self
            .homed
            .get_mut(room)
            .and_then(|home| home.frames.as_mut());
        let frame = match buffer {
            Some(buffer) => encoder.frame_in(buffer),
            None => encoder.frame(),
        };
        for core in notice.set.iter() {
            let envelope = Envelope::ToMembers {
                room: room.clone(),
                except,
                frame: frame.clone(),
            };
            self.post(core, envelope, out);
        }
    }

    /// The room's position for a join, and what it recovers (read before the joiner
    /// can be sent anything newer: the live stream starts right after).
    fn join_history(
        &mut self,
        room: &Arc<str>,
        recover: Option<&Recover>,
        now: u64,
    ) -> JoinHistory {
        let recovery = recover.map(|r| self.histories.recover(room, &r.epoch, r.offset, now));
        let position = self.histories.room(room, now);
        let (recovered, replay) = match recovery {
            None => (None, Vec::new()),
            Some(Recovery::Lost) => (Some(false), Vec::new()),
            Some(Recovery::Recovered(frames)) => (Some(true), frames),
        };
        JoinHistory {
            epoch: position.epoch.clone(),
            offset: position.offset,
            recovered,
            replay,
        }
    }

    /// On the home core: numbers a room message, keeps it, and sends it to the cores
    /// with members (all but the sender); then tells the sender's core it went on.
    pub(super) fn home_publish(
        &mut self,
        room: Arc<str>,
        sender: ConnId,
        open: Bytes,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let offset = self.histories.next_offset(&room, now);
        let home = self.homed.get_mut(&room);
        let set = home
            .as_ref()
            .map_or_else(CoreSet::default, |home| home.cores());
        let buffer = home.map(|home| &mut **home.frames.get_or_insert_with(Box::default));
        let frame = frame_with_offset(&open, offset, buffer);
        self.histories.keep(&room, frame.clone());
        for core in set.iter() {
            let envelope = Envelope::ToMembers {
                room: room.clone(),
                except: Some(sender),
                frame: frame.clone(),
            };
            self.post(core, envelope, out);
        }
        if sender.core != self.core {
            self.post(sender.core, Envelope::Sequenced { sender }, out);
        }
    }

    fn post_to_every_core(&mut self, room: &Arc<str>, cores: CoreSet, out: &mut Vec<Effect>) {
        for core in 0..self.cores as u16 {
            self.post(
                CoreId(core),
                Envelope::Cores {
                    room: room.clone(),
                    cores,
                },
                out,
            );
        }
    }
}
