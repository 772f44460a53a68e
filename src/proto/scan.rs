//! The room protocol as the load tool speaks it on its hot path: the requests it sends
//! (`join_room`, `room_message` written into a template) and a scan of the server's
//! messages that picks out the fields it checks without building a tree (no
//! allocation, no unescaping). Why a scanner and not [`ServerMessage::parse`]: the
//! load tool must outrun the server it measures, and the scan is several times faster
//! on the messages it reads most (`cargo bench --bench json -- scan`, BENCHMARKS.md).
//! It decides nothing; the load tool's `rooms` state does.
//!
//! [`ServerMessage::parse`]: super::ServerMessage::parse

/// A server message's fields the load tool looks at. Strings are the raw bytes between
/// the quotes (escapes left as they are: every name the tool compares is plain ASCII);
/// `message` is the raw JSON value. Fields in any order; unknown fields are skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notice<'a> {
    pub kind: &'a [u8],
    pub room: Option<&'a [u8]>,
    pub from: Option<&'a [u8]>,
    pub client_id: Option<&'a [u8]>,
    pub message: Option<&'a [u8]>,
    pub members: Option<u64>,
    pub total_members: Option<u64>,
}

/// Scans one JSON object. `None` if it is not an object with a string `type`, or is
/// malformed in a way the scan notices (it does not validate skipped values fully).
pub fn scan(payload: &[u8]) -> Option<Notice<'_>> {
    let mut at = skip_ws(payload, 0);
    if payload.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(payload, at + 1);
    let mut notice = Notice::default();
    let mut kind = None;
    if payload.get(at) == Some(&b'}') {
        return None;
    }
    loop {
        if payload.get(at) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(payload, at)?;
        let key = &payload[at + 1..key_end - 1];
        at = skip_ws(payload, key_end);
        if payload.get(at) != Some(&b':') {
            return None;
        }
        at = skip_ws(payload, at + 1);
        let value_end = value_end(payload, at)?;
        let value = &payload[at..value_end];
        match key {
            b"type" => kind = Some(string_contents(value)?),
            b"room" => notice.room = string_contents(value),
            b"from" => notice.from = string_contents(value),
            b"client_id" => notice.client_id = string_contents(value),
            b"message" => notice.message = Some(value),
            b"members" => notice.members = number(value),
            b"total_members" => notice.total_members = number(value),
            _ => {}
        }
        at = skip_ws(payload, value_end);
        match payload.get(at) {
            Some(b',') => at = skip_ws(payload, at + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    notice.kind = kind?;
    Some(notice)
}

fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The index just past the string that opens at `start` (a `"`).
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    loop {
        at += quote_or_backslash(bytes.get(at..)?)?;
        if bytes[at] == b'"' {
            return Some(at + 1);
        }
        at += 2;
    }
}

/// The first `"` or `\\` in `bytes`, eight bytes at a time (SWAR): the scan runs over
/// every key and string of every delivery (one byte at a time, scanning was a quarter
/// of the load tool in `rooms`).
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("chunks of 8"));
        let (quote, backslash) = (word ^ (ONES * 0x22), word ^ (ONES * 0x5C));
        // A byte of `x` is zero where the high bit of (x - 1) & !x is set; only bytes
        // above the first zero can be flagged wrongly, and the lowest flag is taken.
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & (ONES * 0x80);
        let found = zero(quote) | zero(backslash);
        if found != 0 {
            return Some(offset + found.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    let rest = words.remainder();
    rest.iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|i| offset + i)
}

/// The index just past the JSON value that starts at `start`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => string_end(bytes, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut at = start;
            loop {
                match bytes.get(at)? {
                    b'"' => {
                        at = string_end(bytes, at)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        _ => {
            let len = bytes[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(bytes.len() - start);
            (len > 0).then_some(start + len)
        }
    }
}

/// The bytes between the quotes of a JSON string value; `None` for any other value.
pub fn string_contents(value: &[u8]) -> Option<&[u8]> {
    match value {
        [b'"', inner @ .., b'"'] => Some(inner),
        _ => None,
    }
}

/// A JSON non-negative integer: digits only, no sign, no fraction, no overflow.
fn number(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// A `join_room` request for `room` (a plain ASCII name the tool chose).
pub fn join_room(room: &str) -> Vec<u8> {
    format!("{{\"type\":\"join_room\",\"room\":\"{room}\"}}").into_bytes()
}

/// The fixed parts of one publisher's `room_message` requests: the `message` string is
/// written between them (`fill` gives it its bytes, which must need no escaping).
#[derive(Clone, Debug)]
pub struct RoomMessageTemplate {
    prefix: Vec<u8>,
}

const SUFFIX: &[u8] = b"\"}";

impl RoomMessageTemplate {
    pub fn new(room: &str) -> Self {
        RoomMessageTemplate {
            prefix: format!("{{\"type\":\"room_message\",\"room\":\"{room}\",\"message\":\"")
                .into_bytes(),
        }
    }

    /// Length of the request whose `message` string has `body` bytes.
    pub fn len(&self, body: usize) -> usize {
        self.prefix.len() + body + SUFFIX.len()
    }

    /// Writes the request into `out` (exactly [`Self::len`] bytes), the message body by `fill`.
    pub fn write(&self, out: &mut [u8], fill: impl FnOnce(&mut [u8])) {
        let body_end = out.len() - SUFFIX.len();
        out[..self.prefix.len()].copy_from_slice(&self.prefix);
        fill(&mut out[self.prefix.len()..body_end]);
        out[body_end..].copy_from_slice(SUFFIX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ringcast_room_message_is_scanned() {
        let json = br#"{"type":"room_message","room":"load-3","from":"client_0_5_1","message":"M00","timestamp":1700000000}"#;
        let n = scan(json).unwrap();
        assert_eq!(n.kind, b"room_message");
        assert_eq!(n.room, Some(&b"load-3"[..]));
        assert_eq!(n.from, Some(&b"client_0_5_1"[..]));
        assert_eq!(n.message, Some(&br#""M00""#[..]));
        assert_eq!(
            (n.members, n.total_members, n.client_id),
            (None, None, None)
        );
    }

    #[test]
    fn fields_in_any_order_with_spaces_and_nested_values_are_scanned() {
        let json =
            br#" { "timestamp" : 5 , "message" : {"a":[1,"}",{"b":"\""}]}, "total_members":7,
            "extra":[[]], "client_id":"c\"1", "type" : "member_joined" } "#;
        let n = scan(json).unwrap();
        assert_eq!(n.kind, b"member_joined");
        assert_eq!(n.total_members, Some(7));
        assert_eq!(n.client_id, Some(&br#"c\"1"#[..]));
        assert_eq!(n.message, Some(&br#"{"a":[1,"}",{"b":"\""}]}"#[..]));
        let n = scan(br#"{"members":12,"room":"r","type":"room_joined"}"#).unwrap();
        assert_eq!((n.kind, n.members), (&b"room_joined"[..], Some(12)));
    }

    #[test]
    fn what_is_not_an_object_with_a_string_type_is_refused() {
        for bad in [
            &br#"[1,2]"#[..],
            br#"{}"#,
            br#"{"type":3}"#,
            br#"{"room":"x"}"#,
            br#"{"type":"welcome""#,
            br#"{"type" "welcome"}"#,
            br#"{"type":"welcome",}"#,
            br#"{"type":"welcome" "a":1}"#,
            br#"{"type":"welcome","a":}"#,
            br#"{"type":"welcome","a":"unterminated}"#,
            b"",
        ] {
            assert_eq!(scan(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn counts_are_plain_json_integers() {
        let members = |value: &str| {
            let json = format!(r#"{{"type":"room_joined","members":{value}}}"#);
            scan(json.as_bytes()).unwrap().members
        };
        assert_eq!(members("0"), Some(0));
        assert_eq!(members("18446744073709551615"), Some(u64::MAX));
        for not_a_count in [
            "18446744073709551616",
            "-1",
            "+1",
            "1.5",
            "1e3",
            "null",
            "true",
        ] {
            assert_eq!(members(not_a_count), None, "{not_a_count}");
        }
    }

    #[test]
    fn long_strings_with_escapes_anywhere_end_at_their_closing_quote() {
        for escape_at in [0, 1, 15, 16, 31, 32, 63, 64, 99] {
            let mut message = "x".repeat(100);
            message.insert_str(escape_at, r#"\"\\"#);
            let json = format!(r#"{{"message":"{message}","type":"room_message","room":"r"}}"#);
            let n = scan(json.as_bytes()).unwrap();
            assert_eq!(n.message, Some(format!(r#""{message}""#).as_bytes()));
            assert_eq!((n.kind, n.room), (&b"room_message"[..], Some(&b"r"[..])));
        }
    }

    #[test]
    fn quotes_and_backslashes_are_found_at_every_position_among_any_bytes() {
        for len in 0..40 {
            for at in 0..len {
                for target in [b'"', b'\\'] {
                    for filler in [b'a', 0x00, 0x21, 0x23, 0x5B, 0x5D, 0xA2, 0xDC, 0xFF] {
                        let mut bytes = vec![filler; len];
                        bytes[at] = target;
                        let one_by_one = bytes.iter().position(|&b| b == b'"' || b == b'\\');
                        assert_eq!(quote_or_backslash(&bytes), one_by_one, "{bytes:?}");
                        assert_eq!(one_by_one, Some(at));
                    }
                }
            }
            assert_eq!(quote_or_backslash(&vec![b'x'; len]), None);
        }
        // Both present: the first wins, whichever it is.
        assert_eq!(quote_or_backslash(b"abcdefgh\\ij\"k"), Some(8));
        assert_eq!(quote_or_backslash(b"ab\"cdefgh\\ij"), Some(2));
    }

    #[test]
    fn a_field_of_the_wrong_type_reads_as_absent() {
        let n = scan(br#"{"type":"room_joined","room":5,"members":"3"}"#).unwrap();
        assert_eq!((n.room, n.members), (None, None));
    }

    #[test]
    fn requests_are_the_json_the_protocol_names() {
        let join: serde_json::Value = serde_json::from_slice(&join_room("load-0")).unwrap();
        assert_eq!(
            join,
            serde_json::json!({"type":"join_room","room":"load-0"})
        );
        let template = RoomMessageTemplate::new("load-7");
        let mut out = vec![0; template.len(5)];
        template.write(&mut out, |body| body.copy_from_slice(b"hello"));
        let sent: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"type":"room_message","room":"load-7","message":"hello"})
        );
    }
}
