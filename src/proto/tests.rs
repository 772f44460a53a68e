//! Request parsing and message encoding on literal JSON (the server's side).

use serde_json::value::RawValue;

use super::*;

fn parse(json: &str) -> Result<Request<'_>, RequestError> {
    parse_request(json.as_bytes()).0
}

#[test]
fn every_request_type_parses_with_its_fields() {
    assert!(
        matches!(parse(r#"{"type":"broadcast","message":"hi"}"#), Ok(Request::Broadcast { message }) if message.get() == "\"hi\"")
    );
    assert!(
        matches!(parse(r#"{"type":"join_room","room":"lobby"}"#), Ok(Request::JoinRoom { room, .. }) if room == "lobby")
    );
    assert!(
        matches!(parse(r#"{"type":"leave_room","room":"lobby"}"#), Ok(Request::LeaveRoom { room }) if room == "lobby")
    );
    assert!(matches!(
        parse(r#"{"type":"room_message","room":"a","message":{"x":[1,2]}}"#),
        Ok(Request::RoomMessage { room, message }) if room == "a" && message.get() == r#"{"x":[1,2]}"#
    ));
    assert!(matches!(
        parse(r#"{"type":"private_message","to":"client_0_1_2","message":"m"}"#),
        Ok(Request::PrivateMessage { to, .. }) if to == "client_0_1_2"
    ));
    let Ok(Request::SetMetadata { metadata }) =
        parse(r#"{"type":"set_metadata","metadata":{"name":"ann"}}"#)
    else {
        panic!("set_metadata must parse");
    };
    assert_eq!(metadata["name"], "ann");
}

#[test]
fn missing_fields_default_like_the_seed() {
    assert!(
        matches!(parse(r#"{"type":"broadcast"}"#), Ok(Request::Broadcast { message }) if message.get() == "\"\"")
    );
    assert!(
        matches!(parse(r#"{"type":"join_room"}"#), Ok(Request::JoinRoom { room, .. }) if room.is_empty())
    );
    assert!(
        matches!(parse(r#"{"type":"join_room","room":null}"#), Ok(Request::JoinRoom { room, .. }) if room.is_empty())
    );
    assert!(
        matches!(parse(r#"{"type":"set_metadata"}"#), Ok(Request::SetMetadata { metadata }) if metadata.is_empty())
    );
}

#[test]
fn escaped_strings_are_unescaped_for_room_names() {
    assert!(
        matches!(parse(r#"{"type":"join_room","room":"caf\u00e9 \"q\""}"#), Ok(Request::JoinRoom { room, .. }) if room == "café \"q\"")
    );
}

#[test]
fn malformed_requests_are_invalid_message_format() {
    for json in [
        "not json",
        "[1,2]",
        "\"text\"",
        "{}",
        r#"{"room":"a"}"#,
        r#"{"type":5}"#,
        r#"{"type":"join_room","room":5}"#,
        r#"{"type":"private_message","to":["x"]}"#,
        r#"{"type":"set_metadata","metadata":[1]}"#,
        r#"{"type":"set_metadata","metadata":"x"}"#,
        r#"{"type":"broadcast","id":{"a":1}}"#,
        r#"{"type":"broadcast"} trailing"#,
    ] {
        assert_eq!(
            parse(json).unwrap_err(),
            RequestError::InvalidFormat,
            "{json}"
        );
    }
    assert_eq!(
        parse_request(b"\xff\xfe").0.unwrap_err(),
        RequestError::InvalidFormat
    );
}

#[test]
fn unknown_type_is_named_in_the_error() {
    assert_eq!(
        parse(r#"{"type":"dance"}"#).unwrap_err().to_string(),
        "Unknown message type: dance"
    );
}

#[test]
fn id_is_returned_even_with_an_error() {
    let (request, id) = parse_request(br#"{"type":"dance","id":7}"#);
    assert!(request.is_err());
    assert_eq!(id.map(RawValue::get), Some("7"));
    let (_, id) = parse_request(br#"{"type":"join_room","room":"a","id":"req-1"}"#);
    assert_eq!(id.map(RawValue::get), Some("\"req-1\""));
}

#[test]
fn encoder_writes_fields_in_order_with_raw_values_verbatim() {
    let raw = serde_json::from_str::<&RawValue>(r#"{"emoji":"😀","n":1.50}"#).unwrap();
    let frame = Encoder::new("room_message")
        .string("room", "a\"b")
        .raw("message", raw)
        .number("timestamp", 42)
        .frame();
    assert_eq!(frame[0], 0x81, "final text frame");
    let json = std::str::from_utf8(&frame[2..]).unwrap();
    assert_eq!(
        json,
        r#"{"type":"room_message","room":"a\"b","message":{"emoji":"😀","n":1.50},"timestamp":42}"#
    );
}

#[test]
fn error_frame_carries_the_id() {
    let id = serde_json::from_str::<&RawValue>("\"x\"").unwrap();
    let frame = error_frame(&RequestError::RoomDoesNotExist, 9, Some(id));
    let json = std::str::from_utf8(&frame[2..]).unwrap();
    assert_eq!(
        json,
        r#"{"type":"error","message":"Room does not exist","timestamp":9,"id":"x"}"#
    );
}

/// Regression (fuzz target `room_request`, crash f1f19f81): serde_json skips a field it
/// does not read without checking its UTF-8, so a binary frame with invalid UTF-8 in an
/// unknown field was served as a request. JSON is UTF-8 (RFC 8259 §8.1): not JSON.
#[test]
fn invalid_utf8_anywhere_is_invalid_message_format() {
    let payload = b"{\"type\":\"broadcast\",\"messagg\":\"h\xff\xff\xff\xffello\",\"id\":-2e3}";
    let (request, id) = parse_request(payload);
    assert_eq!(request.unwrap_err(), RequestError::InvalidFormat);
    assert!(id.is_none(), "an id from a message that is not JSON");
}

/// Regression: serde reads a struct from a JSON array too (all six fields by position:
/// type, room, to, message, metadata, id), so `["join_room","lobby",null,null,null,null]`
/// joined `lobby`. PROTOCOL.md: a message that is not an object is `Invalid message format`.
#[test]
fn a_json_array_is_not_a_request() {
    for json in [
        r#"["join_room","lobby",null,null,null,null]"#,
        r#"["broadcast",null,null,"hi",null,1]"#,
        r#" ["dance",null,null,null,null,7]"#,
    ] {
        let (request, id) = parse_request(json.as_bytes());
        assert_eq!(request.unwrap_err(), RequestError::InvalidFormat, "{json}");
        assert!(id.is_none(), "{json}");
    }
}
