//! Who a client is: JWT verification for the upgrade (`--jwt-secret`, HS256, or
//! `--jwt-public-key`, RS256, ES256 or EdDSA), sans-IO: the key is parsed once at
//! start-up into a [`Verifier`]; each upgrade's token (from `?token=` or
//! `Authorization: Bearer`) becomes an [`Identity`] or a [`Refusal`] (HTTP 401).
//! It reads no socket and no clock: the caller passes `now`.
//!
//! The crypto is `jsonwebtoken` with its RustCrypto backend (pure Rust: no C compiler
//! or cmake at build time, unlike aws-lc-rs; see Cargo.toml). Expiry is checked here,
//! not by the crate, so that time is injected and every refusal has its own reason.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_S: u64 = 30;

/// The `rooms` claim's entry that allows every room.
const ANY_ROOM: &str = "*";

/// A verified client: what the app learns at `on_open` (boxed there, and only when
/// JWT is on, so a connection without it carries a null pointer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`: the client's `user` in its metadata, fixed for its life.
    pub user: String,
    /// The token's `rooms` claim: the only rooms the client may join. `None`: any
    /// room (no claim, or one listing `"*"`).
    pub rooms: Option<Box<[String]>>,
}

impl Identity {
    /// Whether the token lets this client join `room`.
    pub fn may_join(&self, room: &str) -> bool {
        self.rooms
            .as_deref()
            .is_none_or(|rooms| rooms.iter().any(|r| r == room))
    }
}

/// Why an upgrade's token was refused: answered with HTTP 401 and
/// `WWW-Authenticate: Bearer`, counted in `ringcast_auth_refused_total{reason}`.
/// `Display` is the answer's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no token: send ?token=JWT in the URL or an Authorization: Bearer JWT header")]
    Missing,
    #[error("token is not a JWT (three base64url parts, JSON header and claims)")]
    Malformed,
    #[error("token is signed with another algorithm than the server's key")]
    WrongAlgorithm,
    #[error("token signature does not verify")]
    BadSignature,
    #[error(
        "token claims need a string sub, a numeric exp (nbf numeric, rooms a list of strings)"
    )]
    InvalidClaims,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (nbf)")]
    NotYetValid,
}

impl Refusal {
    /// Every refusal, in the order `/metrics` lists them.
    pub const ALL: [Refusal; 7] = [
        Refusal::Missing,
        Refusal::Malformed,
        Refusal::WrongAlgorithm,
        Refusal::BadSignature,
        Refusal::InvalidClaims,
        Refusal::Expired,
        Refusal::NotYetValid,
    ];

    /// The `reason` label of `ringcast_auth_refused_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::WrongAlgorithm => "wrong_algorithm",
            Refusal::BadSignature => "bad_signature",
            Refusal::InvalidClaims => "invalid_claims",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
        }
    }
}

/// Why the configured secret or key cannot be used: the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("jwt_secret is empty: give a non-empty HS256 secret")]
    EmptySecret,
    #[error("set jwt_secret or jwt_public_key, not both")]
    Both,
    #[error("cannot read JWT public key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "JWT public key {0} is not a PEM public key of a supported kind (RSA for RS256, P-256 EC for ES256, Ed25519 for EdDSA)"
    )]
    NotAPublicKey(PathBuf),
}

/// A secret that `Debug` does not show (the config is `Debug`).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The server's key and its one algorithm, parsed once at start-up; shared by every
/// core (it holds no state).
pub struct Verifier {
    key: DecodingKey,
    algorithm: Algorithm,
    /// The crate checks the header's `alg` and the signature; claims are ours.
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The claims as sent; checked by hand so that each wrong one is `InvalidClaims`.
type Claims = Map<String, Value>;

impl Verifier {
    /// The verifier the config asks for: `None` when neither is set (JWT off).
    pub fn from_config(
        secret: Option<&Secret>,
        public_key: Option<&Path>,
    ) -> Result<Option<Verifier>, KeyError> {
        match (secret, public_key) {
            (Some(_), Some(_)) => Err(KeyError::Both),
            (Some(secret), None) => Verifier::from_secret(secret.0.as_bytes()).map(Some),
            (None, Some(path)) => {
                let pem = std::fs::read(path).map_err(|source| KeyError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Verifier::from_pem(&pem)
                    .ok_or_else(|| KeyError::NotAPublicKey(path.to_owned()))
                    .map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// HS256 with a shared secret.
    pub fn from_secret(secret: &[u8]) -> Result<Verifier, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        let key = DecodingKey::from_secret(secret).map_err(|_| KeyError::EmptySecret)?;
        Ok(Verifier::new(key, Algorithm::HS256))
    }

    /// A PEM public key: RSA (RS256), P-256 EC (ES256) or Ed25519 (EdDSA). `None`
    /// if it is none of these, or does not load.
    pub fn from_pem(pem: &[u8]) -> Option<Verifier> {
        let (key, algorithm) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (key, Algorithm::RS256)
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            (key, Algorithm::ES256)
        } else {
            (DecodingKey::from_ed_pem(pem).ok()?, Algorithm::EdDSA)
        };
        // The crate parses the key's inner structure per verification: try it once
        // now, so a broken key (or a P-384 one) refuses to start instead of every token.
        match jsonwebtoken::crypto::verify("AAAA", b"x.y", &key, algorithm) {
            Ok(_) => Some(Verifier::new(key, algorithm)),
            Err(_) => None,
        }
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Verifier {
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Verifier {
            key,
            algorithm,
            validation,
        }
    }

    /// The one algorithm tokens must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Verifies `token` at Unix time `now` (seconds).
    pub fn verify(&self, token: Option<&str>, now: u64) -> Result<Identity, Refusal> {
        let token = token.filter(|t| !t.is_empty()).ok_or(Refusal::Missing)?;
        if header_alg(token)? != self.algorithm {
            return Err(Refusal::WrongAlgorithm);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature => Refusal::BadSignature,
                ErrorKind::InvalidAlgorithm => Refusal::WrongAlgorithm,
                _ => Refusal::Malformed,
            })?
            .claims;
        identity(&claims, now)
    }
}

/// The header's `alg`, read before the crate does, so that an algorithm it does not
/// know (`"none"`) is `WrongAlgorithm`, not a parse error.
fn header_alg(token: &str) -> Result<Algorithm, Refusal> {
    #[derive(Deserialize)]
    struct Header<'a> {
        #[serde(borrow)]
        alg: std::borrow::Cow<'a, str>,
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Refusal::Malformed)?;
    let header: Header<'_> = serde_json::from_slice(&json).map_err(|_| Refusal::Malformed)?;
    header.alg.parse().map_err(|_| Refusal::WrongAlgorithm)
}

/// Checks the claims at `now`: `sub` a string, `exp` a number not past (with
/// [`LEEWAY_S`]), `nbf` if present a number not ahead, `rooms` if present a list of
/// strings.
fn identity(claims: &Claims, now: u64) -> Result<Identity, Refusal> {
    let time = |name| match claims.get(name) {
        None => Ok(None),
        Some(value) => value.as_f64().map(Some).ok_or(Refusal::InvalidClaims),
    };
    let Some(Value::String(sub)) = claims.get("sub") else {
        return Err(Refusal::InvalidClaims);
    };
    let exp = time("exp")?.ok_or(Refusal::InvalidClaims)?;
    let now = now as f64;
    if exp + LEEWAY_S as f64 <= now {
        return Err(Refusal::Expired);
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now + LEEWAY_S as f64) {
        return Err(Refusal::NotYetValid);
    }
    let rooms = match claims.get("rooms") {
        None => None,
        Some(Value::Array(list)) => {
            let rooms: Option<Vec<String>> = list
                .iter()
                .map(|room| room.as_str().map(str::to_owned))
                .collect();
            let rooms = rooms.ok_or(Refusal::InvalidClaims)?;
            (!rooms.iter().any(|r| r == ANY_ROOM)).then(|| rooms.into_boxed_slice())
        }
        Some(_) => return Err(Refusal::InvalidClaims),
    };
    Ok(Identity {
        user: sub.clone(),
        rooms,
    })
}

/// The token of an upgrade request: `Authorization: Bearer <token>` (RFC 6750 §2.1;
/// the scheme in any case), else the `token` parameter of the target's query
/// (§2.3; a JWT is base64url and dots, so it needs no percent-decoding).
pub fn token_in<'a>(target: &'a str, authorization: Option<&'a str>) -> Option<&'a str> {
    let bearer = authorization.and_then(|value| {
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer.or_else(|| {
        let (_, query) = target.split_once('?')?;
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
    })
}

#[cfg(test)]
mod tests;
