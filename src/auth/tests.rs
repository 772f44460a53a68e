use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const NOW: u64 = 1_800_000_000;
const SECRET: &[u8] = b"test secret";
const ED_PRIVATE: &[u8] = include_bytes!("../../tests/data/jwt-ed25519.key");
const ED_PUBLIC: &[u8] = include_bytes!("../../tests/data/jwt-ed25519.pub");
const EC_PUBLIC: &[u8] = include_bytes!("../../tests/data/jwt-p256.pub");
const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/data/jwt-rsa.pub");

fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET).unwrap();
    encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn eddsa(claims: &Value) -> String {
    let key = EncodingKey::from_ed_pem(ED_PRIVATE).unwrap();
    encode(&Header::new(Algorithm::EdDSA), claims, &key).unwrap()
}

fn secret_verifier() -> Verifier {
    Verifier::from_secret(SECRET).unwrap()
}

#[test]
fn a_valid_token_gives_its_sub_and_rooms() {
    let token = hs256(&json!({"sub": "ann", "exp": NOW + 60, "rooms": ["a", "b"]}));
    let identity = secret_verifier().verify(Some(&token), NOW).unwrap();
    assert_eq!(identity.user, "ann");
    assert!(identity.may_join("a") && identity.may_join("b"));
    assert!(!identity.may_join("c"));
    let any = hs256(&json!({"sub": "bo", "exp": NOW + 60, "rooms": ["a", "*"]}));
    assert_eq!(
        secret_verifier().verify(Some(&any), NOW).unwrap().rooms,
        None
    );
    let none = hs256(&json!({"sub": "bo", "exp": NOW + 60, "rooms": []}));
    assert!(!secret_verifier()
        .verify(Some(&none), NOW)
        .unwrap()
        .may_join("a"));
}

#[test]
fn exp_and_nbf_allow_thirty_seconds_of_skew() {
    let verifier = secret_verifier();
    let at = |claims| verifier.verify(Some(&hs256(&claims)), NOW);
    assert!(at(json!({"sub": "a", "exp": NOW - 29})).is_ok());
    assert_eq!(
        at(json!({"sub": "a", "exp": NOW - 30})),
        Err(Refusal::Expired)
    );
    assert!(at(json!({"sub": "a", "exp": NOW + 60, "nbf": NOW + 30})).is_ok());
    assert_eq!(
        at(json!({"sub": "a", "exp": NOW + 600, "nbf": NOW + 31})),
        Err(Refusal::NotYetValid)
    );
}

#[test]
fn each_bad_token_has_its_reason() {
    let verifier = secret_verifier();
    let good = hs256(&json!({"sub": "a", "exp": NOW + 60}));
    assert_eq!(verifier.verify(None, NOW), Err(Refusal::Missing));
    assert_eq!(verifier.verify(Some(""), NOW), Err(Refusal::Missing));
    for malformed in ["abc", "a.b", "a.b.c.d", "!!!.e30.x", "e30.e30.x"] {
        assert_eq!(
            verifier.verify(Some(malformed), NOW),
            Err(Refusal::Malformed),
            "{malformed}"
        );
    }
    let (body, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{body}.{}", "A".repeat(43));
    assert_eq!(
        verifier.verify(Some(&forged), NOW),
        Err(Refusal::BadSignature)
    );
    let other_secret = {
        let key = EncodingKey::from_secret(b"another secret").unwrap();
        let claims = json!({"sub": "a", "exp": NOW + 60});
        encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    };
    assert_eq!(
        verifier.verify(Some(&other_secret), NOW),
        Err(Refusal::BadSignature)
    );
    for claims in [
        json!({"exp": NOW + 60}),
        json!({"sub": 7, "exp": NOW + 60}),
        json!({"sub": "a"}),
        json!({"sub": "a", "exp": "later"}),
        json!({"sub": "a", "exp": NOW + 60, "rooms": "a"}),
        json!({"sub": "a", "exp": NOW + 60, "rooms": [1]}),
    ] {
        assert_eq!(
            verifier.verify(Some(&hs256(&claims)), NOW),
            Err(Refusal::InvalidClaims),
            "{claims}"
        );
    }
}

#[test]
fn only_the_keys_algorithm_is_accepted() {
    let claims = json!({"sub": "a", "exp": NOW + 60});
    let ed = Verifier::from_pem(ED_PUBLIC).unwrap();
    assert_eq!(ed.algorithm(), Algorithm::EdDSA);
    assert!(ed.verify(Some(&eddsa(&claims)), NOW).is_ok());
    assert_eq!(
        ed.verify(Some(&hs256(&claims)), NOW),
        Err(Refusal::WrongAlgorithm)
    );
    assert_eq!(
        secret_verifier().verify(Some(&eddsa(&claims)), NOW),
        Err(Refusal::WrongAlgorithm)
    );
    // alg "none", unsigned (RFC 7519 §6.1).
    let unsigned = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    assert_eq!(
        ed.verify(Some(&unsigned), NOW),
        Err(Refusal::WrongAlgorithm)
    );
}

#[test]
fn keys_load_by_kind_and_bad_ones_are_refused() {
    assert_eq!(
        Verifier::from_pem(EC_PUBLIC).unwrap().algorithm(),
        Algorithm::ES256
    );
    assert_eq!(
        Verifier::from_pem(RSA_PUBLIC).unwrap().algorithm(),
        Algorithm::RS256
    );
    assert!(Verifier::from_pem(b"not a key").is_none());
    assert!(Verifier::from_pem(ED_PRIVATE).is_none(), "a private key");
    assert!(matches!(
        Verifier::from_secret(b""),
        Err(KeyError::EmptySecret)
    ));
    let missing = Path::new("/nonexistent/key.pem");
    assert!(matches!(
        Verifier::from_config(None, Some(missing)),
        Err(KeyError::Read { .. })
    ));
    let secret = Secret("s".into());
    assert!(matches!(
        Verifier::from_config(Some(&secret), Some(missing)),
        Err(KeyError::Both)
    ));
    assert!(Verifier::from_config(None, None).unwrap().is_none());
    assert_eq!(format!("{secret:?}"), "Secret(..)");
}

#[test]
fn the_token_comes_from_bearer_or_the_query() {
    assert_eq!(token_in("/?token=abc", None), Some("abc"));
    assert_eq!(token_in("/chat?x=1&token=abc&y=2", None), Some("abc"));
    assert_eq!(token_in("/?token=abc", Some("Bearer xyz")), Some("xyz"));
    assert_eq!(token_in("/", Some("bearer  xyz ")), Some("xyz"));
    assert_eq!(token_in("/", Some("Basic xyz")), None);
    assert_eq!(token_in("/?tokens=abc", None), None);
    assert_eq!(token_in("/", None), None);
}
