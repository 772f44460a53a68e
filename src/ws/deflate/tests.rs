use bytes::Bytes;

use super::*;
use crate::ws::frame::encode_unmasked;

fn offer(value: &str) -> Option<Agreement> {
    negotiate([value.as_bytes()])
}

#[test]
fn plain_offer_is_accepted_without_context_takeover_both_ways() {
    let agreement = offer("permessage-deflate").expect("accepted");
    assert_eq!(agreement.server_max_window_bits, 15);
    assert_eq!(
        agreement.response_header(),
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
    );
}

#[test]
fn offer_with_every_parameter_is_accepted_and_window_bits_echoed() {
    let agreement = offer(
        "permessage-deflate; client_max_window_bits; server_max_window_bits=10; \
         server_no_context_takeover; client_no_context_takeover",
    )
    .expect("accepted");
    assert_eq!(agreement.server_max_window_bits, 10);
    assert!(agreement
        .response_header()
        .ends_with("; server_max_window_bits=10\r\n"));
    assert!(offer("permessage-deflate; client_max_window_bits=\"9\"").is_some());
}

#[test]
fn bad_offers_are_declined_and_the_next_one_taken() {
    for bad in [
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; mystery",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    ] {
        assert_eq!(offer(bad), None, "{bad}");
    }
    let agreement = negotiate([
        b"permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=9"
            .as_slice(),
    ])
    .expect("second offer");
    assert_eq!(agreement.server_max_window_bits, 9);
}

#[test]
fn window_limits_which_payloads_go_compressed() {
    assert!(Agreement::fits_window(15, 10_000_000));
    assert!(Agreement::fits_window(8, 256));
    assert!(!Agreement::fits_window(8, 257));
}

#[test]
fn compressed_frame_round_trips_and_has_rsv1() {
    let payload = "{\"type\":\"room_message\",\"room\":\"lobby\"}".repeat(20);
    let frame = compress_frame(Opcode::Text, payload.as_bytes()).expect("compressible");
    assert_eq!(frame[0], 0xC1, "FIN, RSV1, text");
    let body = &frame[2 + usize::from(frame[1] == 126) * 2..];
    let inflated = inflate_message(body, 1 << 20).unwrap();
    assert_eq!(inflated, payload.as_bytes());
}

#[test]
fn small_and_incompressible_payloads_stay_plain() {
    assert_eq!(
        compress_frame(Opcode::Text, &[b'a'; MIN_COMPRESS_BYTES - 1]),
        None
    );
    let mut noise = vec![0u8; 1000];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for byte in &mut noise {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    assert_eq!(compress_frame(Opcode::Binary, &noise), None);
}

#[test]
fn out_frames_of_every_encoding_compress() {
    let payload = Bytes::from(vec![b'x'; 70_000]);
    for frame in [
        OutFrame::new(Opcode::Binary, payload.clone()),
        OutFrame::preencoded(encode_unmasked(Opcode::Binary, &payload)),
        OutFrame::preencoded(encode_unmasked(Opcode::Text, &payload[..300])),
    ] {
        let (compressed, len) = compress_out_frame(&frame).expect("compressed");
        assert_eq!(compressed.payload[0] & 0x40, 0x40);
        assert!(len == 70_000 || len == 300);
    }
    // Control frames and two frames in one buffer are left alone.
    assert!(compress_out_frame(&OutFrame::new(Opcode::Ping, payload.slice(..100))).is_none());
    let mut two = encode_unmasked(Opcode::Text, &payload[..100]).to_vec();
    two.extend_from_slice(&encode_unmasked(Opcode::Text, &payload[..100]));
    assert!(compress_out_frame(&OutFrame::preencoded(two.into())).is_none());
}

#[test]
fn inflating_past_the_limit_stops_at_the_limit() {
    // 10 MB of zeros compresses over 100 times.
    let bomb = compress_payload(&vec![0u8; 10_000_000]);
    assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
    assert_eq!(
        inflate_message(&bomb, 65_536),
        Err(InflateError::TooBig(65_536))
    );
    assert_eq!(
        inflate_message(&bomb, 10_000_000).unwrap().len(),
        10_000_000
    );
}

#[test]
fn corrupt_data_is_an_error() {
    assert_eq!(
        inflate_message(&[0xff, 0xff, 0xff], 1000),
        Err(InflateError::Corrupt)
    );
}

/// The room JSON of BENCHMARKS.md ("Compression"): a `room_message` as the rooms app
/// sends it, carrying a 64-byte message as `ringcast load rooms -s 64` writes it.
#[test]
fn room_message_json_shrinks_by_a_third() {
    let message = format!("{:.<64}", "r00000003000000000000002a0000018f3c2b1a40");
    let json = format!(
        r#"{{"type":"room_message","room":"room-3","from":"client_0_1_7","message":"{message}","timestamp":1764877200123,"offset":42}}"#
    );
    let plain = encode_unmasked(Opcode::Text, json.as_bytes()).len();
    let compressed = compress_frame(Opcode::Text, json.as_bytes()).unwrap().len();
    eprintln!("room_message frame: {plain} bytes plain, {compressed} compressed");
    assert!(compressed * 3 < plain * 2, "{compressed} of {plain}");
}

/// Text-like data with some randomness: long enough matches and literals both.
fn sample_data(len: usize, seed: u64, noise: u64) -> Vec<u8> {
    let words = [
        "faust ",
        "mephisto ",
        "gretchen ",
        "der ",
        "die ",
        "und ",
        "0x3f ",
        "\n",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if noise == 6 {
            // Autobahn 12.2-like: a random byte, a space or an `e`, a third each.
            out.push([(x >> 40) as u8, b' ', b'e'][(x % 3) as usize]);
        } else if x % 5 < noise {
            out.push((x >> 32) as u8);
        } else {
            out.extend_from_slice(words[(x % 8) as usize].as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Regression: Autobahn 12.2.9 and 12.5.x got messages of 64 and 128 KiB back short
/// (the inflate loop stopped while the inflater still held output).
#[test]
fn large_messages_round_trip_against_an_independent_codec() {
    use std::io::{Read, Write};
    for (len, noise) in [1000, 32_768, 65_536, 100_000, 131_072, 1 << 20]
        .into_iter()
        .flat_map(|len| (1..=6).map(move |noise| (len, noise)))
    {
        let data = sample_data(len, len as u64, noise);
        // Ours compressed, flate2's reader inflates.
        let mut ours = compress_payload(&data);
        ours.extend_from_slice(&TAIL);
        let mut inflated = Vec::new();
        let mut reader = flate2::read::DeflateDecoder::new(&ours[..]);
        let _ = reader.read_to_end(&mut inflated);
        assert_eq!(inflated.len(), len, "compressed by us, {len} bytes");
        assert!(inflated == data);
        // flate2's writer compressed (sync flush), ours inflates.
        let mut writer = flate2::write::DeflateEncoder::new(Vec::new(), Compression::best());
        writer.write_all(&data).unwrap();
        writer.flush().unwrap();
        let mut theirs = writer.get_ref().clone();
        assert!(theirs.ends_with(&TAIL));
        theirs.truncate(theirs.len() - 4);
        let ours = inflate_message(&theirs, 1 << 21).unwrap();
        assert_eq!(ours.len(), len, "inflated by us, {len} bytes");
        assert!(ours == data);
    }
}
