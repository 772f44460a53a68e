//! What a [`super::Client`] reports, in order, on its event channel; and how the
//! history tracker's notes become events. No logic beyond that mapping.

use std::time::Duration;

use super::error::ClientError;
use super::history::Note;
use super::url::WsUrl;
use crate::proto::Received;

/// What happened, in order.
#[derive(Debug)]
pub enum Event {
    /// A connection to `url` is up, with this `client_id` (a new one after each
    /// reconnect). Its `welcome` follows as a [`Event::Message`]; then the client
    /// rejoins its rooms and re-applies its metadata (the replies arrive as messages).
    Connected {
        url: WsUrl,
        client_id: String,
        reconnected: bool,
    },
    /// A message from the server.
    Message(Received),
    /// A connection attempt to `url` failed.
    ConnectFailed { url: WsUrl, error: ClientError },
    /// The connection that was up ended.
    Disconnected { reason: ClientError },
    /// Waiting `delay` before reconnect attempt `attempt` (counted since the backoff
    /// last reset, so `delay` is within that attempt's ceiling).
    Reconnecting { attempt: u32, delay: Duration },
    /// A message was not sent: no connection was up (joins, leaves and metadata are
    /// never dropped: they are applied on the next connection), or the write failed
    /// (a [`Event::Disconnected`] with the cause follows).
    NotSent { text: String },
    /// `room` was rejoined (after a reconnect) from where this client had read it,
    /// and nothing is missing: the `missed` messages sent while it was away were
    /// replayed, in order and once each, as the [`Event::Message`]s between its
    /// `room_joined` and this event. Live messages follow. (**ext**, issue 13.)
    Recovered { room: String, missed: u64 },
    /// `room` was rejoined (after a reconnect) but what was sent while this client was
    /// away could not be replayed: the server restarted (a new epoch), no longer keeps
    /// those messages, or keeps no history. Some messages were missed; live messages
    /// follow the `room_joined`, which this event comes right after.
    HistoryLost { room: String },
    /// `missing` messages of `room` never arrived, just before the one at `offset`,
    /// which follows this event. Should not happen on a live connection; the position
    /// moves past them (they are not recovered later).
    Gap {
        room: String,
        missing: u64,
        offset: u64,
    },
    /// A message of `room` at an `offset` already delivered came again and was dropped
    /// (in place of the message). Should not happen; reported so it can be counted.
    DuplicateDropped { room: String, offset: u64 },
    /// The client ended; no event follows.
    Stopped(StopReason),
}

/// Why the client ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// [`super::ClientHandle::close`], or every handle was dropped.
    Closed,
    /// Reconnecting is off, the attempts ran out, or the error is permanent; the cause
    /// was the last [`Event::ConnectFailed`] or [`Event::Disconnected`].
    GaveUp,
}

impl From<Note> for Event {
    fn from(note: Note) -> Event {
        match note {
            Note::Recovered { room, missed } => Event::Recovered { room, missed },
            Note::HistoryLost { room } => Event::HistoryLost { room },
            Note::Gap {
                room,
                missing,
                offset,
            } => Event::Gap {
                room,
                missing,
                offset,
            },
            Note::Duplicate { room, offset } => Event::DuplicateDropped { room, offset },
        }
    }
}
