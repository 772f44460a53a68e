//! A connection's first task: registers it in the core's slab, reads and answers its
//! HTTP request (after the TLS handshake, on a TLS server) and, for a WebSocket
//! upgrade, hands the socket to the core's reader (`reader::open`) and ends. Other
//! requests (`/healthz`, `/metrics`, the page, errors) are answered here and closed.
//! The task and its buffers exist only during the handshake; the core's sweep enforces
//! `handshake_timeout_ms` by shutting the socket, which ends the read in flight.

use std::os::fd::{AsRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::admission::Admitted;
use super::reader;
use super::Core;
use crate::app::{App, Identity};
use crate::auth;
use crate::conn::shutdown_socket;
use crate::stats::{render_backlogs, render_cluster, render_distributions, render_metrics};
use crate::ws::deflate;
use crate::ws::handshake::{self, HttpRequest};
use crate::ConnId;

/// First buffer for the upgrade request (browsers send ~500 bytes); transient.
const HANDSHAKE_BUFFER: usize = 1024;
/// Read size while the TLS handshake runs (a ClientHello is ~300-1500 bytes); transient.
const TLS_HANDSHAKE_READ: usize = 4096;
/// Most bytes read and dropped after an HTTP error answer before closing anyway.
const LINGER_BYTES: usize = 64 * 1024;

/// What an upgrade agreed to: permessage-deflate (when negotiated) and who the
/// client's JWT says it is (when JWT is on).
pub(crate) struct Upgraded {
    pub(crate) deflate: Option<deflate::Agreement>,
    pub(crate) identity: Option<Box<Identity>>,
}

/// Serves one accepted connection until it is upgraded (then the core's reader has
/// it) or answered and closed. `admitted` is its place in the connection counts
/// (`max_conns_per_ip`, `max_connections`), kept by the core until it closes.
pub(crate) async fn run_handshake<A: App>(
    core: Rc<Core<A>>,
    mut stream: TcpStream,
    admitted: Option<Admitted>,
) {
    let ctx = &core.ctx;
    let fd = stream.as_raw_fd();
    let id = ctx.insert_conn(fd, Instant::now());
    let mut buf = BytesMut::with_capacity(HANDSHAKE_BUFFER);
    let Some(upgraded) = upgrade(&core, id, &mut stream, &mut buf).await else {
        shutdown_socket(fd);
        // Removed before the stream drops and closes the fd, so the sweep never
        // touches a reused fd.
        ctx.remove_conn(id);
        return;
    };
    // From here the core's reader and flush path own the socket.
    let fd = stream.into_raw_fd();
    reader::open(&core, id, fd, upgraded, buf, admitted);
}

/// Reads and answers the HTTP upgrade request (after the TLS handshake, on a TLS
/// server). Returns `None` if the connection is not a WebSocket, else what it agreed
/// to (permessage-deflate) and who its JWT says it is (when JWT is on); pipelined
/// bytes after the request stay in `buf`.
async fn upgrade<A: App>(
    core: &Core<A>,
    id: ConnId,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Option<Upgraded> {
    let mut tls = match core.config.tls() {
        Some(slot) => match slot.session() {
            Some(session) => Some(session),
            None => return None,
        },
        None => None,
    };
    let max = core.config.max_handshake_bytes;
    let allowed_origins = &core.config.allowed_origins;
    loop {
        let mut identity = None;
        let request = handshake::parse_request(buf, max).and_then(|request| {
            if let Some((HttpRequest::Upgrade { origin, .. }, _)) = &request {
                handshake::check_origin(origin.as_deref(), allowed_origins)?;
            }
            if let (
                Some((
                    HttpRequest::Upgrade {
                        path,
                        authorization,
                        ..
                    },
                    _,
                )),
                Some(verifier),
            ) = (&request, core.config.jwt())
            {
                let token = auth::token_in(path, authorization.as_deref());
                identity = Some(Box::new(authenticate(verifier, token)?));
            }
            Ok(request)
        });
        let response = match request {
            Ok(Some((HttpRequest::Upgrade { key, .. }, len))) => {
                let agreement = match core.config.deflate {
                    true => deflate::negotiate_request(&buf[..len]),
                    false => None,
                };
                buf.advance(len);
                let extra = agreement.map_or(String::new(), |a| a.response_header());
                let response = handshake::accept_response_with(&key, &extra);
                if !send(stream, &mut tls, response).await {
                    return None;
                }
                core.ctx.with_conn(id, |conn| conn.tls = tls);
                let upgraded = Upgraded {
                    deflate: agreement,
                    identity,
                };
                return Some(upgraded);
            }
            Ok(Some((HttpRequest::Health, _))) => match &core.cluster {
                Some(cluster) if !cluster.is_up() => handshake::unhealthy_response(),
                _ => handshake::health_response(),
            }
            .to_vec(),
            Ok(Some((HttpRequest::Page(asset), _))) if core.config.page => {
                crate::page::response(asset)
            }
            Ok(Some((HttpRequest::Page(_), _))) => {
                core.ctx.stats().count_rejected_handshake();
                handshake::HandshakeError::NotAnUpgrade.response()
            }
            Ok(Some((HttpRequest::Metrics, _))) => {
                let mut text = render_metrics(&core.ctx.all_stats);
                render_distributions(&mut text, &core.ctx.all_stats);
                render_backlogs(&mut text, &core.ctx.outbox.backlogs());
                if let Some(cluster) = &core.cluster {
                    render_cluster(&mut text, cluster);
                }
                handshake::metrics_response(&text)
            }
            Ok(None) => {
                if buf.len() == buf.capacity() {
                    buf.reserve(buf.capacity().min(max));
                }
                if !receive(stream, &mut tls, buf).await {
                    return None;
                }
                continue;
            }
            Err(error) => {
                if let handshake::HandshakeError::Unauthorized(refusal) = error {
                    core.ctx.stats().count_auth_refused(refusal);
                }
                core.ctx.stats().count_rejected_handshake();
                core.ctx.stats().count_handshake_failure(error.status());
                error.response()
            }
        };
        if send(stream, &mut tls, response).await {
            linger(stream, buf).await;
        }
        return None;
    }
}

/// Verifies an upgrade's JWT (from `?token=` or `Authorization: Bearer`) now; only
/// upgrades need one (`/healthz` and `/metrics` do not).
fn authenticate(
    verifier: &auth::Verifier,
    token: Option<&str>,
) -> Result<Identity, handshake::HandshakeError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    verifier
        .verify(token, now)
        .map_err(handshake::HandshakeError::Unauthorized)
}

/// Writes `bytes` during the upgrade, encrypted on a TLS connection.
async fn send(
    stream: &mut TcpStream,
    tls: &mut Option<Box<crate::tls::ServerTls>>,
    bytes: Vec<u8>,
) -> bool {
    let bytes = match tls {
        Some(session) => {
            let mut cipher = Vec::with_capacity(bytes.len() + 64);
            if session.encrypt(&bytes, &mut cipher).is_err() {
                return false;
            }
            cipher
        }
        None => bytes,
    };
    stream.write_all(bytes).await.0.is_ok()
}

/// [`read_more`] through TLS: reads records (answering the TLS handshake as it goes)
/// until some plaintext was appended to `buf`. False on EOF, error or a TLS failure.
async fn receive(
    stream: &mut TcpStream,
    tls: &mut Option<Box<crate::tls::ServerTls>>,
    buf: &mut BytesMut,
) -> bool {
    let Some(session) = tls else {
        return read_more(stream, buf).await;
    };
    let start = buf.len();
    loop {
        let (result, cipher) = stream.read(Vec::with_capacity(TLS_HANDSHAKE_READ)).await;
        if !matches!(result, Ok(n) if n > 0) {
            return false;
        }
        let mut out = Vec::new();
        let fed = session.feed(&cipher, buf, &mut out);
        // Handshake flights.
        if !out.is_empty() && stream.write_all(out).await.0.is_err() {
            return false;
        }
        if !matches!(fed, Ok(crate::tls::Fed::Open)) {
            return false;
        }
        if buf.len() > start {
            return true;
        }
    }
}

/// After an HTTP answer: sends FIN and reads (discarding) until the client closes, so
/// unread request bytes do not make the kernel reset the connection and destroy the
/// answer before the client reads it. Bounded by `LINGER_BYTES` and by the handshake
/// deadline (the sweep shuts the socket).
async fn linger(stream: &mut TcpStream, buf: &mut BytesMut) {
    let _ = stream.shutdown().await;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        buf.clear();
        if !read_more(stream, buf).await {
            return;
        }
        discarded += buf.len();
    }
}

/// Reads into the spare capacity of `buf`, appending. False on EOF or error.
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> bool {
    let (len, cap) = (buf.len(), buf.capacity());
    let (result, slice) = stream.read(std::mem::take(buf).slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    matches!(result, Ok(n) if n > 0)
}
