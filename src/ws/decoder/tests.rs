//! Decoder tests on byte literals, each fed whole and split at every byte boundary.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::ws::frame::{encode_masked, encode_unmasked, Opcode};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Feeds `wire` split at every boundary and checks every split decodes alike.
fn decode_all(role: Role, max: usize, wire: &[u8]) -> Result<Vec<Incoming>, ProtocolError> {
    alike_at_every_split(wire, |chunks| decode_chunks(role, max, chunks))
}

/// Decodes `wire` whole and split at every boundary with `decode`; every split must
/// give what the whole gives, which is returned.
fn alike_at_every_split(
    wire: &[u8],
    decode: impl Fn(&[&[u8]]) -> Result<Vec<Incoming>, ProtocolError>,
) -> Result<Vec<Incoming>, ProtocolError> {
    let whole = decode(&[wire]);
    for cut in 0..=wire.len() {
        let split = decode(&[&wire[..cut], &wire[cut..]]);
        assert_eq!(split, whole, "split at {cut}");
    }
    whole
}

fn decode_chunks(role: Role, max: usize, chunks: &[&[u8]]) -> Result<Vec<Incoming>, ProtocolError> {
    decode_chunks_with(Decoder::new(role, max), chunks)
}

/// Feeds `chunks` one after another to `decoder`, collecting what it returns.
fn decode_chunks_with(
    mut decoder: Decoder,
    chunks: &[&[u8]],
) -> Result<Vec<Incoming>, ProtocolError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(item) = decoder.decode(&mut buf)? {
            out.push(item);
        }
    }
    assert!(
        buf.is_empty() || decoder.bytes_wanted() > buf.len(),
        "stalled with a full frame"
    );
    Ok(out)
}

fn client_frame(opcode: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
    encode_masked(opcode, fin, payload, MASK).to_vec()
}

fn text(s: &str) -> Incoming {
    Incoming::Text(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn rfc_example_masked_hello_decodes() {
    // RFC 6455 §5.7: a single-frame masked text message containing "Hello".
    let wire = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        decode_all(Role::Server, 1024, &wire),
        Ok(vec![text("Hello")])
    );
}

#[test]
fn rfc_example_unmasked_hello_decodes_in_client_role() {
    let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(
        decode_all(Role::Client, 1024, &wire),
        Ok(vec![text("Hello")])
    );
}

#[test]
fn fragments_with_interleaved_ping_reassemble() {
    let mut wire = client_frame(Opcode::Text, false, b"Hel");
    wire.extend(client_frame(Opcode::Ping, true, b"p"));
    wire.extend(client_frame(Opcode::Continuation, false, b"l"));
    wire.extend(client_frame(Opcode::Continuation, true, b"o"));
    let expected = vec![Incoming::Ping(Bytes::from_static(b"p")), text("Hello")];
    assert_eq!(decode_all(Role::Server, 1024, &wire), Ok(expected));
}

#[test]
fn lengths_of_126_and_65536_bytes_use_extended_forms() {
    for len in [125usize, 126, 65535, 65536] {
        let payload = vec![b'x'; len];
        let wire = client_frame(Opcode::Binary, true, &payload);
        let got = decode_chunks(Role::Server, 1 << 20, &[&wire]).unwrap();
        assert_eq!(got, vec![Incoming::Binary(Bytes::from(payload))]);
    }
}

#[test]
fn unmasked_client_frame_is_a_protocol_error() {
    let wire = encode_unmasked(Opcode::Text, b"hi");
    assert_eq!(
        decode_all(Role::Server, 1024, &wire),
        Err(ProtocolError::UnmaskedClientFrame)
    );
}

#[test]
fn masked_server_frame_is_a_protocol_error() {
    let wire = client_frame(Opcode::Text, true, b"hi");
    assert_eq!(
        decode_all(Role::Client, 1024, &wire),
        Err(ProtocolError::MaskedServerFrame)
    );
}

#[test]
fn reserved_bits_and_opcodes_are_protocol_errors() {
    let mut wire = client_frame(Opcode::Text, true, b"hi");
    wire[0] |= 0x40;
    assert_eq!(
        decode_all(Role::Server, 1024, &wire),
        Err(ProtocolError::ReservedBits)
    );
    for opcode in [3u8, 7, 0xB, 0xF] {
        let mut wire = client_frame(Opcode::Text, true, b"");
        wire[0] = 0x80 | opcode;
        assert_eq!(
            decode_all(Role::Server, 1024, &wire),
            Err(ProtocolError::ReservedOpcode(opcode))
        );
    }
}

#[test]
fn control_frame_rules_are_enforced() {
    let wire = client_frame(Opcode::Ping, false, b"");
    assert_eq!(
        decode_all(Role::Server, 1024, &wire),
        Err(ProtocolError::FragmentedControlFrame)
    );
    let wire = client_frame(Opcode::Ping, true, &[0; 126]);
    assert_eq!(
        decode_all(Role::Server, 1024, &wire),
        Err(ProtocolError::ControlFrameTooLong(126))
    );
}

#[test]
fn continuation_without_start_and_new_message_inside_fragments_are_errors() {
    let wire = client_frame(Opcode::Continuation, true, b"x");
    assert_eq!(
        decode_all(Role::Server, 1024, &wire),
        Err(ProtocolError::UnexpectedContinuation)
    );
    let mut wire = client_frame(Opcode::Text, false, b"a");
    wire.extend(client_frame(Opcode::Text, true, b"b"));
    assert_eq!(
        decode_all(Role::Server, 1024, &wire),
        Err(ProtocolError::ExpectedContinuation)
    );
}

#[test]
fn close_payloads_are_validated() {
    let ok = client_frame(Opcode::Close, true, b"\x03\xe8bye");
    assert_eq!(
        decode_all(Role::Server, 1024, &ok),
        Ok(vec![Incoming::Close(Some((
            1000,
            Bytes::from_static(b"bye")
        )))])
    );
    let empty = client_frame(Opcode::Close, true, b"");
    assert_eq!(
        decode_all(Role::Server, 1024, &empty),
        Ok(vec![Incoming::Close(None)])
    );
    let short = client_frame(Opcode::Close, true, b"\x03");
    assert_eq!(
        decode_all(Role::Server, 1024, &short),
        Err(ProtocolError::CloseFrameTooShort)
    );
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let wire = client_frame(Opcode::Close, true, &code.to_be_bytes());
        assert_eq!(
            decode_all(Role::Server, 1024, &wire),
            Err(ProtocolError::InvalidCloseCode(code)),
            "code {code}"
        );
    }
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let wire = client_frame(Opcode::Close, true, &code.to_be_bytes());
        assert!(decode_all(Role::Server, 1024, &wire).is_ok(), "code {code}");
    }
    let bad_reason = client_frame(Opcode::Close, true, b"\x03\xe8\xff");
    assert_eq!(
        decode_all(Role::Server, 1024, &bad_reason),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn invalid_utf8_is_1007_even_across_fragments() {
    let mut wire = client_frame(Opcode::Text, false, "κό".as_bytes());
    wire.extend(client_frame(Opcode::Continuation, true, b"\xed\xa0\x80"));
    let err = decode_all(Role::Server, 1024, &wire).unwrap_err();
    assert_eq!(err, ProtocolError::InvalidUtf8);
    assert_eq!(err.close_code(), 1007);
}

#[test]
fn character_split_across_fragments_is_valid() {
    let emoji = "😀".as_bytes();
    let mut wire = client_frame(Opcode::Text, false, &emoji[..1]);
    wire.extend(client_frame(Opcode::Continuation, false, &emoji[1..3]));
    wire.extend(client_frame(Opcode::Continuation, true, &emoji[3..]));
    assert_eq!(decode_all(Role::Server, 1024, &wire), Ok(vec![text("😀")]));
}

#[test]
fn invalid_utf8_fails_before_the_frame_is_complete() {
    let mut payload = b"\xce\xba\xff".to_vec();
    payload.extend_from_slice(&[b'a'; 100]);
    let wire = client_frame(Opcode::Text, true, &payload);
    let mut decoder = Decoder::new(Role::Server, 1024);
    let mut buf = BytesMut::from(&wire[..10]);
    assert_eq!(decoder.decode(&mut buf), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn message_over_the_limit_is_1009_before_its_payload_arrives() {
    let wire = client_frame(Opcode::Binary, true, &[0; 2000]);
    let mut decoder = Decoder::new(Role::Server, 1000);
    let mut buf = BytesMut::from(&wire[..8]);
    let err = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(err.close_code(), 1009);
    // The limit applies to the reassembled message, not just one frame.
    let mut wire = client_frame(Opcode::Binary, false, &[0; 600]);
    wire.extend(client_frame(Opcode::Continuation, true, &[0; 600]));
    assert!(matches!(
        decode_all(Role::Server, 1000, &wire),
        Err(ProtocolError::MessageTooBig {
            len: 1200,
            max: 1000
        })
    ));
}

#[test]
fn bytes_wanted_reports_the_whole_frame_once_the_header_is_in() {
    let wire = client_frame(Opcode::Binary, true, &[7; 300]);
    let mut decoder = Decoder::new(Role::Server, 1024);
    let mut buf = BytesMut::from(&wire[..20]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.bytes_wanted(), wire.len());
}

#[test]
fn several_frames_in_one_buffer_decode_in_order() {
    let mut wire = client_frame(Opcode::Text, true, b"one");
    wire.extend(client_frame(Opcode::Binary, true, b"two"));
    wire.extend(client_frame(Opcode::Pong, true, b""));
    let expected = vec![
        text("one"),
        Incoming::Binary(Bytes::from_static(b"two")),
        Incoming::Pong(Bytes::new()),
    ];
    assert_eq!(decode_all(Role::Server, 1024, &wire), Ok(expected));
}

/// Decodes `wire` (split at every boundary) with permessage-deflate negotiated.
fn decode_deflate(max: usize, wire: &[u8]) -> Result<Vec<Incoming>, ProtocolError> {
    alike_at_every_split(wire, |chunks| {
        let mut decoder = Decoder::new(Role::Server, max);
        decoder.enable_deflate();
        decode_chunks_with(decoder, chunks)
    })
}

/// A masked frame with RSV1 set (a compressed message's first frame).
fn compressed_frame(opcode: Opcode, fin: bool, body: &[u8]) -> Vec<u8> {
    let mut frame = client_frame(opcode, fin, body);
    frame[0] |= 0x40;
    frame
}

#[test]
fn compressed_text_inflates_whole_and_fragmented() {
    let message = "héllo ".repeat(30);
    let body = crate::ws::deflate::compress_payload(message.as_bytes());
    let whole = compressed_frame(Opcode::Text, true, &body);
    assert_eq!(decode_deflate(1024, &whole), Ok(vec![text(&message)]));
    let (first, rest) = body.split_at(body.len() / 2);
    let mut wire = compressed_frame(Opcode::Text, false, first);
    wire.extend(client_frame(Opcode::Ping, true, b"p"));
    wire.extend(client_frame(Opcode::Continuation, true, rest));
    assert_eq!(
        decode_deflate(1024, &wire),
        Ok(vec![
            Incoming::Ping(Bytes::from_static(b"p")),
            text(&message)
        ])
    );
}

#[test]
fn rsv1_is_refused_where_deflate_does_not_allow_it() {
    let body = crate::ws::deflate::compress_payload(b"hello hello hello");
    // Not negotiated: 1002 as before.
    let wire = compressed_frame(Opcode::Text, true, &body);
    assert_eq!(
        decode_all(Role::Server, 1024, &wire),
        Err(ProtocolError::ReservedBits)
    );
    // Negotiated: never on control or continuation frames, RSV2/RSV3 never.
    let ping = compressed_frame(Opcode::Ping, true, b"");
    assert_eq!(
        decode_deflate(1024, &ping),
        Err(ProtocolError::MisplacedRsv1)
    );
    let mut wire = compressed_frame(Opcode::Text, false, &body);
    wire.extend(compressed_frame(Opcode::Continuation, true, b""));
    assert_eq!(
        decode_deflate(1024, &wire),
        Err(ProtocolError::MisplacedRsv1)
    );
    let mut rsv2 = client_frame(Opcode::Text, true, b"x");
    rsv2[0] |= 0x20;
    assert_eq!(
        decode_deflate(1024, &rsv2),
        Err(ProtocolError::ReservedBits)
    );
}

#[test]
fn inflated_message_over_the_limit_is_1009() {
    let body = crate::ws::deflate::compress_payload(&[b'a'; 5000]);
    let wire = compressed_frame(Opcode::Binary, true, &body);
    let error = decode_deflate(4096, &wire).unwrap_err();
    assert_eq!(error.close_code(), 1009);
}

#[test]
fn invalid_utf8_inside_compressed_text_is_1007() {
    let body = crate::ws::deflate::compress_payload(&[0xff; 100]);
    let wire = compressed_frame(Opcode::Text, true, &body);
    assert_eq!(decode_deflate(1024, &wire), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn a_small_payload_owns_its_bytes_and_a_large_one_shares_the_read_buffer() {
    for (len, shares) in [(10, false), (COPY_AT_MOST, false), (COPY_AT_MOST + 1, true)] {
        let payload = vec![b'a'; len];
        let mut buf = BytesMut::with_capacity(2 * len + 64);
        buf.extend_from_slice(&client_frame(Opcode::Binary, true, &payload));
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.capacity();
        let mut decoder = Decoder::new(Role::Server, 1 << 20);
        let Some(Incoming::Binary(got)) = decoder.decode(&mut buf).unwrap() else {
            panic!("a binary message");
        };
        assert_eq!(got, Bytes::from(payload), "len {len}");
        assert_eq!(
            range.contains(&(got.as_ptr() as usize)),
            shares,
            "len {len}: shares the read buffer"
        );
    }
}
