//! Client -> server, as the server reads it: one pass over the message bytes that
//! borrows what it can (a relayed `message` and a request's `id` stay the client's raw
//! JSON text; they are never parsed into a tree). It decides nothing; `rooms` does.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::RequestError;

/// A client request, borrowing from the message bytes.
#[derive(Debug)]
pub enum Request<'a> {
    Broadcast {
        message: &'a RawValue,
    },
    JoinRoom {
        room: Cow<'a, str>,
        /// **ext**: recover what was missed since this position in the room.
        recover: Option<Recover>,
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

/// `join_room`'s `recover`: the last position a client saw in the room.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recover {
    pub epoch: String,
    pub offset: u64,
}

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
    #[serde(borrow)]
    recover: Option<&'a RawValue>,
}

/// The JSON text `""`: a missing `message` is relayed as an empty string.
fn empty_string() -> &'static RawValue {
    serde_json::from_str("\"\"").expect("a JSON string literal")
}

/// Parses one client message. Returns the request (or the error to answer) and the
/// request's `id` (**ext**) whenever the message was a JSON object with a valid one,
/// so even an error reply carries it.
pub fn parse_request(payload: &[u8]) -> (Result<Request<'_>, RequestError>, Option<&RawValue>) {
    parse_fields(payload)
}

fn parse_fields<'a>(
    payload: &'a [u8],
) -> (Result<Request<'a>, RequestError>, Option<&'a RawValue>) {
    let bad = || RequestError::InvalidFormat;
    // JSON is UTF-8 (RFC 8259 §8.1), but serde_json skips the fields it does not read
    // without checking them: check it all here (a text frame's payload already was;
    // a binary frame's, parsed alike, was not).
    let Ok(text) = std::str::from_utf8(payload) else {
        return (Err(bad()), None);
    };
    // serde would also read `Fields` from an array, by position; only an object is a
    // request (PROTOCOL.md: "not an object" is `Invalid message format`).
    if !text.trim_ascii_start().starts_with('{') {
        return (Err(bad()), None);
    }
    let Ok(fields) = serde_json::from_str::<Fields<'a>>(text) else {
        return (Err(bad()), None);
    };
    let id = fields.id.filter(|raw| is_string_or_number(raw));
    if fields.id.is_some() && id.is_none() {
        return (Err(bad()), None);
    }
    let Some(kind) = fields.kind.and_then(as_string) else {
        return (Err(bad()), id);
    };
    let text = |raw: Option<&'a RawValue>| -> Result<Cow<'a, str>, RequestError> {
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
        "join_room" => text(fields.room).and_then(|room| {
            let recover = match fields.recover.map(RawValue::get) {
                None | Some("null") => None,
                Some(raw) => Some(serde_json::from_str::<Recover>(raw).map_err(|_| bad())?),
            };
            Ok(Request::JoinRoom { room, recover })
        }),
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
        other => Err(RequestError::UnknownType(other.to_string())),
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
