//! What JWT verification adds to each connection's upgrade: `Verifier::verify` on a
//! typical token (sub, exp, a two-room `rooms` claim) per algorithm, beside the
//! baseline every upgrade pays anyway, parsing its HTTP request. `cargo bench --bench jwt`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ringcast::auth::Verifier;
use ringcast::ws::handshake::{client_request_with_headers, parse_request};
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).expect("test key")
}

fn token(algorithm: Algorithm, key: &EncodingKey) -> String {
    let claims = json!({"sub": "user-1234", "exp": NOW + 3600, "rooms": ["lobby", "ops"]});
    encode(&Header::new(algorithm), &claims, key).expect("signs")
}

fn jwt(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt per connection");
    let hs_token = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"bench secret").unwrap(),
    );
    let (request, _) = client_request_with_headers(
        "127.0.0.1:8080",
        &format!("/?token={hs_token}"),
        [1; 16],
        &[("Origin", "https://chat.example.com")],
    );
    group.bench_function("parse upgrade request with token (baseline)", |b| {
        b.iter(|| parse_request(black_box(&request), 8192).unwrap())
    });
    let cases = [
        (
            "verify HS256 token",
            Verifier::from_secret(b"bench secret").unwrap(),
            hs_token.clone(),
        ),
        (
            "verify EdDSA (Ed25519) token",
            Verifier::from_pem(&data("jwt-ed25519.pub")).unwrap(),
            token(
                Algorithm::EdDSA,
                &EncodingKey::from_ed_pem(&data("jwt-ed25519.key")).unwrap(),
            ),
        ),
        (
            "verify ES256 (P-256) token",
            Verifier::from_pem(&data("jwt-p256.pub")).unwrap(),
            token(
                Algorithm::ES256,
                &EncodingKey::from_ec_pem(&data("jwt-p256.key")).unwrap(),
            ),
        ),
        (
            "verify RS256 (2048-bit) token",
            Verifier::from_pem(&data("jwt-rsa.pub")).unwrap(),
            token(
                Algorithm::RS256,
                &EncodingKey::from_rsa_pem(&data("jwt-rsa.key")).unwrap(),
            ),
        ),
    ];
    for (name, verifier, token) in cases {
        verifier.verify(Some(&token), NOW).expect("a valid token");
        group.bench_function(name, |b| {
            b.iter(|| verifier.verify(Some(black_box(&token)), NOW).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, jwt);
criterion_main!(benches);
