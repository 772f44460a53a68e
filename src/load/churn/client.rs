//! One churn client's socket: connect (from a source address if the plan spreads
//! them), upgrade, read whole messages with the crate's codec, answer pings, wait for
//! a reply of one type, close cleanly. Blocking `std::net` with a deadline per wait.
//! It decides nothing about what a client does; `mod.rs` does.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};

use super::Rng;
use crate::load::args::Plan;
use crate::ws::handshake::{client_request, parse_response};
use crate::ws::{encode_masked, Decoder, Incoming, Opcode, Role};

pub fn nonce(rng: &mut Rng) -> [u8; 16] {
    let mut nonce = [0; 16];
    nonce[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    nonce[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    nonce
}

/// A TCP connection to the server, from the plan's source address for `client` if any.
pub fn connect(plan: &Plan, client: usize) -> Result<TcpStream, String> {
    let addr = plan.target.addr;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| format!("socket: {e}"))?;
    if let Some(source) = plan.source_for(client) {
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .map_err(|e| format!("bind {source}: {e}"))?;
    }
    socket
        .connect_timeout(&addr.into(), plan.connect_timeout)
        .map_err(|e| format!("connect: {e}"))?;
    let stream = TcpStream::from(socket);
    let _ = stream.set_nodelay(true);
    stream
        .set_write_timeout(Some(plan.connect_timeout))
        .map_err(|e| format!("write timeout: {e}"))?;
    Ok(stream)
}

/// The fields of a server message churn looks at.
#[derive(Debug, serde::Deserialize)]
pub struct Reply {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub room: Option<String>,
}

/// An upgraded churn client: a blocking socket, what it has read, the codec.
pub struct Client {
    pub stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
    masks: Rng,
    /// Each wait ends by now + `--connect-timeout`, measured from the wait's start.
    wait: Duration,
}

impl Client {
    /// Connects, upgrades and waits for the `welcome`.
    pub fn open(plan: &Plan, client: usize, rng: &mut Rng) -> Result<Client, String> {
        let mut stream = connect(plan, client)?;
        let (request, key) = client_request(&plan.target.host, &plan.target.path, nonce(rng));
        stream
            .write_all(&request)
            .map_err(|e| format!("upgrade request: {e}"))?;
        let mut conn = Client {
            stream,
            buf: BytesMut::with_capacity(4096),
            decoder: Decoder::new(Role::Client, plan.max_message),
            masks: Rng::new(rng.next_u64()),
            wait: plan.connect_timeout,
        };
        let deadline = Instant::now() + conn.wait;
        loop {
            match parse_response(&conn.buf, &key) {
                Ok(Some(len)) => break conn.buf.advance(len),
                Ok(None) if conn.fill(deadline)? => {}
                Ok(None) => return Err("closed during the upgrade".into()),
                Err(e) => return Err(format!("upgrade refused: {e}")),
            }
        }
        conn.expect("welcome", None)?;
        Ok(conn)
    }

    /// Reads more; `Ok(false)` at the end of the stream.
    fn fill(&mut self, deadline: Instant) -> Result<bool, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timed out after {:?}", self.wait));
        }
        self.stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("read timeout: {e}"))?;
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(format!("timed out after {:?}", self.wait))
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// The next message, pings answered; the end of the stream is an error.
    fn next(&mut self, deadline: Instant) -> Result<Incoming, String> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(Incoming::Ping(payload))) => self.send(Opcode::Pong, &payload)?,
                Ok(Some(item)) => return Ok(item),
                Ok(None) if self.fill(deadline)? => {}
                Ok(None) => return Err("the server closed the connection".into()),
                Err(e) => return Err(format!("the server broke the protocol: {e}")),
            }
        }
    }

    /// Reads until a message of type `kind` (for `room`, if given); an `error` fails.
    pub fn expect(&mut self, kind: &str, room: Option<&str>) -> Result<(), String> {
        let deadline = Instant::now() + self.wait;
        loop {
            let payload = match self.next(deadline)? {
                Incoming::Text(payload) | Incoming::Binary(payload) => payload,
                Incoming::Close(close) => {
                    return Err(format!("closed by the server ({close:?}) awaiting {kind}"))
                }
                _ => continue,
            };
            let reply = check(&payload)?;
            if reply.kind == kind && (room.is_none() || reply.room.as_deref() == room) {
                return Ok(());
            }
        }
    }

    fn send(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), String> {
        let mask = (self.masks.next_u64() as u32).to_be_bytes();
        self.stream
            .write_all(&encode_masked(opcode, true, payload, mask))
            .map_err(|e| format!("write: {e}"))
    }

    pub fn send_json(&mut self, value: &serde_json::Value) -> Result<(), String> {
        self.send(Opcode::Text, value.to_string().as_bytes())
    }

    /// The closing handshake (RFC 6455 §7.1.1: the server then closes TCP first):
    /// close 1000, messages up to the server's close frame, then its FIN.
    pub fn close(mut self) -> Result<(), String> {
        self.send(Opcode::Close, &1000u16.to_be_bytes())?;
        let deadline = Instant::now() + self.wait;
        loop {
            match self.next(deadline)? {
                Incoming::Close(_) => break,
                Incoming::Text(payload) | Incoming::Binary(payload) => {
                    check(&payload)?;
                }
                _ => {}
            }
        }
        while self.fill(deadline)? {
            self.buf.clear();
        }
        Ok(())
    }
}

/// Parses a server message; an `error`, or one that is not a message, is a failure.
pub fn check(payload: &[u8]) -> Result<Reply, String> {
    let shown = || String::from_utf8_lossy(&payload[..payload.len().min(200)]).into_owned();
    let reply: Reply = serde_json::from_slice(payload)
        .map_err(|e| format!("not a server message ({e}): {}", shown()))?;
    if reply.kind == "error" {
        return Err(format!("server error: {}", shown()));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_reply_fails_and_other_messages_parse() {
        let error = br#"{"type":"error","message":"Room name too long","timestamp":1}"#;
        assert!(check(error).unwrap_err().contains("Room name too long"));
        let joined = br#"{"type":"room_joined","room":"churn-3","members":2}"#;
        let reply = check(joined).unwrap();
        assert_eq!(
            (reply.kind.as_str(), reply.room.as_deref()),
            ("room_joined", Some("churn-3"))
        );
        assert!(check(b"not json").is_err());
    }
}
