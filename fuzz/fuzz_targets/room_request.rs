//! The room protocol's request parser (`ringcast::proto::parse_request`) on any bytes.
//! Checks: no panic; a request or an `id` comes only from a JSON object (PROTOCOL.md:
//! "not JSON, not an object" is `Invalid message format`); an `id` is a JSON string or
//! number; a relayed `message` is valid JSON that re-encodes to itself; room names and
//! recipients are the JSON strings sent (or `""` for a missing or null field); and the
//! error answering a refused request encodes as valid JSON with the same `id`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcast::proto::{error_frame, parse_request, Request, RequestError};
use ringcast::ws::{Decoder, Incoming, Role};
use serde_json::value::RawValue;
use serde_json::Value;

fuzz_target!(|payload: &[u8]| {
    let (request, id) = parse_request(payload);
    let is_object =
        serde_json::from_slice::<&RawValue>(payload).is_ok_and(|raw| raw.get().starts_with('{'));
    // As a tree, for comparing fields (not every valid JSON text fits one: 1e999).
    let object = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|value| value.as_object().cloned());

    if let Some(id) = id {
        assert!(is_object, "an id from something not an object");
        assert!(id
            .get()
            .starts_with(['"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']));
        if let Some(object) = &object {
            let value: Value = serde_json::from_str(id.get()).expect("an id is JSON");
            assert!(value.is_string() || value.is_number(), "id {id}");
            assert_eq!(object.get("id"), Some(&value));
        }
    }

    match request {
        Ok(request) => {
            assert!(is_object, "a request from something not an object");
            if let Some(object) = &object {
                check_request(&request, object);
            }
        }
        Err(error) => check_error_reply(&error, id, object.is_some()),
    }
});

/// What `state.rs` answers a refused request with: one text frame, one JSON object
/// with the error text and the request's id.
fn check_error_reply(error: &RequestError, id: Option<&RawValue>, comparable: bool) {
    let frame = error_frame(error, 1_800_000_000, id);
    let mut buf = BytesMut::from(&frame[..]);
    let decoded = Decoder::new(Role::Client, usize::MAX).decode(&mut buf);
    let Ok(Some(Incoming::Text(json))) = decoded else {
        panic!("the reply is not one text frame: {decoded:?}");
    };
    assert!(buf.is_empty(), "the reply is more than one frame");
    serde_json::from_slice::<&RawValue>(&json).expect("the reply is JSON");
    if comparable {
        let reply: Value = serde_json::from_slice(&json).expect("the reply is JSON");
        assert_eq!(reply["message"], error.to_string());
        if let Some(id) = id {
            assert_eq!(
                reply["id"],
                serde_json::from_str::<Value>(id.get()).unwrap()
            );
        }
    }
}

fn check_request(request: &Request<'_>, object: &serde_json::Map<String, Value>) {
    // A string field as sent; a missing or null one reads as "".
    let text = |key: &str| match object.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => panic!("{key} {other} taken as a string"),
    };
    let kind = object.get("type").and_then(Value::as_str);
    match request {
        Request::Broadcast { message } => {
            assert_eq!(kind, Some("broadcast"));
            check_message(message, object);
        }
        Request::JoinRoom { room, .. } => {
            assert_eq!(kind, Some("join_room"));
            assert_eq!(*room, text("room"));
        }
        Request::LeaveRoom { room } => {
            assert_eq!(kind, Some("leave_room"));
            assert_eq!(*room, text("room"));
        }
        Request::RoomMessage { room, message } => {
            assert_eq!(kind, Some("room_message"));
            assert_eq!(*room, text("room"));
            check_message(message, object);
        }
        Request::PrivateMessage { to, message } => {
            assert_eq!(kind, Some("private_message"));
            assert_eq!(*to, text("to"));
            check_message(message, object);
        }
        Request::SetMetadata { metadata } => {
            assert_eq!(kind, Some("set_metadata"));
            match object.get("metadata") {
                None => assert!(metadata.is_empty()),
                Some(sent) => assert_eq!(sent.as_object(), Some(metadata)),
            }
        }
    }
}

/// `message` is relayed verbatim: it must be one JSON value, the one sent ("" if none).
fn check_message(message: &RawValue, object: &serde_json::Map<String, Value>) {
    let value: Value = serde_json::from_str(message.get()).expect("message is JSON");
    let sent = object.get("message").cloned().unwrap_or(Value::from(""));
    assert_eq!(value, sent);
}
