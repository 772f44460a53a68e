//! Server -> client, as the server writes it: each message encoded once, in the
//! seed's field order, straight into its final text frame, to be shared by every
//! recipient. Raw values (`message`, `id`) are copied verbatim.

use std::io::Write;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::RequestError;
use crate::ws::{encode_unmasked, FrameBuffer, Opcode};

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

    /// The message so far, left open: a room message's home completes it with its
    /// offset ([`frame_with_offset`]).
    pub fn open(self) -> Bytes {
        Bytes::from(self.json)
    }

    /// Like [`Encoder::frame`], placed in `buffer` right after the sender's previous
    /// frame to the same audience (see [`FrameBuffer`]).
    pub fn frame_in(mut self, buffer: &mut FrameBuffer) -> Bytes {
        self.json.push(b'}');
        buffer.encode(Opcode::Text, &self.json)
    }
}

/// Completes an [`Encoder::open`] message with `,"offset":N}` as a text frame, in
/// `buffer` when given (see [`FrameBuffer`]).
pub fn frame_with_offset(open: &[u8], offset: u64, buffer: Option<&mut FrameBuffer>) -> Bytes {
    let mut json = Vec::with_capacity(open.len() + 24);
    json.extend_from_slice(open);
    let _ = write!(json, ",\"offset\":{offset}}}");
    match buffer {
        Some(buffer) => buffer.encode(Opcode::Text, &json),
        None => encode_unmasked(Opcode::Text, &json),
    }
}

fn write_string(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(out, value).expect("a string always serializes");
}

/// An `error` message.
pub fn error_frame(error: &RequestError, now: u64, id: Option<&RawValue>) -> Bytes {
    Encoder::new("error")
        .string("message", &error.to_string())
        .number("timestamp", now)
        .id(id)
        .frame()
}
