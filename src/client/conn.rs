//! One blocking connection to a room server: connect, upgrade, read the `welcome`,
//! then typed send and receive, answering pings, keeping a quiet connection alive and
//! closing cleanly. Plain `std::net` with timeouts, usable from any program. It does
//! not reconnect; [`super::Client`] does, on top of it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::config::ConnectOptions;
use super::error::{ClientError, Phase};
use super::url::WsUrl;
use super::websocket::{WsConnection, WsReader, WsWriter};
use crate::proto::{ClientMessage, Received, RequestId, ServerMessage};
use crate::ws::{Incoming, Opcode};

/// A connection that completed the upgrade and got its `welcome`.
///
/// ```no_run
/// use ringcast::client::{ClientMessage, ConnectOptions, Connection, ServerMessage};
/// let mut conn = Connection::connect("ws://127.0.0.1:8080/", &ConnectOptions::default())?;
/// println!("I am {}", conn.client_id());
/// conn.send(&ClientMessage::join_room("lobby"))?;
/// conn.send(&ClientMessage::room_message("lobby", "hello"))?;
/// while let Ok(received) = conn.recv() {
///     if let ServerMessage::RoomMessage { from, message, .. } = received.message {
///         println!("{from}: {message}");
///     }
/// }
/// # Ok::<(), ringcast::client::ClientError>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    reader: ConnReader,
    sender: ConnSender,
    client_id: String,
    welcome: Received,
    peer: SocketAddr,
}

impl Connection {
    /// Connects to a `ws://` URL, upgrades, and waits for the `welcome`.
    pub fn connect(url: &str, options: &ConnectOptions) -> Result<Connection, ClientError> {
        options.validate()?;
        Connection::connect_url(&WsUrl::parse(url)?, options)
    }

    /// Like [`Connection::connect`], with a parsed URL.
    pub fn connect_url(url: &WsUrl, options: &ConnectOptions) -> Result<Connection, ClientError> {
        let ws = WsConnection::open(url, options)?;
        let peer = ws.peer_addr();
        let (reader, writer) = ws.split();
        let sender = ConnSender {
            writer: Arc::new(Mutex::new(writer)),
        };
        let mut reader = ConnReader {
            reader,
            sender: sender.clone(),
            options: options.clone(),
            last_heard: Instant::now(),
            ping_sent: false,
            ended: false,
        };
        let welcome = match reader.recv_until(Some(Instant::now() + options.handshake_timeout)) {
            Ok(Some(received)) => received,
            Ok(None) => {
                sender.shutdown();
                return Err(ClientError::TimedOut {
                    during: Phase::Welcome,
                    after: options.handshake_timeout,
                });
            }
            Err(e) => return Err(e),
        };
        let ServerMessage::Welcome { client_id, .. } = &welcome.message else {
            sender.shutdown();
            return Err(ClientError::NoWelcome(welcome.raw));
        };
        Ok(Connection {
            client_id: client_id.clone(),
            reader,
            sender,
            welcome,
            peer,
        })
    }

    /// This connection's `client_id`, from the `welcome`.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The `welcome` message as received.
    pub fn welcome(&self) -> &Received {
        &self.welcome
    }

    /// The server's address this connection reached.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn send(&self, message: &ClientMessage) -> Result<(), ClientError> {
        self.sender.send(message)
    }

    /// Sends a request with an `id` (**ext**); the direct reply carries it.
    pub fn send_with_id(&self, message: &ClientMessage, id: &RequestId) -> Result<(), ClientError> {
        self.sender.send_with_id(message, id)
    }

    /// Sends any text as it is (a raw JSON line).
    pub fn send_text(&self, text: &str) -> Result<(), ClientError> {
        self.sender.send_text(text)
    }

    /// The next message; see [`ConnReader::recv`].
    pub fn recv(&mut self) -> Result<Received, ClientError> {
        self.reader.recv()
    }

    /// The next message, or `Ok(None)` after `timeout`; see [`ConnReader::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Received>, ClientError> {
        self.reader.recv_timeout(timeout)
    }

    /// The closing handshake: sends close 1000, discards messages until the server's
    /// close frame, waits for the end of the stream (each within `close_timeout`).
    pub fn close(mut self) -> Result<(), ClientError> {
        self.sender.close()?;
        let deadline = Instant::now() + self.reader.options.close_timeout;
        loop {
            match self.reader.recv_until(Some(deadline)) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.sender.shutdown();
                    return Err(ClientError::TimedOut {
                        during: Phase::Closing,
                        after: self.reader.options.close_timeout,
                    });
                }
                Err(ClientError::Closed { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Separate halves, for a reading thread and any number of sending ones.
    pub fn split(self) -> (ConnReader, ConnSender) {
        (self.reader, self.sender)
    }
}

/// The sending half. Clones share the socket; each frame goes out whole.
#[derive(Clone, Debug)]
pub struct ConnSender {
    writer: Arc<Mutex<WsWriter>>,
}

impl ConnSender {
    fn writer(&self) -> MutexGuard<'_, WsWriter> {
        // A panic mid-write leaves nothing half-updated that matters: the worst is a
        // torn frame, which the server answers by closing.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn send(&self, message: &ClientMessage) -> Result<(), ClientError> {
        self.send_text(&message.to_json())
    }

    pub fn send_with_id(&self, message: &ClientMessage, id: &RequestId) -> Result<(), ClientError> {
        self.send_text(&message.to_json_with_id(id))
    }

    pub fn send_text(&self, text: &str) -> Result<(), ClientError> {
        self.writer().send(Opcode::Text, text.as_bytes())
    }

    /// Starts the closing handshake with 1000 (normal closure); the reading half then
    /// ends with [`ClientError::Closed`] once the server answers.
    pub fn close(&self) -> Result<(), ClientError> {
        self.writer().send_close(Some(1000))
    }

    /// Ends the TCP connection at once, without a closing handshake; a read blocked
    /// in the other half returns.
    pub fn shutdown(&self) {
        self.writer().shutdown();
    }

    fn ping(&self) -> Result<(), ClientError> {
        self.writer().send(Opcode::Ping, b"")
    }

    fn pong(&self, payload: &[u8]) -> Result<(), ClientError> {
        // RFC 6455 §5.5.3: a pong carries the ping's payload.
        match self.writer().send(Opcode::Pong, payload) {
            Err(ClientError::NotConnected) => Ok(()),
            other => other,
        }
    }
}

/// The receiving half: answers pings, pings a quiet server, answers its close.
#[derive(Debug)]
pub struct ConnReader {
    reader: WsReader,
    sender: ConnSender,
    options: ConnectOptions,
    /// When the last frame of any kind arrived.
    last_heard: Instant,
    ping_sent: bool,
    ended: bool,
}

impl ConnReader {
    /// The next text or binary message. Pings are answered on the way. After
    /// [`ConnectOptions::ping_after`] of silence it pings the server, and gives up
    /// after [`ConnectOptions::pong_timeout`] more ([`ClientError::TimedOut`]). A close
    /// from the server is answered and ends the connection: [`ClientError::Closed`].
    /// Once this returned an error, the connection is over.
    pub fn recv(&mut self) -> Result<Received, ClientError> {
        loop {
            if let Some(received) = self.recv_until(None)? {
                return Ok(received);
            }
        }
    }

    /// Like [`ConnReader::recv`], or `Ok(None)` when nothing came within `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Received>, ClientError> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Option<Received>, ClientError> {
        if self.ended {
            return Err(ClientError::NotConnected);
        }
        let result = self.next_message(deadline);
        if let Err(error) = &result {
            self.ended = true;
            if let ClientError::Protocol(violation) = error {
                // RFC 6455 §7.1.7: fail the connection, with the code it calls for.
                let _ = self
                    .sender
                    .writer()
                    .send_close(Some(violation.close_code()));
            }
            self.sender.shutdown();
        }
        result
    }

    fn next_message(&mut self, deadline: Option<Instant>) -> Result<Option<Received>, ClientError> {
        loop {
            let mut silence = self.options.ping_after;
            if self.ping_sent {
                silence += self.options.pong_timeout;
            }
            let keepalive = self.last_heard + silence;
            let wait = deadline.map_or(keepalive, |d| d.min(keepalive));
            let Some(item) = self.reader.recv_until(wait)? else {
                if deadline.is_some_and(|d| d <= keepalive) {
                    return Ok(None);
                }
                if self.ping_sent {
                    return Err(ClientError::TimedOut {
                        during: Phase::Keepalive,
                        after: silence,
                    });
                }
                self.sender.ping()?;
                self.ping_sent = true;
                continue;
            };
            self.last_heard = Instant::now();
            self.ping_sent = false;
            match item {
                Incoming::Text(payload) | Incoming::Binary(payload) => {
                    return Ok(Some(Received::parse(&payload)))
                }
                Incoming::Ping(payload) => self.sender.pong(&payload)?,
                Incoming::Pong(_) => {}
                Incoming::Close(frame) => return Err(self.handle_close(frame)),
            }
        }
    }

    /// The server's close frame: answer it unless it answers ours (RFC 6455 §5.5.1),
    /// then let the server end the TCP connection first (§7.1.1).
    fn handle_close(&mut self, frame: Option<(u16, bytes::Bytes)>) -> ClientError {
        let code = frame.as_ref().map(|(code, _)| *code);
        let _ = self.sender.writer().send_close(code);
        self.reader
            .wait_for_end(Instant::now() + self.options.close_timeout);
        let (code, reason) = frame.map_or((1005, String::new()), |(code, reason)| {
            (code, String::from_utf8_lossy(&reason).into_owned())
        });
        ClientError::Closed { code, reason }
    }
}
