//! Handshake tests on byte literals, including every split of a valid request.

use super::*;

const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request(lines: &[&str]) -> Vec<u8> {
    let mut out = lines.join("\r\n");
    out.push_str("\r\n\r\n");
    out.into_bytes()
}

fn valid() -> Vec<u8> {
    request(&[
        "GET /chat HTTP/1.1",
        "Host: server.example.com",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        &format!("Sec-WebSocket-Key: {RFC_KEY}"),
        "Sec-WebSocket-Version: 13",
        "Origin: http://example.com",
    ])
}

#[test]
fn valid_upgrade_parses_at_every_split_and_keeps_pipelined_bytes() {
    let mut wire = valid();
    let head_len = wire.len();
    wire.extend_from_slice(b"\x81\x80");
    for cut in 0..head_len {
        assert_eq!(parse_request(&wire[..cut], 8192), Ok(None), "cut {cut}");
    }
    let (req, len) = parse_request(&wire, 8192).unwrap().unwrap();
    assert_eq!(len, head_len);
    assert_eq!(
        req,
        HttpRequest::Upgrade {
            key: RFC_KEY.into(),
            path: "/chat".into(),
            origin: Some("http://example.com".into()),
            authorization: None,
        }
    );
}

#[test]
fn origins_are_checked_only_against_a_non_empty_allow_list() {
    let allowed = vec!["https://chat.example.com".to_string()];
    assert_eq!(check_origin(Some("https://evil.example"), &[]), Ok(()));
    assert_eq!(check_origin(None, &allowed), Ok(()));
    assert_eq!(
        check_origin(Some("https://chat.example.com"), &allowed),
        Ok(())
    );
    assert_eq!(
        check_origin(Some("HTTPS://Chat.Example.com"), &allowed),
        Ok(())
    );
    for refused in [
        "https://evil.example",
        "http://chat.example.com",
        "null",
        "",
    ] {
        let error = check_origin(Some(refused), &allowed).unwrap_err();
        assert_eq!(error, HandshakeError::OriginNotAllowed(refused.into()));
        assert_eq!(error.status(), 403);
        assert!(error.response().starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
    }
}

#[test]
fn accept_response_carries_the_rfc_accept_key() {
    let response = String::from_utf8(accept_response(RFC_KEY)).unwrap();
    assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
}

#[test]
fn refusals_map_to_their_http_status() {
    let key = format!("Sec-WebSocket-Key: {RFC_KEY}");
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"garbage\r\n\r\n".to_vec(), 400),
        (request(&["POST / HTTP/1.1", "Upgrade: websocket"]), 405),
        (request(&["GET / HTTP/1.0", "Upgrade: websocket"]), 400),
        (request(&["GET /chat HTTP/1.1", "Host: x"]), 426),
        (
            request(&[
                "GET / HTTP/1.1",
                "Upgrade: websocket",
                "Sec-WebSocket-Version: 13",
                &key,
            ]),
            400,
        ),
        (
            request(&[
                "GET / HTTP/1.1",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 8",
                &key,
            ]),
            426,
        ),
        (
            request(&[
                "GET / HTTP/1.1",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 13",
            ]),
            400,
        ),
        (
            request(&[
                "GET / HTTP/1.1",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: short",
            ]),
            400,
        ),
    ];
    for (wire, status) in cases {
        let err = parse_request(&wire, 8192).unwrap_err();
        assert_eq!(err.status(), status, "{}", String::from_utf8_lossy(&wire));
        let response = String::from_utf8(err.response()).unwrap();
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{response}"
        );
        assert!(response.contains("Connection: close\r\n"));
    }
}

#[test]
fn wrong_version_answer_names_version_13() {
    let err = HandshakeError::UnsupportedVersion;
    assert!(String::from_utf8(err.response())
        .unwrap()
        .contains("Sec-WebSocket-Version: 13\r\n"));
}

#[test]
fn oversized_header_block_is_431_without_waiting_for_its_end() {
    let mut wire = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
    wire.extend(std::iter::repeat_n(b'a', 9000));
    assert_eq!(
        parse_request(&wire, 8192),
        Err(HandshakeError::HeadersTooLarge(8192))
    );
    let many: Vec<String> = (0..40).map(|i| format!("X-{i}: v")).collect();
    let mut lines = vec!["GET / HTTP/1.1"];
    lines.extend(many.iter().map(String::as_str));
    assert_eq!(
        parse_request(&request(&lines), 8192).unwrap_err().status(),
        431
    );
}

#[test]
fn healthz_without_upgrade_is_a_health_check() {
    let wire = request(&["GET /healthz HTTP/1.1", "Host: x"]);
    assert_eq!(
        parse_request(&wire, 8192),
        Ok(Some((HttpRequest::Health, wire.len())))
    );
    assert!(health_response().starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn metrics_without_upgrade_is_a_metrics_request() {
    let wire = request(&["GET /metrics HTTP/1.1", "Host: x"]);
    assert_eq!(
        parse_request(&wire, 8192),
        Ok(Some((HttpRequest::Metrics, wire.len())))
    );
    let response = metrics_response("a 1\n");
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(response.ends_with(b"Content-Length: 4\r\nConnection: close\r\n\r\na 1\n"));
    // Any other path without an upgrade is still refused.
    let other = request(&["GET /stats HTTP/1.1", "Host: x"]);
    assert_eq!(parse_request(&other, 8192).unwrap_err().status(), 426);
}

#[test]
fn client_request_round_trips_through_the_server_parser() {
    let (wire, key) = client_request("127.0.0.1:9", "/room", [7; 16]);
    let (req, _) = parse_request(&wire, 8192).unwrap().unwrap();
    assert_eq!(
        req,
        HttpRequest::Upgrade {
            key: key.clone(),
            path: "/room".into(),
            origin: None,
            authorization: None,
        }
    );
    let response = accept_response(&key);
    assert_eq!(parse_response(&response, &key), Ok(Some(response.len())));
    assert_eq!(parse_response(&response[..10], &key), Ok(None));
    assert_eq!(
        parse_response(&response, RFC_KEY),
        Err(UpgradeRejected::BadAccept)
    );
    let refused = HandshakeError::UnsupportedVersion.response();
    assert_eq!(
        parse_response(&refused, &key),
        Err(UpgradeRejected::Status(426))
    );
}

#[test]
fn extra_client_headers_reach_the_server_parser() {
    let headers = [
        ("Origin", "https://chat.example.com"),
        ("X-Trace", "1"),
        ("Authorization", "Bearer a.b.c"),
    ];
    let (wire, key) = client_request_with_headers("h:1", "/", [3; 16], &headers);
    assert!(wire.ends_with(b"X-Trace: 1\r\nAuthorization: Bearer a.b.c\r\n\r\n"));
    let (req, len) = parse_request(&wire, 8192).unwrap().unwrap();
    assert_eq!(len, wire.len());
    assert_eq!(
        req,
        HttpRequest::Upgrade {
            key,
            path: "/".into(),
            origin: Some("https://chat.example.com".into()),
            authorization: Some("Bearer a.b.c".into()),
        }
    );
}

#[test]
fn base64_of_the_rfc_nonce_matches_the_rfc_key() {
    assert_eq!(base64_16(*b"the sample nonce"), RFC_KEY);
}

#[test]
fn busy_answers_carry_retry_after_and_close_the_connection() {
    for (status, phrase) in [(429, "Too Many Requests"), (503, "Service Unavailable")] {
        let raw = busy_response(status, 5, "server full");
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&raw) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("{other:?}"),
        };
        assert_eq!(response.code, Some(status));
        assert_eq!(response.reason, Some(phrase));
        let header = |name: &str| {
            let h = response.headers.iter().find(|h| h.name == name).unwrap();
            std::str::from_utf8(h.value).unwrap().to_string()
        };
        assert_eq!(header("Retry-After"), "5");
        assert_eq!(header("Connection"), "close");
        assert_eq!(&raw[len..], b"server full\n");
        assert_eq!(header("Content-Length"), (raw.len() - len).to_string());
    }
}
