//! JWT on the upgrade (`jwt_secret`, `jwt_public_key`): tokens from `?token=` and
//! `Authorization: Bearer` accepted; every refusal answered 401 with
//! `WWW-Authenticate: Bearer` and counted by reason in `/metrics`; `sub` as the
//! client's fixed `user`; the `rooms` claim; bad keys refusing to start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ringcast::auth::Secret;
use ringcast::client::UpgradeRequest;
use ringcast::rooms::RoomsApp;
use ringcast::ws::handshake::client_request_with_headers;
use serde_json::{json, Value};

use crate::client::{http_exchange, HttpResponse, TestClient};
use crate::rooms::{error, join_room, room_joined, with_id, RoomClient};
use crate::serve_cli::{serve, stderr_of, wait_exit};
use crate::{start_server, Server};

const SECRET: &str = "integration secret";

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn eddsa(claims: &Value) -> String {
    let pem = std::fs::read(data("jwt-ed25519.key")).unwrap();
    let key = EncodingKey::from_ed_pem(&pem).unwrap();
    encode(&Header::new(Algorithm::EdDSA), claims, &key).unwrap()
}

fn secret_server() -> Server {
    start_server(RoomsApp::configured, 1, |config| {
        config.jwt_secret = Some(Secret(SECRET.into()));
    })
}

fn ed25519_server() -> Server {
    start_server(RoomsApp::configured, 1, |config| {
        config.jwt_public_key = Some(data("jwt-ed25519.pub"));
    })
}

/// A room client whose upgrade carries `token` in the query.
fn connect_as(addr: SocketAddr, token: &str) -> RoomClient {
    let request = UpgradeRequest::new(addr.to_string(), format!("/?token={token}"));
    RoomClient::welcome(TestClient::connect_with(addr, &request))
}

/// The raw answer to an upgrade request for `path` with `headers`.
fn upgrade_answer(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let (request, _) = client_request_with_headers(&addr.to_string(), path, [9; 16], headers);
    http_exchange(addr, &request)
}

/// Checks a 401 answer: `WWW-Authenticate: Bearer...`, the reason in the body.
fn assert_refused(answer: &HttpResponse, body_says: &str) {
    assert_eq!(answer.status, 401, "{answer:?}");
    let challenge = answer.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{answer:?}");
    let body = String::from_utf8_lossy(&answer.body);
    assert!(
        body.contains(body_says),
        "{body:?} should say {body_says:?}"
    );
}

/// `ringcast_auth_refused_total` of core 0 for `reason`, from `/metrics`.
fn refused(addr: SocketAddr, reason: &str) -> u64 {
    let answer = http_exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = String::from_utf8(answer.body).unwrap();
    let series = format!("ringcast_auth_refused_total{{core=\"0\",reason=\"{reason}\"}} ");
    let line = text.lines().find_map(|l| l.strip_prefix(series.as_str()));
    line.unwrap_or_else(|| panic!("no {series} in {text}"))
        .parse()
        .unwrap()
}

#[test]
fn a_token_in_the_query_or_a_bearer_header_is_accepted() {
    let server = secret_server();
    let addr = server.addr();
    let token = hs256(&json!({"sub": "ann", "exp": now() + 60}));
    connect_as(addr, &token).close();
    let request = UpgradeRequest::new(addr.to_string(), "/chat?x=1")
        .header("Authorization", format!("Bearer {token}"));
    RoomClient::welcome(TestClient::connect_with(addr, &request)).close();
    assert_eq!(server.stats().opened, 2);
    assert_eq!(server.stats().rejected_handshakes, 0);
}

#[test]
fn every_bad_token_gets_401_and_is_counted_by_reason() {
    let server = secret_server();
    let addr = server.addr();
    let t = now();
    let good = hs256(&json!({"sub": "ann", "exp": t + 60}));
    let (signed, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", "A".repeat(43));
    let expired = hs256(&json!({"sub": "ann", "exp": t - 31}));
    let early = hs256(&json!({"sub": "ann", "exp": t + 600, "nbf": t + 120}));
    let no_exp = hs256(&json!({"sub": "ann"}));
    let cases = [
        ("/", None, "missing", "no token"),
        ("/?token=", None, "missing", "no token"),
        ("/?token=not.a.jwt", None, "malformed", "not a JWT"),
        ("/", Some("Bearer garbage"), "malformed", "not a JWT"),
        ("/", Some(forged.as_str()), "bad_signature", "signature"),
        ("/", Some(expired.as_str()), "expired", "expired"),
        ("/", Some(early.as_str()), "not_yet_valid", "not valid yet"),
        ("/", Some(no_exp.as_str()), "invalid_claims", "exp"),
    ];
    for (path, token, reason, body_says) in cases {
        let before = refused(addr, reason);
        let bearer = token.map(|t| {
            if t.starts_with("Bearer") {
                t.to_string()
            } else {
                format!("Bearer {t}")
            }
        });
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        assert_refused(&upgrade_answer(addr, path, &headers), body_says);
        assert_eq!(refused(addr, reason), before + 1, "{reason}");
    }
    let stats = server.stats();
    assert_eq!(stats.rejected_handshakes, cases.len() as u64);
    assert_eq!(stats.opened, 0);
    // `/healthz` needs no token.
    let health = http_exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(health.status, 200);
}

#[test]
fn only_the_algorithm_of_the_servers_key_is_accepted() {
    let server = ed25519_server();
    let addr = server.addr();
    let claims = json!({"sub": "ann", "exp": now() + 60});
    connect_as(addr, &eddsa(&claims)).close();
    let hs = hs256(&claims);
    assert_refused(
        &upgrade_answer(addr, &format!("/?token={hs}"), &[]),
        "another algorithm",
    );
    let b64 = |bytes: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    assert_refused(
        &upgrade_answer(addr, &format!("/?token={none}"), &[]),
        "another algorithm",
    );
    assert_eq!(refused(addr, "wrong_algorithm"), 2);
}

#[test]
fn sub_is_the_clients_user_and_cannot_be_changed() {
    let server = secret_server();
    let token = hs256(&json!({"sub": "ann", "exp": now() + 60}));
    let mut ann = connect_as(server.addr(), &token);
    ann.request(
        &json!({"type": "set_metadata", "metadata": {"name": "Ann"}}),
        &json!({"type": "metadata_updated", "metadata": {"user": "ann", "name": "Ann"}}),
    );
    ann.request(
        &json!({"type": "set_metadata", "metadata": {"user": "eve", "x": 1}, "id": 4}),
        &with_id(error("Cannot change user"), json!(4)),
    );
    ann.request(
        &json!({"type": "set_metadata", "metadata": {"user": "ann", "x": 2}}),
        &json!({"type": "metadata_updated", "metadata": {"user": "ann", "name": "Ann", "x": 2}}),
    );
    ann.close();
}

#[test]
fn the_rooms_claim_limits_what_a_client_may_join() {
    let server = secret_server();
    let addr = server.addr();
    let t = now() + 60;
    let mut ann = connect_as(
        addr,
        &hs256(&json!({"sub": "ann", "exp": t, "rooms": ["a"]})),
    );
    ann.join("a", 1);
    ann.request(
        &with_id(join_room("b"), json!("j")),
        &with_id(error("Not allowed to join this room"), json!("j")),
    );
    let mut bo = connect_as(
        addr,
        &hs256(&json!({"sub": "bo", "exp": t, "rooms": ["*"]})),
    );
    bo.request(&join_room("b"), &room_joined("b", 1));
    let mut cy = connect_as(addr, &hs256(&json!({"sub": "cy", "exp": t})));
    cy.request(&join_room("c"), &room_joined("c", 1));
    for client in [ann, bo, cy] {
        client.close();
    }
}

#[test]
fn a_bad_secret_or_key_refuses_to_start() {
    let private_key = data("jwt-ed25519.key").to_string_lossy().into_owned();
    let not_pem = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("Cargo.toml")
        .to_string_lossy()
        .into_owned();
    let cases = [
        (vec!["--jwt-secret", ""], "jwt_secret is empty"),
        (
            vec!["--jwt-public-key", "/nonexistent/key.pem"],
            "cannot read JWT public key /nonexistent/key.pem",
        ),
        (
            vec!["--jwt-public-key", &not_pem],
            "is not a PEM public key",
        ),
        (
            vec!["--jwt-public-key", &private_key],
            "is not a PEM public key",
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["--listen", "127.0.0.1:0", "--cores", "1"];
        all.extend(&args);
        let mut child = serve(&all);
        let status = wait_exit(&mut child);
        assert_eq!(status.code(), Some(1), "{args:?}");
        let stderr = stderr_of(&mut child);
        assert!(
            stderr.contains("ringcast: error: ") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
}
