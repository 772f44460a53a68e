//! The room protocol's messages as the client sees them (PROTOCOL.md): typed requests
//! to send and typed server messages to receive. A server message this version does
//! not know, or one whose fields do not fit, is kept as raw JSON rather than failing.
//! Nothing here touches a socket.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A request `id` (**ext**): a string or a number; the direct reply to a request
/// (`room_joined`, `metadata_updated`, `error`) carries the same one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(serde_json::Number),
    Text(String),
}

impl From<u64> for RequestId {
    fn from(n: u64) -> Self {
        RequestId::Number(n.into())
    }
}

impl From<&str> for RequestId {
    fn from(text: &str) -> Self {
        RequestId::Text(text.to_string())
    }
}

/// Where a client has read a room's history to (**ext**, issue 13): the room's
/// `epoch` from its `room_joined` and the last `offset` it has. A `join_room` with one
/// asks the server to replay the messages after it; see [`ClientMessage::JoinRoom`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomPosition {
    pub epoch: String,
    pub offset: u64,
}

/// A client request (PROTOCOL.md, "Client -> server"). `message` is any JSON value,
/// relayed verbatim; the seed's clients send strings. Missing fields read as the
/// server reads them (empty), so a raw line can be parsed to see what it asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// To every other connected client.
    Broadcast {
        #[serde(default)]
        message: Value,
    },
    /// Join a room (a second join of the same room does nothing). With `recover`
    /// (**ext**), the server replays the room's messages after that position, if it
    /// still has them, and says so in `room_joined`'s `recovered`.
    JoinRoom {
        #[serde(default)]
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recover: Option<RoomPosition>,
    },
    LeaveRoom {
        #[serde(default)]
        room: String,
    },
    /// To the room's other members; the sender must be in the room.
    RoomMessage {
        #[serde(default)]
        room: String,
        #[serde(default)]
        message: Value,
    },
    PrivateMessage {
        #[serde(default)]
        to: String,
        #[serde(default)]
        message: Value,
    },
    /// Shallow merge into this client's metadata (later keys win).
    SetMetadata {
        #[serde(default)]
        metadata: Map<String, Value>,
    },
}

/// A request and its `id`, serialized as one object.
#[derive(Serialize)]
struct WithId<'a> {
    #[serde(flatten)]
    message: &'a ClientMessage,
    id: &'a RequestId,
}

impl ClientMessage {
    pub fn broadcast(message: impl Into<Value>) -> Self {
        ClientMessage::Broadcast {
            message: message.into(),
        }
    }

    pub fn join_room(room: impl Into<String>) -> Self {
        ClientMessage::JoinRoom {
            room: room.into(),
            recover: None,
        }
    }

    /// A join that asks for the messages after `from` (**ext**).
    pub fn join_room_recovering(room: impl Into<String>, from: RoomPosition) -> Self {
        ClientMessage::JoinRoom {
            room: room.into(),
            recover: Some(from),
        }
    }

    pub fn leave_room(room: impl Into<String>) -> Self {
        ClientMessage::LeaveRoom { room: room.into() }
    }

    pub fn room_message(room: impl Into<String>, message: impl Into<Value>) -> Self {
        ClientMessage::RoomMessage {
            room: room.into(),
            message: message.into(),
        }
    }

    pub fn private_message(to: impl Into<String>, message: impl Into<Value>) -> Self {
        ClientMessage::PrivateMessage {
            to: to.into(),
            message: message.into(),
        }
    }

    pub fn set_metadata(metadata: Map<String, Value>) -> Self {
        ClientMessage::SetMetadata { metadata }
    }

    /// The JSON text to send, `type` first.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a client message always serializes")
    }

    /// The JSON text to send, with a request `id` (**ext**).
    pub fn to_json_with_id(&self, id: &RequestId) -> String {
        serde_json::to_string(&WithId { message: self, id })
            .expect("a client message always serializes")
    }

    /// What a raw JSON line asks for, if it is a request this crate knows.
    pub fn parse(text: &str) -> Option<ClientMessage> {
        serde_json::from_str(text).ok()
    }
}

/// A server message (PROTOCOL.md, "Server -> client").
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Right after the handshake: this connection's id.
    Welcome { client_id: String, timestamp: u64 },
    Broadcast {
        from: String,
        message: Value,
        timestamp: u64,
    },
    /// This client joined `room`, which now has `members` members. **ext** (issue 13;
    /// `None` from a server without history): the room's history `epoch`, its latest
    /// `offset` at the join, and for a join with `recover`, whether the messages after
    /// that position follow (`recovered`).
    RoomJoined {
        room: String,
        members: u64,
        #[serde(default)]
        epoch: Option<String>,
        #[serde(default)]
        offset: Option<u64>,
        #[serde(default)]
        recovered: Option<bool>,
        #[serde(default)]
        id: Option<RequestId>,
    },
    MemberJoined {
        room: String,
        client_id: String,
        total_members: u64,
    },
    MemberLeft {
        room: String,
        client_id: String,
        total_members: u64,
    },
    /// **ext** (issue 13): `offset` is the message's place in the room's history, one
    /// more than the room's previous message (`None` from a server without history).
    RoomMessage {
        room: String,
        from: String,
        message: Value,
        timestamp: u64,
        #[serde(default)]
        offset: Option<u64>,
    },
    PrivateMessage {
        from: String,
        message: Value,
        timestamp: u64,
    },
    /// This client's whole metadata after a `set_metadata`.
    MetadataUpdated {
        metadata: Map<String, Value>,
        #[serde(default)]
        id: Option<RequestId>,
    },
    /// A request failed; the connection stays open.
    Error {
        message: String,
        timestamp: u64,
        #[serde(default)]
        id: Option<RequestId>,
    },
    /// JSON this version does not know (another `type`, or fields that do not fit).
    #[serde(skip)]
    Unknown(Value),
    /// A message that is not JSON at all, as text (lossy if it was not UTF-8).
    #[serde(skip)]
    NotJson(String),
}

impl ServerMessage {
    /// Parses one message; never fails (see [`ServerMessage::Unknown`]).
    pub fn parse(text: &str) -> ServerMessage {
        match serde_json::from_str::<ServerMessage>(text) {
            Ok(message) => message,
            Err(_) => match serde_json::from_str::<Value>(text) {
                Ok(value) => ServerMessage::Unknown(value),
                Err(_) => ServerMessage::NotJson(text.to_string()),
            },
        }
    }

    /// The message's `type` as on the wire (`"unknown"` and `"not_json"` for the
    /// two catch-alls, where an unknown type is not a string).
    pub fn kind(&self) -> &str {
        match self {
            ServerMessage::Welcome { .. } => "welcome",
            ServerMessage::Broadcast { .. } => "broadcast",
            ServerMessage::RoomJoined { .. } => "room_joined",
            ServerMessage::MemberJoined { .. } => "member_joined",
            ServerMessage::MemberLeft { .. } => "member_left",
            ServerMessage::RoomMessage { .. } => "room_message",
            ServerMessage::PrivateMessage { .. } => "private_message",
            ServerMessage::MetadataUpdated { .. } => "metadata_updated",
            ServerMessage::Error { .. } => "error",
            ServerMessage::Unknown(value) => value
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unknown"),
            ServerMessage::NotJson(_) => "not_json",
        }
    }
}

/// A received message: typed, and the text exactly as it came (for `--json` output
/// and for fields this version does not model).
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub message: ServerMessage,
    pub raw: String,
}

impl Received {
    /// Parses a text (or binary, read as UTF-8) message's payload.
    pub fn parse(payload: &[u8]) -> Received {
        let raw = String::from_utf8_lossy(payload).into_owned();
        Received {
            message: ServerMessage::parse(&raw),
            raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn requests_serialize_as_the_protocol_spells_them() {
        let cases = [
            (
                ClientMessage::broadcast("hi"),
                r#"{"type":"broadcast","message":"hi"}"#,
            ),
            (
                ClientMessage::join_room("lobby"),
                r#"{"type":"join_room","room":"lobby"}"#,
            ),
            (
                ClientMessage::leave_room("lobby"),
                r#"{"type":"leave_room","room":"lobby"}"#,
            ),
            (
                ClientMessage::room_message("lobby", json!({"x": [1, 2]})),
                r#"{"type":"room_message","room":"lobby","message":{"x":[1,2]}}"#,
            ),
            (
                ClientMessage::private_message("client_0_1_0", "psst"),
                r#"{"type":"private_message","to":"client_0_1_0","message":"psst"}"#,
            ),
            (
                ClientMessage::set_metadata(json!({"name": "ann"}).as_object().unwrap().clone()),
                r#"{"type":"set_metadata","metadata":{"name":"ann"}}"#,
            ),
        ];
        for (message, json) in cases {
            assert_eq!(message.to_json(), json);
            assert_eq!(ClientMessage::parse(json), Some(message), "{json}");
        }
    }

    #[test]
    fn a_request_id_goes_after_the_fields() {
        let message = ClientMessage::join_room("a");
        assert_eq!(
            message.to_json_with_id(&7.into()),
            r#"{"type":"join_room","room":"a","id":7}"#
        );
        assert_eq!(
            message.to_json_with_id(&"r1".into()),
            r#"{"type":"join_room","room":"a","id":"r1"}"#
        );
    }

    #[test]
    fn a_join_with_recover_carries_the_position_and_then_the_id() {
        let from = RoomPosition {
            epoch: "e7".into(),
            offset: 12,
        };
        let message = ClientMessage::join_room_recovering("lobby", from);
        let json = r#"{"type":"join_room","room":"lobby","recover":{"epoch":"e7","offset":12}}"#;
        assert_eq!(message.to_json(), json);
        assert_eq!(ClientMessage::parse(json), Some(message.clone()));
        assert_eq!(
            message.to_json_with_id(&"j1".into()),
            r#"{"type":"join_room","room":"lobby","recover":{"epoch":"e7","offset":12},"id":"j1"}"#
        );
        // A first join asks for nothing: no `recover` key at all, not `null`.
        assert!(!ClientMessage::join_room("lobby")
            .to_json()
            .contains("recover"));
    }

    #[test]
    fn history_fields_parse_and_servers_without_them_still_parse() {
        let joined = ServerMessage::parse(
            r#"{"type":"room_joined","room":"r","members":1,"epoch":"e1","offset":4,"recovered":true,"id":2}"#,
        );
        assert_eq!(
            joined,
            ServerMessage::RoomJoined {
                room: "r".into(),
                members: 1,
                epoch: Some("e1".into()),
                offset: Some(4),
                recovered: Some(true),
                id: Some(2.into()),
            }
        );
        let message = ServerMessage::parse(
            r#"{"type":"room_message","room":"r","from":"c1","message":"m","timestamp":9,"offset":5}"#,
        );
        assert!(matches!(
            message,
            ServerMessage::RoomMessage {
                offset: Some(5),
                ..
            }
        ));
        let old = ServerMessage::parse(r#"{"type":"room_joined","room":"r","members":1}"#);
        assert!(matches!(
            old,
            ServerMessage::RoomJoined {
                epoch: None,
                offset: None,
                recovered: None,
                ..
            }
        ));
    }

    #[test]
    fn raw_requests_with_missing_fields_read_as_the_server_reads_them() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"join_room"}"#),
            Some(ClientMessage::join_room(""))
        );
        assert_eq!(ClientMessage::parse(r#"{"type":"dance"}"#), None);
        assert_eq!(ClientMessage::parse("not json"), None);
    }

    #[test]
    fn every_server_message_parses_to_its_variant() {
        let cases = [
            (
                r#"{"type":"welcome","client_id":"client_0_1_0","timestamp":5}"#,
                ServerMessage::Welcome {
                    client_id: "client_0_1_0".into(),
                    timestamp: 5,
                },
            ),
            (
                r#"{"type":"broadcast","from":"c1","message":"hi","timestamp":5}"#,
                ServerMessage::Broadcast {
                    from: "c1".into(),
                    message: json!("hi"),
                    timestamp: 5,
                },
            ),
            (
                r#"{"type":"room_joined","room":"r","members":2,"id":"x"}"#,
                ServerMessage::RoomJoined {
                    room: "r".into(),
                    members: 2,
                    epoch: None,
                    offset: None,
                    recovered: None,
                    id: Some("x".into()),
                },
            ),
            (
                r#"{"type":"member_joined","room":"r","client_id":"c2","total_members":3}"#,
                ServerMessage::MemberJoined {
                    room: "r".into(),
                    client_id: "c2".into(),
                    total_members: 3,
                },
            ),
            (
                r#"{"type":"member_left","room":"r","client_id":"c2","total_members":1}"#,
                ServerMessage::MemberLeft {
                    room: "r".into(),
                    client_id: "c2".into(),
                    total_members: 1,
                },
            ),
            (
                r#"{"type":"room_message","room":"r","from":"c1","message":[1],"timestamp":9}"#,
                ServerMessage::RoomMessage {
                    room: "r".into(),
                    from: "c1".into(),
                    message: json!([1]),
                    timestamp: 9,
                    offset: None,
                },
            ),
            (
                r#"{"type":"private_message","from":"c1","message":"p","timestamp":9}"#,
                ServerMessage::PrivateMessage {
                    from: "c1".into(),
                    message: json!("p"),
                    timestamp: 9,
                },
            ),
            (
                r#"{"type":"metadata_updated","metadata":{"a":1},"id":3}"#,
                ServerMessage::MetadataUpdated {
                    metadata: json!({"a": 1}).as_object().unwrap().clone(),
                    id: Some(3.into()),
                },
            ),
            (
                r#"{"type":"error","message":"Room does not exist","timestamp":1}"#,
                ServerMessage::Error {
                    message: "Room does not exist".into(),
                    timestamp: 1,
                    id: None,
                },
            ),
        ];
        for (json, expected) in cases {
            let parsed = ServerMessage::parse(json);
            assert_eq!(parsed, expected, "{json}");
            let kind = serde_json::from_str::<Value>(json).unwrap()["type"].clone();
            assert_eq!(parsed.kind(), kind.as_str().unwrap());
        }
    }

    #[test]
    fn unknown_or_misshapen_server_messages_are_kept_raw() {
        let unknown = ServerMessage::parse(r#"{"type":"typing","from":"c1"}"#);
        assert_eq!(
            unknown,
            ServerMessage::Unknown(json!({"type":"typing","from":"c1"}))
        );
        assert_eq!(unknown.kind(), "typing");
        let misshapen = ServerMessage::parse(r#"{"type":"welcome","client_id":7}"#);
        assert!(matches!(misshapen, ServerMessage::Unknown(_)));
        assert_eq!(ServerMessage::parse("[1]").kind(), "unknown");
        assert_eq!(
            ServerMessage::parse("hello"),
            ServerMessage::NotJson("hello".into())
        );
        let received = Received::parse(b"{\"type\":\"x\"}");
        assert_eq!(received.raw, "{\"type\":\"x\"}");
    }
}
