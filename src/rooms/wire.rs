//! The room protocol's wire format (PROTOCOL.md): parsing client requests and
//! encoding server messages straight into final frame bytes. A relayed `message` (and
//! a request's `id`) is copied as the client's raw JSON text; it is never parsed into
//! a tree. It does not decide anything; `state.rs` does.

use std::borrow::Cow;
use std::io::Write;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::ws::{encode_unmasked, FrameBuffer, Opcode};

/// The error text for anything that is not a well-formed request (PROTOCOL.md, Errors).
pub const INVALID_FORMAT: &str = "Invalid message format";
/// The error for a message over the client's rate limit (**ext**).
pub const RATE_LIMITED: &str = "Rate limit exceeded";

/// A client request, borrowing from the message bytes.
#[derive(Debug)]
pub enum Request<'a> {
    Broadcast {
        message: &'a RawValue,
    },
    JoinRoom {
        room: Cow<'a, str>,
    },
    LeaveRoom {
        room: Cow<'a, str>,
    },
    RoomMessage {
        room: Cow<'a, str>,
        message: &'a RawValue,
    },
    PrivateMessage {
        to: Cow<'a, str>,
        message: &'a RawValue,
    },
    SetMetadata {
        metadata: Map<String, Value>,
    },
}

/// A request that cannot be served, with the error text to answer.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// Every field is first taken as raw JSON: which fields must have which JSON type
/// depends on `type`, and a single pass over the bytes keeps `message` borrowed.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    room: Option<&'a RawValue>,
    #[serde(borrow)]
    to: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

/// The JSON text `""`: a missing `message` is relayed as an empty string.
fn empty_string() -> &'static RawValue {
    serde_json::from_str("\"\"").expect("a JSON string literal")
}

/// Parses one client message. Returns the request (or the error to answer) and the
/// request's `id` (**ext**) whenever the message was a JSON object with a valid one,
/// so even an error reply carries it.
pub fn parse_request(payload: &[u8]) -> (Result<Request<'_>, BadRequest>, Option<&RawValue>) {
    parse_fields(payload)
}

fn parse_fields<'a>(payload: &'a [u8]) -> (Result<Request<'a>, BadRequest>, Option<&'a RawValue>) {
    let bad = || BadRequest(INVALID_FORMAT.to_string());
    let Ok(fields) = serde_json::from_slice::<Fields<'a>>(payload) else {
        return (Err(bad()), None);
    };
    let id = fields.id.filter(|raw| is_string_or_number(raw));
    if fields.id.is_some() && id.is_none() {
        return (Err(bad()), None);
    }
    let Some(kind) = fields.kind.and_then(as_string) else {
        return (Err(bad()), id);
    };
    let text = |raw: Option<&'a RawValue>| -> Result<Cow<'a, str>, BadRequest> {
        match raw {
            None => Ok(Cow::Borrowed("")),
            Some(raw) => as_string(raw).ok_or_else(bad),
        }
    };
    let message: &'a RawValue = match fields.message {
        Some(message) => message,
        None => empty_string(),
    };
    let request = match &*kind {
        "broadcast" => Ok(Request::Broadcast { message }),
        "join_room" => text(fields.room).map(|room| Request::JoinRoom { room }),
        "leave_room" => text(fields.room).map(|room| Request::LeaveRoom { room }),
        "room_message" => text(fields.room).map(|room| Request::RoomMessage { room, message }),
        "private_message" => text(fields.to).map(|to| Request::PrivateMessage { to, message }),
        "set_metadata" => match fields.metadata {
            None => Ok(Request::SetMetadata {
                metadata: Map::new(),
            }),
            Some(raw) => serde_json::from_str::<Map<String, Value>>(raw.get())
                .map(|metadata| Request::SetMetadata { metadata })
                .map_err(|_| bad()),
        },
        other => Err(BadRequest(format!("Unknown message type: {other}"))),
    };
    (request, id)
}

/// A JSON string's value (`null` counts as missing: PHP's `??`).
fn as_string(raw: &RawValue) -> Option<Cow<'_, str>> {
    match raw.get() {
        "null" => Some(Cow::Borrowed("")),
        text => serde_json::from_str::<Cow<str>>(text).ok(),
    }
}

fn is_string_or_number(raw: &RawValue) -> bool {
    matches!(
        raw.get().as_bytes().first(),
        Some(b'"' | b'-' | b'0'..=b'9')
    )
}

/// Builds one server message as a complete text frame. Fields are written in the
/// seed's order; strings are escaped by serde_json, raw values copied verbatim.
pub struct Encoder {
    json: Vec<u8>,
}

impl Encoder {
    pub fn new(kind: &str) -> Self {
        let mut json = Vec::with_capacity(128);
        json.extend_from_slice(b"{\"type\":");
        write_string(&mut json, kind);
        Encoder { json }
    }

    pub fn string(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        write_string(&mut self.json, value);
        self
    }

    pub fn raw(mut self, key: &str, value: &RawValue) -> Self {
        self.key(key);
        self.json.extend_from_slice(value.get().as_bytes());
        self
    }

    pub fn number(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        let _ = write!(self.json, "{value}");
        self
    }

    pub fn object(mut self, key: &str, value: &Map<String, Value>) -> Self {
        self.key(key);
        serde_json::to_writer(&mut self.json, value).expect("a JSON map always serializes");
        self
    }

    /// Writes `value`, which is already JSON text (e.g. serialized by serde_json).
    pub fn json(mut self, key: &str, value: &[u8]) -> Self {
        self.key(key);
        self.json.extend_from_slice(value);
        self
    }

    /// Adds `"id"` when the request carried one (**ext**).
    pub fn id(self, id: Option<&RawValue>) -> Self {
        match id {
            Some(id) => self.raw("id", id),
            None => self,
        }
    }

    fn key(&mut self, key: &str) {
        self.json.push(b',');
        write_string(&mut self.json, key);
        self.json.push(b':');
    }

    /// The finished message as one unmasked text frame, to share with every recipient.
    pub fn frame(mut self) -> Bytes {
        self.json.push(b'}');
        encode_unmasked(Opcode::Text, &self.json)
    }

    /// Like [`Encoder::frame`], placed in `buffer` right after the sender's previous
    /// frame to the same audience (see [`FrameBuffer`]).
    pub fn frame_in(mut self, buffer: &mut FrameBuffer) -> Bytes {
        self.json.push(b'}');
        buffer.encode(Opcode::Text, &self.json)
    }
}

fn write_string(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(out, value).expect("a string always serializes");
}

/// An `error` message.
pub fn error_frame(text: &str, now: u64, id: Option<&RawValue>) -> Bytes {
    Encoder::new("error")
        .string("message", text)
        .number("timestamp", now)
        .id(id)
        .frame()
}

#[cfg(test)]
mod tests;
