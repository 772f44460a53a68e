//! The home role of a cluster node, played by the link's reader: Redis orders every
//! room's joins, leaves and messages (`scripts.rs`); this turns that ordered stream
//! into what the node's cores need, exactly as a room's home core does on a
//! stand-alone server (`rooms::state::home`): `Joined` (with the room's position and
//! what the join recovered) to a joiner's core, the room's new core set to every core
//! when a core's count goes 0↔1, then the notice to the cores with members; each room
//! message, numbered by Redis, encoded once for the node and sent to the cores with
//! members, and reported to its sender's core (`Sequenced`). Pure: it returns the
//! envelopes to post and does no I/O.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::proto::{frame_with_offset, Encoder};
use crate::rooms::{parse_cluster_client_id, CoreSet, Envelope, JoinHistory};
use crate::ws::{encode_unmasked, FrameBuffer, Opcode};
use crate::{ConnId, CoreId};

/// How many members of a room each core of this node has.
#[derive(Debug)]
struct NodeRoom {
    per_core: Box<[u32]>,
    /// Where the room's messages are encoded end to end (made at its first message).
    frames: Option<Box<FrameBuffer>>,
}

impl NodeRoom {
    fn cores(&self) -> CoreSet {
        let mut set = CoreSet::default();
        for (core, count) in self.per_core.iter().enumerate() {
            if *count > 0 {
                set = set.with_core(CoreId(core as u16));
            }
        }
        set
    }
}

/// The envelopes to post, in order.
pub type Posts = Vec<(CoreId, Envelope)>;

#[derive(Debug)]
pub struct NodeRooms {
    node: Arc<str>,
    cores: usize,
    rooms: HashMap<Arc<str>, NodeRoom>,
    /// This node's memberships whose join event has been seen (and not its leave):
    /// after a reconnect, tells whether a repeated join or leave was already applied.
    memberships: HashSet<(ConnId, Arc<str>)>,
}

/// A join event, as the home role acts on it.
pub struct Join<'a> {
    pub total: usize,
    pub member: &'a str,
    pub token: u32,
    pub id: Option<Box<RawValue>>,
    pub history: JoinHistory,
}

impl NodeRooms {
    pub fn new(node: Arc<str>, cores: usize) -> Self {
        NodeRooms {
            node,
            cores,
            rooms: HashMap::new(),
            memberships: HashSet::new(),
        }
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The connection a client id names, if it is a client of this node.
    pub fn local(&self, member: &str) -> Option<ConnId> {
        parse_cluster_client_id(member)
            .filter(|(node, conn)| *node == &*self.node && conn.core.index() < self.cores)
            .map(|(_, conn)| conn)
    }

    fn intern(&self, room: &str) -> Arc<str> {
        self.rooms
            .get_key_value(room)
            .map_or_else(|| Arc::from(room), |(name, _)| name.clone())
    }

    /// A member joined `room` (anywhere in the cluster), `total` members now.
    pub fn joined(&mut self, room: &str, join: Join<'_>, out: &mut Posts) {
        let room = self.intern(room);
        let member = self.local(join.member);
        let notice = Encoder::new("member_joined")
            .string("room", &room)
            .string("client_id", join.member)
            .number("total_members", join.total as u64)
            .frame();
        if let Some(conn) = member {
            self.memberships.insert((conn, room.clone()));
            self.count_local_join(&room, conn, join, out);
        }
        self.to_members(&room, member, notice, out);
    }

    /// A member left `room` (anywhere in the cluster), `total` members now.
    pub fn left(&mut self, room: &str, total: usize, member: &str, out: &mut Posts) {
        let room = self.intern(room);
        if let Some(conn) = self.local(member) {
            self.memberships.remove(&(conn, room.clone()));
            self.count_local_leave(&room, conn, out);
        }
        if total > 0 {
            let notice = Encoder::new("member_left")
                .string("room", &room)
                .string("client_id", member)
                .number("total_members", total as u64)
                .frame();
            self.to_members(&room, None, notice, out);
        }
    }

    /// A repeated join (after a reconnect) that Redis had applied: if its event was
    /// lost with the connection, do this node's part now (others had the notice).
    pub fn join_was_applied(
        &mut self,
        room: &Arc<str>,
        conn: ConnId,
        join: Join<'_>,
        out: &mut Posts,
    ) {
        if self.memberships.insert((conn, room.clone())) {
            self.count_local_join(room, conn, join, out);
        }
    }

    /// A repeated leave that Redis had applied: this node's part, if not done.
    pub fn leave_was_applied(&mut self, room: &Arc<str>, conn: ConnId, out: &mut Posts) {
        if self.memberships.remove(&(conn, room.clone())) {
            self.count_local_leave(room, conn, out);
        }
    }

    fn count_local_join(&mut self, room: &Arc<str>, conn: ConnId, join: Join<'_>, out: &mut Posts) {
        let cores = self.cores;
        let entry = self.rooms.entry(room.clone()).or_insert_with(|| NodeRoom {
            per_core: vec![0; cores].into_boxed_slice(),
            frames: None,
        });
        entry.per_core[conn.core.index()] += 1;
        let grew = entry.per_core[conn.core.index()] == 1;
        let set = entry.cores();
        let joined = Envelope::Joined {
            room: room.clone(),
            member: conn,
            members: join.total,
            cores: set,
            token: join.token,
            id: join.id,
            history: Box::new(join.history),
        };
        out.push((conn.core, joined));
        if grew {
            self.to_every_core(room, set, out);
        }
    }

    fn count_local_leave(&mut self, room: &Arc<str>, conn: ConnId, out: &mut Posts) {
        let Some(entry) = self.rooms.get_mut(room) else {
            return;
        };
        let count = &mut entry.per_core[conn.core.index()];
        if *count == 0 {
            return;
        }
        *count -= 1;
        if *count == 0 {
            let set = entry.cores();
            if set.is_empty() {
                self.rooms.remove(room);
            }
            self.to_every_core(room, set, out);
        }
    }

    /// A room message numbered `offset` by Redis, sent by `sender` (a client id):
    /// encoded once for this node and sent to the cores with members (not back to the
    /// sender). (The reader tells the sender's core once the script's reply follows.)
    pub fn room_message(
        &mut self,
        room: &str,
        offset: u64,
        sender: &str,
        open: &[u8],
        out: &mut Posts,
    ) {
        let sender = self.local(sender);
        let name = self.rooms.get_key_value(room).map(|(name, _)| name.clone());
        if let (Some(name), Some(entry)) = (name, self.rooms.get_mut(room)) {
            let buffer = entry.frames.get_or_insert_with(Box::default);
            let frame = frame_with_offset(open, offset, Some(buffer));
            self.to_members(&name, sender, frame, out);
        }
    }

    /// A room message while Redis is unreachable: for this node's members only, with
    /// no offset (it is in no history).
    pub fn room_message_unsequenced(
        &mut self,
        room: &str,
        sender: ConnId,
        open: &[u8],
        out: &mut Posts,
    ) {
        if let Some((name, _)) = self.rooms.get_key_value(room) {
            let mut json = Vec::with_capacity(open.len() + 1);
            json.extend_from_slice(open);
            json.push(b'}');
            let frame = encode_unmasked(Opcode::Text, &json);
            let name = name.clone();
            self.to_members(&name, Some(sender), frame, out);
        }
    }

    /// A broadcast from another node, for every client of this node.
    pub fn broadcast(&self, frame: Bytes, out: &mut Posts) {
        for core in 0..self.cores as u16 {
            let frame = frame.clone();
            out.push((CoreId(core), Envelope::ToAll { frame }));
        }
    }

    /// Whether `to` may be a client of this node (its core exists).
    pub fn has_core(&self, to: ConnId) -> bool {
        to.core.index() < self.cores
    }

    /// Rooms this node has members of.
    #[cfg(test)]
    fn room_count(&self) -> usize {
        self.rooms.len()
    }

    fn to_members(&self, room: &Arc<str>, except: Option<ConnId>, frame: Bytes, out: &mut Posts) {
        let Some(entry) = self.rooms.get(room) else {
            return;
        };
        for core in entry.cores().iter() {
            let envelope = Envelope::ToMembers {
                room: room.clone(),
                except,
                frame: frame.clone(),
            };
            out.push((core, envelope));
        }
    }

    fn to_every_core(&self, room: &Arc<str>, cores: CoreSet, out: &mut Posts) {
        for core in 0..self.cores as u16 {
            let envelope = Envelope::Cores {
                room: room.clone(),
                cores,
            };
            out.push((CoreId(core), envelope));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(core: u16, slot: u32) -> ConnId {
        ConnId {
            core: CoreId(core),
            slot,
            generation: 1,
        }
    }

    fn join(member: &str, total: usize) -> Join<'_> {
        Join {
            total,
            member,
            token: 1,
            id: None,
            history: JoinHistory::default(),
        }
    }

    fn kinds(posts: &Posts) -> Vec<String> {
        posts
            .iter()
            .map(|(core, envelope)| {
                let kind = format!("{envelope:?}");
                let kind = kind.split([' ', '{']).next().unwrap_or("").to_string();
                format!("{}:{kind}", core.0)
            })
            .collect()
    }

    #[test]
    fn a_local_join_goes_joined_then_core_set_then_notices_like_a_home_core() {
        let mut rooms = NodeRooms::new("n1".into(), 2);
        let mut out = Posts::new();
        rooms.joined("r", join("client_n1_1_7_1", 1), &mut out);
        assert_eq!(
            kinds(&out),
            ["1:Joined", "0:Cores", "1:Cores", "1:ToMembers"]
        );
        let Envelope::Joined {
            member,
            members,
            cores,
            ..
        } = &out[0].1
        else {
            unreachable!()
        };
        assert_eq!((*member, *members), (conn(1, 7), 1));
        assert!(cores.contains(CoreId(1)) && !cores.contains(CoreId(0)));
        let Envelope::ToMembers { except, .. } = &out[3].1 else {
            unreachable!()
        };
        assert_eq!(
            *except,
            Some(conn(1, 7)),
            "the joiner gets room_joined, not the notice"
        );
    }

    #[test]
    fn other_nodes_joins_are_notices_only_and_leaves_shrink_the_core_set() {
        let mut rooms = NodeRooms::new("n1".into(), 2);
        let mut out = Posts::new();
        rooms.joined("r", join("client_n1_0_3_1", 1), &mut out);
        out.clear();
        rooms.joined("r", join("client_n2_0_3_1", 2), &mut out);
        assert_eq!(kinds(&out), ["0:ToMembers"]);
        out.clear();
        rooms.left("r", 1, "client_n1_0_3_1", &mut out);
        assert_eq!(
            kinds(&out),
            ["0:Cores", "1:Cores"],
            "no members here: no notice"
        );
        assert_eq!(rooms.room_count(), 0);
        out.clear();
        rooms.room_message(
            "r",
            1,
            "client_n2_0_3_1",
            b"{\"type\":\"room_message\"",
            &mut out,
        );
        assert!(out.is_empty(), "no members here any more");
    }

    #[test]
    fn a_room_message_is_numbered_and_sent_to_the_members_but_its_sender() {
        let mut rooms = NodeRooms::new("n1".into(), 2);
        let mut out = Posts::new();
        rooms.joined("r", join("client_n1_0_3_1", 1), &mut out);
        rooms.joined("r", join("client_n1_1_4_1", 2), &mut out);
        out.clear();
        rooms.room_message(
            "r",
            7,
            "client_n1_0_3_1",
            b"{\"type\":\"room_message\"",
            &mut out,
        );
        assert_eq!(kinds(&out), ["0:ToMembers", "1:ToMembers"]);
        let Envelope::ToMembers { except, frame, .. } = &out[0].1 else {
            unreachable!()
        };
        assert_eq!(*except, Some(conn(0, 3)));
        assert!(frame.ends_with(b"{\"type\":\"room_message\",\"offset\":7}"));
    }

    #[test]
    fn a_repeated_join_or_leave_is_applied_once() {
        let mut rooms = NodeRooms::new("n1".into(), 1);
        let room: Arc<str> = "r".into();
        let mut out = Posts::new();
        rooms.joined("r", join("client_n1_0_3_1", 1), &mut out);
        out.clear();
        rooms.join_was_applied(&room, conn(0, 3), join("client_n1_0_3_1", 1), &mut out);
        assert!(out.is_empty(), "its event was seen");
        rooms.leave_was_applied(&room, conn(0, 3), &mut out);
        assert_eq!(kinds(&out), ["0:Cores"]);
        out.clear();
        rooms.left("r", 0, "client_n1_0_3_1", &mut out);
        assert!(out.is_empty(), "already counted");
    }
}
