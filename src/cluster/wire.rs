//! What nodes say to each other through Redis: the key and channel names, and the
//! payloads of pub/sub messages. Pure functions; the Lua scripts write the `J`, `L`
//! and `M` payloads themselves (`scripts.rs`), in the same format.
//!
//! | channel | payload | from |
//! |---|---|---|
//! | `ringcast:room:<room>` | `J <total> <client_id> <epoch> <offset> <recovered: - 0 1> <token> <id JSON or nothing>` | join script |
//! | `ringcast:room:<room>` | `L <total> <client_id>` | leave and reap scripts |
//! | `ringcast:room:<room>` | `M <offset> <sender's client_id>\n<open JSON>` | room message script |
//! | `ringcast:all` | `B <node>\n<frame>` | the sender's node |
//! | `ringcast:node:<node>` | `P <from node> <core> <slot> <generation> <reply length>\n<reply><frame>` | the sender's node |
//! | `ringcast:node:<node>` | `D <0 or 1>\n<reply>` | the recipient's node |
//!
//! `<frame>` is the WebSocket frame, encoded once by the sender's core and shared by
//! the receiving node as a slice of what it read. `<reply>` is
//! `<core> <slot> <generation> <token> <id JSON or nothing>` of the sender, echoed
//! back in `D` so the sender's node fills the held place (and answers with the id).

use bytes::{Bytes, BytesMut};
use serde_json::value::RawValue;

use crate::{ConnId, CoreId};

pub const PREFIX: &str = "ringcast:";
pub const ROOM_PREFIX: &str = "ringcast:room:";
pub const NODES: &str = "ringcast:nodes";
pub const ALL: &str = "ringcast:all";

/// A room's hash (`<node>` → members on it, `*` → total) and its channel.
pub fn room_key(room: &str) -> String {
    format!("{ROOM_PREFIX}{room}")
}

/// A node's members as `<client_id> <room>` entries (what the reaper removes).
pub fn members_key(node: &str) -> String {
    format!("{PREFIX}members:{node}")
}

/// A node's heartbeat key (expires when the node stops refreshing it).
pub fn alive_key(node: &str) -> String {
    format!("{PREFIX}alive:{node}")
}

/// A room's sequence: its `epoch` and latest `offset`.
pub fn seq_key(room: &str) -> String {
    format!("{PREFIX}seq:{room}")
}

/// A room's kept messages: a stream, entry ids `<offset>-0`.
pub fn history_key(room: &str) -> String {
    format!("{PREFIX}history:{room}")
}

/// How many lives a configured node id has had (`INCR` gives the next).
pub fn lives_key(node_id: &str) -> String {
    format!("{PREFIX}lives:{node_id}")
}

/// A node's own channel: private messages and their outcomes.
pub fn node_channel(node: &str) -> String {
    format!("{PREFIX}node:{node}")
}

/// A pub/sub message, as the node that receives it reads it.
#[derive(Debug)]
pub enum Event {
    Joined {
        total: usize,
        member: String,
        epoch: String,
        offset: u64,
        /// Asked to recover: whether it could (the missed messages are in the join
        /// script's reply, which follows this event at once).
        recovered: Option<bool>,
        token: u32,
        id: Option<Box<RawValue>>,
    },
    Left {
        total: usize,
        member: String,
    },
    RoomMessage {
        offset: u64,
        sender: String,
        /// The message's JSON without its offset and closing brace (`Encoder::open`).
        open: Bytes,
    },
    Broadcast {
        origin: String,
        frame: Bytes,
    },
    Private {
        from_node: String,
        to: ConnId,
        reply: Bytes,
        frame: Bytes,
    },
    Outcome {
        delivered: bool,
        reply: Bytes,
    },
}

/// `M <node>\n` or `B <node>\n`: the header before a frame.
pub fn frame_header(kind: u8, node: &str) -> Vec<u8> {
    let mut header = vec![kind, b' '];
    header.extend_from_slice(node.as_bytes());
    header.push(b'\n');
    header
}

/// The header of a private message `P` (the reply and the frame follow it).
pub fn private_header(from_node: &str, to: ConnId, reply: &[u8]) -> Vec<u8> {
    format!(
        "P {from_node} {} {} {} {}\n",
        to.core.0,
        to.slot,
        to.generation,
        reply.len()
    )
    .into_bytes()
}

/// What the sender's node needs back from a private message's outcome.
#[derive(Debug)]
pub struct PrivateReply {
    pub from: ConnId,
    pub token: u32,
    pub id: Option<Box<RawValue>>,
}

impl PrivateReply {
    pub fn encode(&self) -> Bytes {
        let id = self.id.as_deref().map_or("", RawValue::get);
        let from = self.from;
        let text = format!(
            "{} {} {} {} {id}",
            from.core.0, from.slot, from.generation, self.token
        );
        Bytes::from(text)
    }

    pub fn decode(reply: &[u8]) -> Option<PrivateReply> {
        let text = std::str::from_utf8(reply).ok()?;
        let mut fields = text.splitn(5, ' ');
        let from = ConnId {
            core: CoreId(fields.next()?.parse().ok()?),
            slot: fields.next()?.parse().ok()?,
            generation: fields.next()?.parse().ok()?,
        };
        let token = fields.next()?.parse().ok()?;
        let id = parse_id(fields.next()?)?;
        Some(PrivateReply { from, token, id })
    }
}

/// `D <0|1>\n<reply>`.
pub fn outcome_payload(delivered: bool, reply: &[u8]) -> Vec<u8> {
    let mut payload = if delivered {
        b"D 1\n".to_vec()
    } else {
        b"D 0\n".to_vec()
    };
    payload.extend_from_slice(reply);
    payload
}

/// An optional request id as the payloads carry it: its JSON, or nothing.
fn parse_id(text: &str) -> Option<Option<Box<RawValue>>> {
    if text.is_empty() {
        return Some(None);
    }
    serde_json::from_str(text).ok().map(Some)
}

/// Reads a pub/sub payload; `None` for anything malformed (ignored and counted by
/// the caller: a node of another version, or something else publishing there).
pub fn parse_event(payload: Bytes) -> Option<Event> {
    let line_end = payload.iter().position(|b| *b == b'\n');
    let head_len = line_end.unwrap_or(payload.len());
    let head = std::str::from_utf8(&payload[..head_len]).ok()?;
    let body = || payload.slice((head_len + 1).min(payload.len())..);
    let (kind, rest) = head.split_once(' ')?;
    match kind {
        "J" if line_end.is_none() => {
            let mut fields = rest.splitn(7, ' ');
            Some(Event::Joined {
                total: fields.next()?.parse().ok()?,
                member: fields.next()?.to_string(),
                epoch: fields.next()?.to_string(),
                offset: fields.next()?.parse().ok()?,
                recovered: match fields.next()? {
                    "-" => None,
                    "0" => Some(false),
                    "1" => Some(true),
                    _ => return None,
                },
                token: fields.next()?.parse().ok()?,
                id: parse_id(fields.next().unwrap_or(""))?,
            })
        }
        "L" if line_end.is_none() => {
            let (total, member) = rest.split_once(' ')?;
            Some(Event::Left {
                total: total.parse().ok()?,
                member: member.to_string(),
            })
        }
        "M" => {
            line_end?;
            let (offset, sender) = rest.split_once(' ')?;
            Some(Event::RoomMessage {
                offset: offset.parse().ok()?,
                sender: sender.to_string(),
                open: body(),
            })
        }
        "B" => {
            line_end?;
            Some(Event::Broadcast {
                origin: rest.to_string(),
                frame: body(),
            })
        }
        "P" => {
            let mut fields = rest.split(' ');
            let from_node = fields.next()?.to_string();
            let to = ConnId {
                core: CoreId(fields.next()?.parse().ok()?),
                slot: fields.next()?.parse().ok()?,
                generation: fields.next()?.parse().ok()?,
            };
            let reply_len: usize = fields.next()?.parse().ok()?;
            let body = body();
            if fields.next().is_some() || line_end.is_none() || body.len() < reply_len {
                return None;
            }
            Some(Event::Private {
                from_node,
                to,
                reply: body.slice(..reply_len),
                frame: body.slice(reply_len..),
            })
        }
        "D" => {
            line_end?;
            let delivered = match rest {
                "1" => true,
                "0" => false,
                _ => return None,
            };
            Some(Event::Outcome {
                delivered,
                reply: body(),
            })
        }
        _ => None,
    }
}

/// Joins header parts into one payload (tests, and the writer when it has no parts).
pub fn concat(parts: &[&[u8]]) -> Bytes {
    let mut buf = BytesMut::new();
    for part in parts {
        buf.extend_from_slice(part);
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(core: u16, slot: u32, generation: u32) -> ConnId {
        ConnId {
            core: CoreId(core),
            slot,
            generation,
        }
    }

    #[test]
    fn membership_events_read_as_the_scripts_write_them() {
        let joined =
            parse_event(Bytes::from_static(b"J 3 client_n1_0_4_1 ep1 9 1 7 \"a b\"")).unwrap();
        assert_eq!(
            format!("{joined:?}"),
            format!(
                "{:?}",
                Event::Joined {
                    total: 3,
                    member: "client_n1_0_4_1".into(),
                    epoch: "ep1".into(),
                    offset: 9,
                    recovered: Some(true),
                    token: 7,
                    id: Some(serde_json::from_str("\"a b\"").unwrap()),
                }
            )
        );
        let no_id = parse_event(Bytes::from_static(b"J 1 client_n1_0_4_1 ep1 0 - 2 ")).unwrap();
        assert!(matches!(
            no_id,
            Event::Joined {
                id: None,
                recovered: None,
                ..
            }
        ));
        let left = parse_event(Bytes::from_static(b"L 0 client_n1_0_4_1")).unwrap();
        assert!(matches!(left, Event::Left { total: 0, member } if member == "client_n1_0_4_1"));
    }

    #[test]
    fn frames_travel_after_their_header_byte_for_byte() {
        let frame = b"\x81\x05hello\n\x00";
        let payload = concat(&[b"M 12 client_n1_0_4_1\n", b"{\"x\":\"a\nb\""]);
        assert!(matches!(
            parse_event(payload),
            Some(Event::RoomMessage { offset: 12, sender, open })
                if sender == "client_n1_0_4_1" && open == b"{\"x\":\"a\nb\""[..]
        ));
        let payload = concat(&[&frame_header(b'B', "n2"), frame]);
        assert!(matches!(
            parse_event(payload),
            Some(Event::Broadcast { .. })
        ));
    }

    #[test]
    fn a_private_message_and_its_outcome_carry_the_senders_place_back() {
        let reply = PrivateReply {
            from: conn(1, 9, 3),
            token: 42,
            id: Some(serde_json::from_str("17").unwrap()),
        };
        let encoded = reply.encode();
        let frame = b"\x81\x02{}";
        let payload = concat(&[
            &private_header("n1", conn(0, 5, 2), &encoded),
            &encoded,
            frame,
        ]);
        let Some(Event::Private {
            from_node,
            to,
            reply: got,
            frame: got_frame,
        }) = parse_event(payload)
        else {
            panic!("not a private message");
        };
        assert_eq!((from_node.as_str(), to), ("n1", conn(0, 5, 2)));
        assert_eq!(&got_frame[..], frame);
        assert_eq!(
            format!("{:?}", PrivateReply::decode(&got)),
            format!("{:?}", Some(reply))
        );
        let outcome = parse_event(Bytes::from(outcome_payload(false, &got))).unwrap();
        assert!(matches!(outcome, Event::Outcome { delivered: false, reply } if reply == got));
    }

    #[test]
    fn malformed_payloads_are_refused() {
        for bad in [
            &b""[..],
            b"J",
            b"J x client 1 ",
            b"L 1",
            b"M n1",
            b"P n1 0 1 2 99\nshort",
            b"D 2\n",
            b"Z 1 2",
            b"\xff\xfe",
        ] {
            assert!(
                parse_event(Bytes::copy_from_slice(bad)).is_none(),
                "{bad:?}"
            );
        }
    }
}
