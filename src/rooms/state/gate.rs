//! Per-sender order with room messages sequenced by their room's home. A room message
//! goes from the sender's core to the room's home core, which numbers it (its offset)
//! and sends it on; everything else a client sends to others (private messages,
//! broadcasts) goes straight from its core. So that one sender's messages still reach
//! each recipient in the order sent, a client's requests take one way at a time:
//! while some of its room messages are on their way through home core H, its further
//! room messages to rooms homed on H follow them (H's inbox is FIFO), and any other
//! request waits on the client's core until H reports them sent on (`Sequenced`).
//! Nearly always nothing waits: a client switching rooms mid-stream waits one inbox
//! round trip, and with the home on the sender's own core nothing is ever in flight.
//!
//! Waiting requests are kept as received (the payload, and whether the rate limit
//! admitted it) and served in order; a client keeping more than
//! [`MAX_HELD_BYTES`] waiting is closed with 1008.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{Effect, RoomsCore};
use crate::proto::Request;
use crate::{ConnId, CoreId};

// `Hop::Via(Via::Core)` names the home core.
const _: fn(CoreId) -> Via = Via::Core;

/// Bytes of requests one client may have waiting behind its room messages in flight.
pub const MAX_HELD_BYTES: usize = 1 << 20;

/// The way a request's messages leave the client's core, when it is not straight to
/// the recipients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Via {
    /// A room's home core (a room message on a stand-alone server).
    Core(CoreId),
    /// The cluster link: Redis numbers room messages, and orders them with private
    /// messages to other nodes.
    Link,
}

/// Where a request first goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hop {
    Via(Via),
    /// Straight to other clients (private messages here, broadcasts).
    Direct,
    /// Nowhere that could overtake (joins, leaves, metadata, errors).
    Any,
}

/// A client's room messages in flight, and its requests waiting behind them.
#[derive(Debug, Default)]
pub(super) struct Gate {
    via: Option<Via>,
    in_flight: u32,
    held: VecDeque<(Bytes, bool)>,
    held_bytes: usize,
}

impl super::client::Client {
    /// Whether requests wait (then every later one waits behind them).
    pub(super) fn is_holding(&self) -> bool {
        self.gate.as_ref().is_some_and(|gate| !gate.held.is_empty())
    }

    /// Whether a request taking `hop` may go now.
    pub(super) fn may_go(&self, hop: Hop) -> bool {
        match (&self.gate, hop) {
            (None, _) | (_, Hop::Any) => true,
            (Some(gate), _) if gate.in_flight == 0 => true,
            (Some(gate), Hop::Via(via)) => gate.via == Some(via),
            (Some(_), Hop::Direct) => false,
        }
    }

    /// A room message left for `via` (another core, or the cluster link).
    pub(super) fn sent_via(&mut self, via: Via) {
        let gate = self.gate.get_or_insert_with(Box::default);
        gate.via = Some(via);
        gate.in_flight += 1;
    }
}

impl RoomsCore {
    /// Where `request` from `conn` goes first.
    pub(super) fn first_hop(&self, conn: ConnId, request: &Request<'_>) -> Hop {
        let clustered = self.is_clustered();
        match request {
            Request::RoomMessage { room, .. } if self.clients[&conn].rooms.contains(&**room) => {
                if clustered {
                    Hop::Via(Via::Link)
                } else {
                    Hop::Via(Via::Core(self.home(room)))
                }
            }
            Request::PrivateMessage { to, .. } if clustered => match self.recipient(to) {
                Some(super::Recipient::Node(..)) => Hop::Via(Via::Link),
                _ => Hop::Direct,
            },
            Request::PrivateMessage { .. } | Request::Broadcast { .. } => Hop::Direct,
            _ => Hop::Any,
        }
    }

    /// Keeps a request until the client's room messages in flight are sent on.
    pub(super) fn hold(
        &mut self,
        conn: ConnId,
        payload: &[u8],
        admitted: bool,
        out: &mut Vec<Effect>,
    ) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let gate = client.gate.get_or_insert_with(Box::default);
        if gate.held_bytes + payload.len() > MAX_HELD_BYTES && !gate.held.is_empty() {
            out.push(Effect::Close {
                to: conn,
                code: crate::ws::close_code::POLICY_VIOLATION,
                reason: "too many requests waiting",
            });
            return;
        }
        gate.held_bytes += payload.len();
        gate.held
            .push_back((Bytes::copy_from_slice(payload), admitted));
    }

    /// From a room's home: one of `sender`'s room messages was sent on. When none is
    /// in flight any more, serves the requests that waited, in order, until one must
    /// wait again.
    pub(super) fn on_sequenced(&mut self, sender: ConnId, now: u64, out: &mut Vec<Effect>) {
        let Some(gate) = self.clients.get_mut(&sender).and_then(|c| c.gate.as_mut()) else {
            return;
        };
        gate.in_flight -= 1;
        if gate.in_flight > 0 {
            return;
        }
        gate.via = None;
        loop {
            let next = self
                .clients
                .get_mut(&sender)
                .and_then(|c| c.gate.as_mut())
                .and_then(|gate| gate.held.pop_front());
            let Some((payload, admitted)) = next else {
                break;
            };
            if !self.try_request(sender, &payload, admitted, now, out) {
                if let Some(gate) = self.clients.get_mut(&sender).and_then(|c| c.gate.as_mut()) {
                    gate.held.push_front((payload, admitted));
                }
                break;
            }
            if let Some(gate) = self.clients.get_mut(&sender).and_then(|c| c.gate.as_mut()) {
                gate.held_bytes -= payload.len();
            }
            // As after any request: what it sent this core (a room message homed
            // here) goes before the next request may go.
            self.run_local_work(now, out);
        }
        let idle = self
            .clients
            .get(&sender)
            .and_then(|c| c.gate.as_ref())
            .is_some_and(|gate| gate.in_flight == 0 && gate.held.is_empty());
        if idle {
            if let Some(client) = self.clients.get_mut(&sender) {
                client.gate = None;
            }
        }
    }
}
