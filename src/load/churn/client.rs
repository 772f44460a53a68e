//! One churn client's connection: a socket from the plan's source address, then the
//! library's blocking `WsConnection` (the one connection the client library and the
//! integration tests use): wait for a reply of one type, answer pings, close cleanly or
//! reset. A deadline per wait. It decides nothing about what a client does; `mod.rs`
//! does.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::Rng;
use crate::client::{ConnectOptions, UpgradeRequest, WsConnection};
use crate::load::args::Plan;
use crate::ws::{close_code, Incoming, Opcode};

pub fn nonce(rng: &mut Rng) -> [u8; 16] {
    let mut nonce = [0; 16];
    nonce[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    nonce[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    nonce
}

/// A TCP connection to `client`'s server, from the plan's source address for `client`
/// if any.
pub fn connect(plan: &Plan, client: usize) -> Result<TcpStream, String> {
    let addr = plan.target_for(client).addr;
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

/// An upgraded churn client: the library's blocking connection, and how long a wait
/// may take.
pub struct Client {
    ws: WsConnection,
    /// Each wait ends by now + `--connect-timeout`, measured from the wait's start.
    wait: Duration,
}

impl Client {
    /// Connects, upgrades and waits for the `welcome`.
    pub fn open(plan: &Plan, client: usize) -> Result<Client, String> {
        let stream = connect(plan, client)?;
        let options = ConnectOptions {
            connect_timeout: plan.connect_timeout,
            handshake_timeout: plan.connect_timeout,
            write_timeout: plan.connect_timeout,
            max_message_bytes: plan.max_message,
            ..ConnectOptions::default()
        };
        let target = plan.target_for(client);
        let request = UpgradeRequest::new(&target.host, &target.path);
        let ws = WsConnection::upgrade(stream, &request, &options)
            .map_err(|e| format!("upgrade: {e}"))?;
        let mut conn = Client {
            ws,
            wait: plan.connect_timeout,
        };
        conn.expect("welcome", None)?;
        Ok(conn)
    }

    /// The next message, pings answered; the end of the stream is an error.
    fn next(&mut self, deadline: Instant) -> Result<Incoming, String> {
        loop {
            match self.ws.reader().recv_until(deadline) {
                Ok(Some(Incoming::Ping(payload))) => self.send(Opcode::Pong, &payload)?,
                Ok(Some(item)) => return Ok(item),
                Ok(None) => return Err(format!("timed out after {:?}", self.wait)),
                Err(e) => return Err(e.to_string()),
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
        self.ws
            .writer()
            .send(opcode, payload)
            .map_err(|e| format!("write: {e}"))
    }

    pub fn send_json(&mut self, value: &serde_json::Value) -> Result<(), String> {
        self.send(Opcode::Text, value.to_string().as_bytes())
    }

    /// The closing handshake (RFC 6455 §7.1.1: the server then closes TCP first):
    /// close 1000, messages up to the server's close frame, then its FIN.
    pub fn close(mut self) -> Result<(), String> {
        self.ws
            .writer()
            .send_close(Some(close_code::NORMAL))
            .map_err(|e| format!("write: {e}"))?;
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
        self.ws.reader().wait_for_end(deadline);
        Ok(())
    }

    /// Ends with a TCP reset (SO_LINGER 0), no close frame.
    pub fn reset(self) -> Result<(), String> {
        self.ws.reset().map_err(|e| format!("SO_LINGER: {e}"))
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
