//! The HTTP/1.1 upgrade (RFC 6455 §4), sans-IO, for both roles: parses a request or
//! response from the front of a read buffer and builds the bytes to answer with.
//! Bytes after the header block stay in the caller's buffer (pipelined frames).
//! It does not read sockets or enforce the handshake timeout; the connection does.

use std::fmt::Write as _;

use crate::auth::Refusal;

/// Most headers a request may carry before it is refused with 431.
const MAX_HEADERS: usize = 32;

/// What a complete request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum HttpRequest {
    /// A valid WebSocket upgrade; answer with [`accept_response`] once
    /// [`check_origin`] allows its `origin` (the `Origin` header, which browsers send).
    Upgrade {
        key: String,
        path: String,
        origin: Option<String>,
        /// The `Authorization` header, for a JWT (`auth::token_in`).
        authorization: Option<String>,
    },
    /// `GET /healthz` without an upgrade, for load balancers; answer with [`health_response`].
    Health,
    /// `GET /metrics` without an upgrade, for monitoring; answer with [`metrics_response`].
    Metrics,
    /// `GET /` (or one of its files) without an upgrade: the server's own page
    /// ([`crate::page::response`]) when it is on, else 426.
    Page(crate::page::Asset),
}

/// Why a request was refused, as the HTTP status it is answered with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("malformed HTTP request: answer 400 and close")]
    Malformed,
    #[error(
        "request header block is over {0} bytes or {MAX_HEADERS} headers: answer 431 and close"
    )]
    HeadersTooLarge(usize),
    #[error("method {0} is not GET (RFC 6455 §4.1): answer 405 and close")]
    MethodNotAllowed(String),
    #[error("HTTP/1.0 request; an upgrade needs HTTP/1.1 (RFC 6455 §4.1): answer 400 and close")]
    OldHttpVersion,
    #[error("no `Upgrade: websocket` header (RFC 6455 §4.2.1): answer 426 and close")]
    NotAnUpgrade,
    #[error("no `Connection: Upgrade` header (RFC 6455 §4.2.1): answer 400 and close")]
    MissingConnectionUpgrade,
    #[error("missing or malformed Sec-WebSocket-Key (RFC 6455 §4.2.1): answer 400 and close")]
    BadKey,
    #[error(
        "Sec-WebSocket-Version is not 13 (RFC 6455 §4.4): answer 426 with the supported version"
    )]
    UnsupportedVersion,
    #[error("origin {0} is not in allowed_origins (RFC 6455 §10.2): answer 403 and close")]
    OriginNotAllowed(String),
    /// The server verifies JWTs and this upgrade's is missing or invalid
    /// (RFC 6750 §3.1): answer 401 with `WWW-Authenticate: Bearer` and close. The
    /// message is the answer's body, so it says why for the client, not for us.
    #[error("unauthorized: {0}")]
    Unauthorized(Refusal),
}

impl HandshakeError {
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadersTooLarge(_) => 431,
            HandshakeError::MethodNotAllowed(_) => 405,
            HandshakeError::NotAnUpgrade | HandshakeError::UnsupportedVersion => 426,
            HandshakeError::OriginNotAllowed(_) => 403,
            HandshakeError::Unauthorized(_) => 401,
            _ => 400,
        }
    }

    /// The full HTTP response for this refusal, with a short plain-text body.
    pub fn response(&self) -> Vec<u8> {
        let extra = match self {
            HandshakeError::MethodNotAllowed(_) => "Allow: GET\r\n",
            HandshakeError::NotAnUpgrade => "Upgrade: websocket\r\n",
            HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version: 13\r\n",
            // RFC 6750 §3: no error code when the request had no token.
            HandshakeError::Unauthorized(Refusal::Missing) => "WWW-Authenticate: Bearer\r\n",
            HandshakeError::Unauthorized(_) => {
                "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n"
            }
            _ => "",
        };
        text_response(self.status(), extra, &format!("{self}\n"))
    }
}

/// An HTTP answer with a short plain-text `body` that closes the connection:
/// `status`, its reason phrase, `extra` header lines (each ending in CRLF), the body.
fn text_response(status: u16, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason_phrase(status),
        body.len()
    )
    .into_bytes()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Bad Request",
    }
}

/// Parses a request from the front of `buf`. `Ok(None)`: the header block is not complete
/// yet (and is still under `max_bytes`). On success returns the request and its length.
pub fn parse_request(
    buf: &[u8],
    max_bytes: usize,
) -> Result<Option<(HttpRequest, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max_bytes => len,
        Ok(httparse::Status::Complete(_)) => {
            return Err(HandshakeError::HeadersTooLarge(max_bytes))
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => {
            return Err(HandshakeError::HeadersTooLarge(max_bytes))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::HeadersTooLarge(max_bytes))
        }
        Err(_) => return Err(HandshakeError::Malformed),
    };
    let method = req.method.unwrap_or_default();
    if method != "GET" {
        return Err(HandshakeError::MethodNotAllowed(method.to_string()));
    }
    if req.version != Some(1) {
        return Err(HandshakeError::OldHttpVersion);
    }
    let path = req.path.unwrap_or("/").to_string();
    let headers: &[httparse::Header] = req.headers;
    let header = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let has_token = |name: &'static str, token: &str| {
        header(name).any(|value| {
            value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if !has_token("upgrade", "websocket") {
        if header("upgrade").next().is_none() {
            match path.as_str() {
                "/healthz" => return Ok(Some((HttpRequest::Health, len))),
                "/metrics" => return Ok(Some((HttpRequest::Metrics, len))),
                path => {
                    if let Some(asset) = crate::page::Asset::for_path(path) {
                        return Ok(Some((HttpRequest::Page(asset), len)));
                    }
                }
            }
        }
        return Err(HandshakeError::NotAnUpgrade);
    }
    if !has_token("connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    if !header("sec-websocket-version").any(|v| v.trim_ascii() == b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = header("sec-websocket-key")
        .next()
        .ok_or(HandshakeError::BadKey)?;
    let key = key.trim_ascii();
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    let key = String::from_utf8(key.to_vec()).map_err(|_| HandshakeError::BadKey)?;
    let origin = header("origin")
        .next()
        .map(|value| String::from_utf8_lossy(value.trim_ascii()).into_owned());
    let authorization = header("authorization")
        .next()
        .map(|value| String::from_utf8_lossy(value.trim_ascii()).into_owned());
    let upgrade = HttpRequest::Upgrade {
        key,
        path,
        origin,
        authorization,
    };
    Ok(Some((upgrade, len)))
}

/// Whether a request with this `Origin` may upgrade: always when `allowed` is empty or
/// the request has no `Origin` (not a browser, so no page to protect against); else
/// only an origin in `allowed`, compared without regard to ASCII case.
pub fn check_origin(origin: Option<&str>, allowed: &[String]) -> Result<(), HandshakeError> {
    match origin {
        Some(origin)
            if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) =>
        {
            Err(HandshakeError::OriginNotAllowed(origin.to_string()))
        }
        _ => Ok(()),
    }
}

/// A key is 16 random bytes in base64: 22 base64 characters and `==` (RFC 6455 §4.1).
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// The 101 response that completes an upgrade.
pub fn accept_response(key: &str) -> Vec<u8> {
    accept_response_with(key, "")
}

/// The 101 response with `extra` header lines (each ending in CRLF), e.g. an agreed
/// `Sec-WebSocket-Extensions`.
pub fn accept_response_with(key: &str, extra: &str) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// The answer to `GET /healthz`.
pub fn health_response() -> &'static [u8] {
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
}

/// The answer to `GET /healthz` while the node cannot do its whole job (a cluster node
/// cut off from Redis), so load balancers send new clients elsewhere.
pub fn unhealthy_response() -> &'static [u8] {
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 22\r\nConnection: close\r\n\r\ncluster link is down\r\n"
}

/// The answer to `GET /metrics`: `body` in the Prometheus text format.
pub fn metrics_response(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The answer to a connection refused before its request is read (too many
/// connections): `status` (429 or 503) with `Retry-After` in seconds (RFC 6585 §4,
/// RFC 9110 §10.2.3) and `reason` as a one-line text body.
pub fn busy_response(status: u16, retry_after_s: u32, reason: &str) -> Vec<u8> {
    let retry_after = format!("Retry-After: {retry_after_s}\r\n");
    text_response(status, &retry_after, &format!("{reason}\n"))
}

/// The client role: the upgrade request for `host` and `path` with a 16-byte `nonce`.
/// Returns the request bytes and the key to check the answer against.
pub fn client_request(host: &str, path: &str, nonce: [u8; 16]) -> (Vec<u8>, String) {
    client_request_with_headers(host, path, nonce, &[])
}

/// Like [`client_request`], with `headers` (name, value) added after the required ones
/// (e.g. `Origin`), as given: nothing is checked, so a test can send a bad one.
pub fn client_request_with_headers(
    host: &str,
    path: &str,
    nonce: [u8; 16],
    headers: &[(&str, &str)],
) -> (Vec<u8>, String) {
    let key = base64_16(nonce);
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    (request.into_bytes(), key)
}

/// Why a server refused or botched the upgrade (client role).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeRejected {
    #[error("server answered with HTTP status {0} instead of 101")]
    Status(u16),
    #[error("malformed HTTP response from server")]
    Malformed,
    #[error("server's Sec-WebSocket-Accept does not match our key (RFC 6455 §4.2.2)")]
    BadAccept,
}

/// Parses the server's answer from the front of `buf` (client role). `Ok(None)`: incomplete.
/// On success returns the response length; bytes after it are WebSocket frames.
pub fn parse_response(buf: &[u8], key: &str) -> Result<Option<usize>, UpgradeRejected> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(UpgradeRejected::Malformed),
    };
    let status = resp.code.unwrap_or(0);
    if status != 101 {
        return Err(UpgradeRejected::Status(status));
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accepted = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-accept") && h.value == expected.as_bytes()
    });
    if !accepted {
        return Err(UpgradeRejected::BadAccept);
    }
    Ok(Some(len))
}

fn base64_16(bytes: [u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(24);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out.push_str("==");
    out
}

#[cfg(test)]
mod tests;
