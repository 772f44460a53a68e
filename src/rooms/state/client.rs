//! The per-client role: a core's own clients, their requests (each checked against
//! the client limits), their rooms and metadata, and their replies in request order.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::gate::{Gate, Via};
use super::{ClusterOp, Effect, Envelope, Recipient, RoomsCore};
use crate::auth::Identity;
use crate::proto::{error_frame, Encoder, Recover, Request, RequestError};
use crate::rooms::join_order::JoinOrder;
use crate::rooms::limit::Bucket;
use crate::rooms::replies::ReplyQueue;
use crate::ConnId;

#[derive(Debug, Default)]
pub(super) struct Client {
    /// Rooms joined (counted or on the way), in join order, with the token of the
    /// join: a `Joined` for an earlier join of the same room is recognised as stale.
    /// At most `ClientLimits::max_rooms`.
    pub(super) rooms: JoinOrder<Arc<str>, u32>,
    metadata: Map<String, Value>,
    pub(super) replies: ReplyQueue,
    /// What is left of the client's message allowance (see `limit`).
    pub(super) allowance: Bucket,
    /// Its room messages in flight to their home and its requests waiting behind
    /// them (`gate`); none for nearly every client.
    pub(super) gate: Option<Box<Gate>>,
    /// Who its JWT says it is (`user`, fixed, and the rooms it may join); `None`
    /// while the server does not verify JWTs.
    identity: Option<Box<Identity>>,
}

impl Client {
    /// A new client; with an identity, its metadata starts as `{"user": sub}`.
    pub(super) fn new(identity: Option<Box<Identity>>) -> Client {
        let mut metadata = Map::new();
        if let Some(identity) = &identity {
            metadata.insert("user".into(), Value::String(identity.user.clone()));
        }
        Client {
            metadata,
            identity,
            ..Client::default()
        }
    }
}

impl RoomsCore {
    /// Serves one well-formed request from `conn`, or says why it is refused (the
    /// caller answers the error, with the request's `id`).
    pub(super) fn handle_request(
        &mut self,
        conn: ConnId,
        request: Request<'_>,
        id: Option<&RawValue>,
        now: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), RequestError> {
        match request {
            Request::Broadcast { message } => {
                self.broadcast(conn, message, now, out);
                Ok(())
            }
            Request::JoinRoom { room, recover } => self.join(conn, &room, recover, id, out),
            Request::LeaveRoom { room } => {
                self.leave(conn, &room, out);
                Ok(())
            }
            Request::RoomMessage { room, message } => {
                self.room_message(conn, &room, message, id, now, out)
            }
            Request::PrivateMessage { to, message } => {
                self.private_message(conn, &to, message, id, now, out)
            }
            Request::SetMetadata { metadata } => self.set_metadata(conn, metadata, id, out),
        }
    }

    /// To every other client on every core: one envelope per other core (and, on a
    /// cluster node, one message to the other nodes).
    fn broadcast(&mut self, conn: ConnId, message: &RawValue, now: u64, out: &mut Vec<Effect>) {
        let frame = Encoder::new("broadcast")
            .string("from", &self.id_of(conn))
            .raw("message", message)
            .number("timestamp", now)
            .frame();
        for core in self.other_cores() {
            let envelope = Envelope::ToAll {
                frame: frame.clone(),
            };
            out.push(Effect::Post { core, envelope });
        }
        let op = ClusterOp::Broadcast {
            frame: frame.clone(),
        };
        self.to_link(op, out);
        self.deliver_to_all(Some(conn), frame, out);
    }

    /// Sends the join to the room's home, holding the client's place for its
    /// `room_joined`. A second join of a room does nothing.
    fn join(
        &mut self,
        conn: ConnId,
        room: &str,
        recover: Option<Recover>,
        id: Option<&RawValue>,
        out: &mut Vec<Effect>,
    ) -> Result<(), RequestError> {
        if room.is_empty() {
            return Err(RequestError::RoomNameRequired);
        }
        if room.len() > self.limits.max_room_name_bytes {
            return Err(RequestError::RoomNameTooLong);
        }
        let client = self.client(conn);
        if client.identity.as_ref().is_some_and(|i| !i.may_join(room)) {
            return Err(RequestError::NotAllowedToJoin);
        }
        let joined = &client.rooms;
        if joined.contains(room) {
            return Ok(());
        }
        if joined.len() >= self.limits.max_rooms {
            return Err(RequestError::TooManyRooms);
        }
        let room = self.intern(room);
        let token = self.hold_reply(conn);
        self.client(conn).rooms.insert(room.clone(), token);
        if self.is_clustered() {
            let id = id.map(RawValue::to_owned);
            let op = ClusterOp::Join {
                room,
                member: conn,
                token,
                id,
                recover: recover.map(Box::new),
            };
            self.to_link(op, out);
            return Ok(());
        }
        let join = Envelope::Join {
            room: room.clone(),
            member: conn,
            token,
            id: id.map(RawValue::to_owned),
            recover: recover.map(Box::new),
        };
        self.post(self.home(&room), join, out);
        Ok(())
    }

    /// Leaves at once here, and tells the home. Leaving a room not joined does nothing.
    fn leave(&mut self, conn: ConnId, room: &str, out: &mut Vec<Effect>) {
        if let Some((room, _)) = self.client(conn).rooms.remove(room) {
            self.leave_locally(conn, &room);
            if self.is_clustered() {
                self.to_link(ClusterOp::Leave { room, member: conn }, out);
                return;
            }
            let home = self.home(&room);
            let leave = Envelope::Leave {
                room,
                member: conn,
                then: VecDeque::new(),
            };
            self.post(home, leave, out);
        }
    }

    /// Encodes once (end to end with the sender's previous messages to the room) and
    /// posts one envelope to each core with members (and, on a cluster node, hands it
    /// to the link once for the other nodes).
    fn room_message(
        &mut self,
        conn: ConnId,
        room: &str,
        message: &RawValue,
        id: Option<&RawValue>,
        now: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), RequestError> {
        let joined = self.clients[&conn].rooms.get_key(room);
        let Some(room) = joined.cloned() else {
            return self.not_in_room(conn, room, id, out);
        };
        let from = self.id_of(conn);
        let encoder = Encoder::new("room_message")
            .string("room", &room)
            .string("from", &from)
            .raw("message", message)
            .number("timestamp", now);
        let open = encoder.open();
        if self.is_clustered() {
            // Redis numbers it; every node with members sends it on (`cluster`).
            let op = ClusterOp::RoomMessage {
                room,
                sender: conn,
                open,
            };
            self.to_link(op, out);
            self.client(conn).sent_via(Via::Link);
            return Ok(());
        }
        // The home numbers it, keeps it and sends it on (`home_publish`).
        let home = self.home(&room);
        let publish = Envelope::Publish {
            room,
            sender: conn,
            open,
        };
        self.post(home, publish, out);
        if home != self.core {
            self.client(conn).sent_via(Via::Core(home));
        }
        Ok(())
    }

    /// A room message from a client not in the room: "You are not in this room" if the
    /// room exists, else "Room does not exist", as the room's home knows it (this
    /// core's replica of the room's core set may lag a leave): answered here when this
    /// core is the home, else asked of the home core (or of Redis, on a cluster node),
    /// holding the client's place for the answer.
    fn not_in_room(
        &mut self,
        conn: ConnId,
        room: &str,
        id: Option<&RawValue>,
        out: &mut Vec<Effect>,
    ) -> Result<(), RequestError> {
        let clustered = self.is_clustered();
        let home = self.home(room);
        if !clustered && home == self.core {
            return Err(self.existence_error(room));
        }
        let token = self.hold_reply(conn);
        let (room, id) = (self.intern(room), id.map(RawValue::to_owned));
        if clustered {
            let op = ClusterOp::RoomExists {
                room,
                member: conn,
                token,
                id,
            };
            self.to_link(op, out);
        } else {
            let check = Envelope::CheckRoom {
                room,
                member: conn,
                token,
                id,
            };
            self.post(home, check, out);
        }
        Ok(())
    }

    /// On a room's home core: the error for a room message from a non-member.
    pub(super) fn existence_error(&self, room: &str) -> RequestError {
        if self.homed.contains_key(room) {
            RequestError::NotInRoom
        } else {
            RequestError::RoomDoesNotExist
        }
    }

    /// Straight to the recipient's client here; to another core, holding the sender's
    /// place for the outcome (that core always answers).
    fn private_message(
        &mut self,
        conn: ConnId,
        to: &str,
        message: &RawValue,
        id: Option<&RawValue>,
        now: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), RequestError> {
        let frame = Encoder::new("private_message")
            .string("from", &self.id_of(conn))
            .raw("message", message)
            .number("timestamp", now)
            .frame();
        let to = match self.recipient(to) {
            Some(Recipient::Here(to)) if to.core.index() < self.cores => to,
            Some(Recipient::Node(node, to)) => {
                let op = ClusterOp::Private {
                    node: node.into(),
                    to,
                    from: conn,
                    frame,
                    token: self.hold_reply(conn),
                    id: id.map(RawValue::to_owned),
                };
                self.to_link(op, out);
                return Ok(());
            }
            _ => return Err(RequestError::RecipientNotFound),
        };
        if to.core == self.core {
            if !self.clients.contains_key(&to) {
                return Err(RequestError::RecipientNotFound);
            }
            self.deliver(to, frame, out);
        } else {
            let token = self.hold_reply(conn);
            let envelope = Envelope::Private {
                to,
                from: conn,
                frame,
                token,
                id: id.map(RawValue::to_owned),
            };
            out.push(Effect::Post {
                core: to.core,
                envelope,
            });
        }
        Ok(())
    }

    /// Merges shallowly; a merge over `max_metadata_bytes`, or one that changes the
    /// `user` a JWT gave, changes nothing.
    fn set_metadata(
        &mut self,
        conn: ConnId,
        metadata: Map<String, Value>,
        id: Option<&RawValue>,
        out: &mut Vec<Effect>,
    ) -> Result<(), RequestError> {
        let max = self.limits.max_metadata_bytes;
        let client = self.client(conn);
        if let (Some(identity), Some(user)) = (&client.identity, metadata.get("user")) {
            if user.as_str() != Some(&identity.user) {
                return Err(RequestError::CannotChangeUser);
            }
        }
        let mut merged = client.metadata.clone();
        merged.extend(metadata);
        let text = serde_json::to_vec(&merged).expect("a JSON map always serializes");
        if text.len() > max {
            return Err(RequestError::MetadataTooLarge);
        }
        client.metadata = merged;
        let frame = Encoder::new("metadata_updated")
            .json("metadata", &text)
            .id(id)
            .frame();
        self.deliver(conn, frame, out);
        Ok(())
    }

    /// On the recipient's core: delivers a private message, or reports the recipient
    /// gone; either way the outcome goes back to the sender's core.
    #[allow(clippy::too_many_arguments, reason = "the envelope's fields, unpacked")]
    pub(super) fn on_private(
        &mut self,
        to: ConnId,
        from: ConnId,
        frame: Bytes,
        token: u32,
        id: Option<Box<RawValue>>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let error = if self.clients.contains_key(&to) {
            self.deliver(to, frame, out);
            None
        } else {
            let error = RequestError::RecipientNotFound;
            Some(error_frame(&error, now, id.as_deref()))
        };
        let envelope = Envelope::PrivateDone {
            to: from,
            token,
            error,
        };
        out.push(Effect::Post {
            core: from.core,
            envelope,
        });
    }

    /// On the recipient's core: a private message from another node. The outcome goes
    /// back through the link.
    pub(super) fn on_remote_private(
        &mut self,
        to: ConnId,
        frame: Bytes,
        reply: Bytes,
        out: &mut Vec<Effect>,
    ) {
        let delivered = self.clients.contains_key(&to);
        if delivered {
            self.deliver(to, frame, out);
        }
        self.to_link(ClusterOp::PrivateOutcome { reply, delivered }, out);
    }

    /// The node's state in Redis is gone: forget every room, close every client with
    /// 1012 (their closes then leave nothing), and name new clients after `node`.
    pub(super) fn restart(&mut self, node: Arc<str>, epoch: u32, out: &mut Vec<Effect>) {
        self.cluster = Some(super::ClusterNode { id: node, epoch });
        self.local_members.clear();
        self.room_cores.clear();
        for (conn, client) in self.clients.iter_mut() {
            client.rooms = JoinOrder::default();
            out.push(Effect::Close {
                to: *conn,
                code: crate::ws::close_code::SERVICE_RESTART,
                reason: "node restarted, reconnect",
            });
        }
    }

    /// Sends a frame to a client of this core, behind its held replies if it has any.
    pub(super) fn deliver(&mut self, to: ConnId, frame: Bytes, out: &mut Vec<Effect>) {
        if self.blocked > 0 {
            if let Some(client) = self.clients.get_mut(&to) {
                if client.replies.is_blocked() {
                    client.replies.push(frame);
                    return;
                }
            }
        }
        out.push(Effect::Send { to, frame });
    }

    /// Sends a frame to every client of this core but `except`.
    pub(super) fn deliver_to_all(
        &mut self,
        except: Option<ConnId>,
        frame: Bytes,
        out: &mut Vec<Effect>,
    ) {
        if self.blocked == 0 {
            out.push(Effect::SendToAll { except, frame });
            return;
        }
        let clients: Vec<ConnId> = self
            .clients
            .keys()
            .copied()
            .filter(|c| Some(*c) != except)
            .collect();
        for client in clients {
            self.deliver(client, frame.clone(), out);
        }
    }

    /// Holds a place in a client's replies for an answer from another core.
    fn hold_reply(&mut self, conn: ConnId) -> u32 {
        let client = self.clients.get_mut(&conn).expect("a known client");
        if !client.replies.is_blocked() {
            self.blocked += 1;
        }
        client.replies.hold()
    }

    /// Fills a held place and sends what it unblocks.
    pub(super) fn fill_reply(
        &mut self,
        conn: ConnId,
        token: u32,
        frame: Option<Bytes>,
        out: &mut Vec<Effect>,
    ) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let was_blocked = client.replies.is_blocked();
        client.replies.fill(token, frame, |frame| {
            out.push(Effect::Send { to: conn, frame })
        });
        if was_blocked && !client.replies.is_blocked() {
            self.blocked -= 1;
        }
    }

    pub(super) fn client(&mut self, conn: ConnId) -> &mut Client {
        self.clients
            .get_mut(&conn)
            .expect("checked by handle_message")
    }
}
