//! How `ringcast client` prints a received message: one readable line (time, kind,
//! room, sender, text), or one JSON line with `--json`. Pure formatting.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::client::{Received, ServerMessage};

/// `HH:MM:SS KIND ROOM SENDER TEXT`: the time is UTC, `-` stands for no room or no
/// sender, control characters are escaped so a message stays on one line.
pub fn readable_line(received: &Received, now: SystemTime) -> String {
    let (room, sender, text): (&str, &str, String) = match &received.message {
        ServerMessage::Welcome { client_id, .. } => ("", "", client_id.clone()),
        ServerMessage::Broadcast { from, message, .. } => ("", from, message_text(message)),
        ServerMessage::RoomJoined { room, members, .. } => (room, "", members_text(*members)),
        ServerMessage::MemberJoined {
            room,
            client_id,
            total_members,
        }
        | ServerMessage::MemberLeft {
            room,
            client_id,
            total_members,
        } => (room, client_id, members_text(*total_members)),
        ServerMessage::RoomMessage {
            room,
            from,
            message,
            ..
        } => (room, from, message_text(message)),
        ServerMessage::PrivateMessage { from, message, .. } => ("", from, message_text(message)),
        ServerMessage::MetadataUpdated { metadata, .. } => {
            ("", "", serde_json::to_string(metadata).unwrap_or_default())
        }
        ServerMessage::Error { message, .. } => ("", "", message.clone()),
        ServerMessage::Unknown(value) => ("", "", value.to_string()),
        ServerMessage::NotJson(text) => ("", "", text.clone()),
    };
    format_line(now, received.message.kind(), room, sender, &text)
}

/// A line in the same columns for the client's own notes (`/rooms`).
pub fn format_line(now: SystemTime, kind: &str, room: &str, sender: &str, text: &str) -> String {
    format!(
        "{} {} {} {} {}",
        clock(now),
        field(kind),
        field(room),
        field(sender),
        escape(text)
    )
}

/// One JSON line for `--json`: the message as it came, unless it spans lines (then
/// re-encoded compactly) or is not JSON (then a JSON string).
pub fn json_line(received: &Received) -> String {
    if !received.raw.contains(['\n', '\r']) && serde_json::from_str::<Value>(&received.raw).is_ok()
    {
        return received.raw.clone();
    }
    match serde_json::from_str::<Value>(&received.raw) {
        Ok(value) => value.to_string(),
        Err(_) => Value::String(received.raw.clone()).to_string(),
    }
}

fn members_text(members: u64) -> String {
    match members {
        1 => "1 member".to_string(),
        n => format!("{n} members"),
    }
}

/// A string `message` as its text; any other JSON value as compact JSON.
fn message_text(message: &Value) -> String {
    match message {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A column: `-` when empty, whitespace and control characters escaped, so the
/// columns before the text split on spaces.
fn field(text: &str) -> String {
    if text.is_empty() {
        return "-".to_string();
    }
    text.chars()
        .flat_map(|c| {
            if c.is_whitespace() || c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .map(|c| if c == ' ' { '_' } else { c })
        .collect()
}

/// The text column: control characters (line breaks) escaped.
fn escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// `HH:MM:SS` in UTC.
fn clock(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn line(json: &str) -> String {
        readable_line(&Received::parse(json.as_bytes()), at(86_400 * 3 + 3_723))
    }

    #[test]
    fn each_message_kind_reads_as_time_kind_room_sender_text() {
        let cases = [
            (
                r#"{"type":"welcome","client_id":"client_0_1_0","timestamp":1}"#,
                "01:02:03 welcome - - client_0_1_0",
            ),
            (
                r#"{"type":"room_message","room":"lobby","from":"client_0_2_0","message":"hi there","timestamp":1}"#,
                "01:02:03 room_message lobby client_0_2_0 hi there",
            ),
            (
                r#"{"type":"broadcast","from":"c2","message":{"a":1},"timestamp":1}"#,
                r#"01:02:03 broadcast - c2 {"a":1}"#,
            ),
            (
                r#"{"type":"private_message","from":"c2","message":"psst","timestamp":1}"#,
                "01:02:03 private_message - c2 psst",
            ),
            (
                r#"{"type":"room_joined","room":"lobby","members":1}"#,
                "01:02:03 room_joined lobby - 1 member",
            ),
            (
                r#"{"type":"member_joined","room":"lobby","client_id":"c3","total_members":3}"#,
                "01:02:03 member_joined lobby c3 3 members",
            ),
            (
                r#"{"type":"member_left","room":"lobby","client_id":"c3","total_members":2}"#,
                "01:02:03 member_left lobby c3 2 members",
            ),
            (
                r#"{"type":"metadata_updated","metadata":{"name":"ann"}}"#,
                r#"01:02:03 metadata_updated - - {"name":"ann"}"#,
            ),
            (
                r#"{"type":"error","message":"Room does not exist","timestamp":1}"#,
                "01:02:03 error - - Room does not exist",
            ),
            (
                r#"{"type":"typing","from":"c2"}"#,
                r#"01:02:03 typing - - {"from":"c2","type":"typing"}"#,
            ),
            ("plain text", "01:02:03 not_json - - plain text"),
        ];
        for (json, expected) in cases {
            assert_eq!(line(json), expected, "{json}");
        }
    }

    #[test]
    fn a_message_stays_on_one_line_and_columns_stay_split() {
        let text = line(
            r#"{"type":"room_message","room":"big room","from":"c1","message":"a\nb","timestamp":1}"#,
        );
        assert_eq!(text, r"01:02:03 room_message big_room c1 a\nb");
        assert_eq!(
            format_line(at(0), "rooms", "", "", "x"),
            "00:00:00 rooms - - x"
        );
    }

    #[test]
    fn json_lines_are_the_message_as_it_came_on_one_line() {
        let compact = r#"{"type":"x","b":1,"a":2}"#;
        assert_eq!(json_line(&Received::parse(compact.as_bytes())), compact);
        let spread = "{\"type\":\"x\",\n \"a\": 1}";
        assert_eq!(
            json_line(&Received::parse(spread.as_bytes())),
            r#"{"a":1,"type":"x"}"#
        );
        assert_eq!(json_line(&Received::parse(b"not json")), r#""not json""#);
    }
}
