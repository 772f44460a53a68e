//! The upgrade handshake (`ringcast::ws::handshake`), both roles.
//! Server role, `parse_request` on a request built from fuzzed parts or raw bytes:
//! no panic; a complete request is at most `max_bytes` and parses the same from its
//! header block alone, and every shorter prefix of it is "need more" (`Ok(None)`), so
//! a request split across reads is never refused; an upgrade's key is 24 base64
//! characters and `accept_response` answers it in a way the client role accepts;
//! `check_origin` allows exactly what it documents; a refusal's HTTP response carries
//! its status. Client role: `parse_response` on the same bytes does not panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringcast::ws::handshake::{
    accept_response, check_origin, parse_request, parse_response, HandshakeError, HttpRequest,
    UpgradeRejected,
};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Header block limit, taken modulo 1 KiB + 1.
    max_bytes: u16,
    allowed_origins: Vec<String>,
    /// Where to look at a prefix of a complete request.
    cut: u16,
    bytes: Bytes<'a>,
}

#[derive(Arbitrary, Debug)]
enum Bytes<'a> {
    Raw(&'a [u8]),
    Built(Built<'a>),
}

/// A request line and headers, mostly the ones an upgrade needs.
#[derive(Arbitrary, Debug)]
struct Built<'a> {
    method: Method<'a>,
    path: &'a str,
    http10: bool,
    bare_newlines: bool,
    headers: Vec<(Name<'a>, Value<'a>)>,
    /// Bytes after the header block (pipelined frames).
    tail: &'a [u8],
}

#[derive(Arbitrary, Debug)]
enum Method<'a> {
    Get,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Name<'a> {
    Upgrade,
    Connection,
    Key,
    Version,
    Origin,
    Host,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Value<'a> {
    Websocket,
    ConnectionUpgrade,
    Thirteen,
    /// A well-formed key: 16 bytes in base64.
    Key([u8; 16]),
    Other(&'a str),
}

impl Built<'_> {
    fn to_bytes(&self) -> Vec<u8> {
        let eol = if self.bare_newlines { "\n" } else { "\r\n" };
        let method = match self.method {
            Method::Get => "GET",
            Method::Other(method) => method,
        };
        let version = if self.http10 { "1.0" } else { "1.1" };
        let mut out = format!("{method} {} HTTP/{version}{eol}", self.path);
        for (name, value) in &self.headers {
            let name = match name {
                Name::Upgrade => "Upgrade",
                Name::Connection => "Connection",
                Name::Key => "Sec-WebSocket-Key",
                Name::Version => "Sec-WebSocket-Version",
                Name::Origin => "Origin",
                Name::Host => "Host",
                Name::Other(name) => name,
            };
            let value = match value {
                Value::Websocket => "websocket".to_string(),
                Value::ConnectionUpgrade => "keep-alive, Upgrade".to_string(),
                Value::Thirteen => "13".to_string(),
                Value::Key(nonce) => base64(nonce),
                Value::Other(value) => value.to_string(),
            };
            out.push_str(&format!("{name}: {value}{eol}"));
        }
        out.push_str(eol);
        let mut out = out.into_bytes();
        out.extend_from_slice(self.tail);
        out
    }
}

fn base64(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out + "=="
}

fuzz_target!(|input: Input| {
    let max_bytes = usize::from(input.max_bytes % 1025);
    let buf = match &input.bytes {
        Bytes::Raw(raw) => raw.to_vec(),
        Bytes::Built(built) => built.to_bytes(),
    };

    // The client role reads the server's answer with the same kind of parser.
    let _ = parse_response(&buf, "dGhlIHNhbXBsZSBub25jZQ==");

    let parsed = parse_request(&buf, max_bytes);
    match &parsed {
        Ok(None) => assert!(buf.len() < max_bytes, "incomplete but over the limit"),
        Ok(Some((request, len))) => {
            let len = *len;
            assert!(len <= buf.len() && len <= max_bytes, "length {len}");
            assert_eq!(
                parse_request(&buf[..len], max_bytes),
                parsed,
                "header block alone"
            );
            let cut = usize::from(input.cut) % len;
            assert_eq!(
                parse_request(&buf[..cut], max_bytes),
                Ok(None),
                "prefix of {cut} bytes"
            );
            if let HttpRequest::Upgrade { key, origin, .. } = request {
                check_upgrade(key, origin.as_deref(), &input.allowed_origins);
            }
        }
        Err(error) => check_refusal(error),
    }
});

fn check_upgrade(key: &str, origin: Option<&str>, allowed: &[String]) {
    assert_eq!(key.len(), 24, "key {key:?}");
    let response = accept_response(key);
    assert_eq!(parse_response(&response, key), Ok(Some(response.len())));

    let allowed_here = match origin {
        None => true,
        Some(origin) => {
            allowed.is_empty() || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
        }
    };
    match check_origin(origin, allowed) {
        Ok(()) => assert!(allowed_here, "origin {origin:?} let through"),
        Err(error) => {
            assert!(!allowed_here, "origin {origin:?} refused");
            assert_eq!(error.status(), 403);
            check_refusal(&error);
        }
    }
}

/// The refusal's response is a well-formed HTTP response with the refusal's status.
fn check_refusal(error: &HandshakeError) {
    let response = error.response();
    assert!(matches!(error.status(), 400 | 403 | 405 | 426 | 431));
    assert_eq!(
        parse_response(&response, "any"),
        Err(UpgradeRejected::Status(error.status()))
    );
}
