//! The home role: the core a room's name hashes to keeps its authoritative count and
//! how many members each core has, answers joins and leaves, and sends
//! `member_joined` / `member_left` and new core sets, in one order for everyone.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::{client_id, CoreSet, Effect, Envelope, RoomsCore};
use crate::proto::Encoder;
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
    /// Where a big room's `member_joined` / `member_left` notices are encoded, one
    /// after another (they all go to the room's members), so that a join storm's
    /// notices reach each member as runs of one iovec. Made when the room reaches
    /// [`BIG_ROOM`] members: a small room would keep a chunk for a few notices.
    notices: Option<Box<FrameBuffer>>,
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
        member: ConnId,
        token: u32,
        id: Option<Box<RawValue>>,
        out: &mut Vec<Effect>,
    ) {
        let cores = self.cores;
        let home = self.homed.entry(room.clone()).or_insert_with(|| HomeRoom {
            members: 0,
            per_core: vec![0; cores].into_boxed_slice(),
            notices: None,
        });
        home.members += 1;
        if home.members >= BIG_ROOM && home.notices.is_none() {
            home.notices = Some(Box::default());
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
            .and_then(|home| home.notices.as_mut());
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
