//! The reconnecting client: a background thread that owns the connection, reconnects
//! with the [`Backoff`] schedule when it fails or is lost (to the next of its URLs,
//! when it has several), rejoins the rooms and re-applies the metadata it was asked
//! for (asking to recover each room's messages from where it had read them, see
//! `history.rs`), and reports everything as [`Event`]s on a channel. Commands come in
//! through a [`ClientHandle`]. It never touches the codec directly; `conn.rs` does.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::backoff::Backoff;
use super::config::ClientConfig;
use super::conn::{ConnSender, Connection};
use super::error::ClientError;
use super::event::{Event, StopReason};
use super::history::{Positions, Seen};
use super::url::{Rotation, WsUrl};
use crate::proto::{ClientMessage, Received, RequestId};

/// Events the application may leave unread before the client stops reading the
/// socket. Past it the server sees a slow consumer (and closes it with 1008).
pub const EVENT_CAPACITY: usize = 1024;

enum Input {
    Send(ClientMessage, Option<RequestId>),
    SendText(String),
    Close,
    /// The reading thread of connection `generation` ended with `error`.
    Lost {
        generation: u64,
        error: ClientError,
    },
}

/// A reconnecting client. Read its [`Client::events`]; send with its
/// [`Client::handle`] (clone the handle for other threads).
///
/// ```no_run
/// use ringcast::client::{Client, ClientConfig, Event};
/// let client = Client::start("ws://127.0.0.1:8080/", ClientConfig::reconnecting())?;
/// client.handle().join_room("lobby");
/// for event in client.events() {
///     match event {
///         Event::Message(received) => println!("{}", received.raw),
///         Event::Stopped(_) => break,
///         other => eprintln!("{other:?}"),
///     }
/// }
/// # Ok::<(), ringcast::client::ClientError>(())
/// ```
pub struct Client {
    handle: ClientHandle,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    /// Checks the URL and configuration, then connects in a background thread;
    /// returns at once. The first event is `Connected` or `ConnectFailed`.
    pub fn start(url: &str, config: ClientConfig) -> Result<Client, ClientError> {
        Client::start_any([url], config)
    }

    /// [`Client::start`] with several URLs, e.g. the nodes of a cluster: every URL is
    /// checked first (the first bad one is the error, and an empty list is
    /// [`ClientError::InvalidConfig`]). The first attempt goes to the first URL, and
    /// each later attempt (on the [`Backoff`] schedule, after a failed attempt or a
    /// lost connection) to the next one, round-robin, so a client whose node died
    /// reconnects to another. Without a reconnect policy only the first is tried.
    ///
    /// ```no_run
    /// use ringcast::client::{Client, ClientConfig};
    /// let nodes = ["ws://10.0.0.1:8080/", "ws://10.0.0.2:8080/"];
    /// let client = Client::start_any(nodes, ClientConfig::reconnecting())?;
    /// # Ok::<(), ringcast::client::ClientError>(())
    /// ```
    pub fn start_any<I, S>(urls: I, config: ClientConfig) -> Result<Client, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        config.validate()?;
        let urls = Rotation::parse(urls)?;
        let seed = match config.jitter_seed {
            Some(seed) => seed,
            None => getrandom::u64().map_err(ClientError::Random)?,
        };
        let (inbox_tx, inbox) = mpsc::channel();
        let (events_tx, events) = mpsc::sync_channel(EVENT_CAPACITY);
        let driver = Driver {
            backoff: config.reconnect.clone().map(|p| Backoff::new(p, seed)),
            urls,
            config,
            inbox,
            inbox_tx: inbox_tx.clone(),
            events: events_tx,
            rooms: Vec::new(),
            positions: Arc::default(),
            metadata: Map::new(),
            generation: 0,
            connected_before: false,
        };
        let thread = std::thread::Builder::new()
            .name("ringcast-client".into())
            .spawn(move || driver.run())
            .map_err(|source| ClientError::Io {
                during: super::Phase::Connecting,
                source,
            })?;
        Ok(Client {
            handle: ClientHandle {
                _alive: Arc::new(AliveGuard(inbox_tx.clone())),
                tx: inbox_tx,
            },
            events,
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> &ClientHandle {
        &self.handle
    }

    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// Closes the connection cleanly and waits for the client to stop (within the
    /// connect, handshake and close timeouts); unread events are discarded.
    pub fn close(mut self) {
        self.handle.close();
        while let Ok(event) = self.events.recv() {
            if matches!(event, Event::Stopped(_)) {
                break;
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// The handle and the events, apart; the client stops on [`ClientHandle::close`]
    /// or when the last handle is dropped.
    pub fn into_parts(self) -> (ClientHandle, Receiver<Event>) {
        (self.handle, self.events)
    }
}

/// Sends commands to a [`Client`]; cheap to clone. Every call returns at once:
/// [`ClientError::Stopped`] once the client has ended.
#[derive(Clone)]
pub struct ClientHandle {
    tx: Sender<Input>,
    /// Tells the client when the last handle is gone.
    _alive: Arc<AliveGuard>,
}

struct AliveGuard(Sender<Input>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        let _ = self.0.send(Input::Close);
    }
}

impl ClientHandle {
    fn push(&self, input: Input) -> Result<(), ClientError> {
        self.tx.send(input).map_err(|_| ClientError::Stopped)
    }

    /// Sends any request. Joins, leaves and metadata are also remembered, and
    /// re-applied after every reconnect.
    pub fn send(&self, message: ClientMessage) -> Result<(), ClientError> {
        self.push(Input::Send(message, None))
    }

    /// Sends a request with an `id` (**ext**).
    pub fn send_with_id(&self, message: ClientMessage, id: RequestId) -> Result<(), ClientError> {
        self.push(Input::Send(message, Some(id)))
    }

    /// Sends text as it is (a raw JSON line). A join, leave or metadata request in
    /// it is remembered like one sent with [`ClientHandle::send`].
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.push(Input::SendText(text.into()))
    }

    pub fn join_room(&self, room: impl Into<String>) -> Result<(), ClientError> {
        self.send(ClientMessage::join_room(room))
    }

    pub fn leave_room(&self, room: impl Into<String>) -> Result<(), ClientError> {
        self.send(ClientMessage::leave_room(room))
    }

    pub fn room_message(
        &self,
        room: impl Into<String>,
        message: impl Into<Value>,
    ) -> Result<(), ClientError> {
        self.send(ClientMessage::room_message(room, message))
    }

    pub fn broadcast(&self, message: impl Into<Value>) -> Result<(), ClientError> {
        self.send(ClientMessage::broadcast(message))
    }

    pub fn private_message(
        &self,
        to: impl Into<String>,
        message: impl Into<Value>,
    ) -> Result<(), ClientError> {
        self.send(ClientMessage::private_message(to, message))
    }

    /// Merges `metadata` into this client's metadata, now and after every reconnect.
    pub fn set_metadata(&self, metadata: Map<String, Value>) -> Result<(), ClientError> {
        self.send(ClientMessage::set_metadata(metadata))
    }

    /// Closes the connection cleanly; the client then stops ([`StopReason::Closed`]).
    pub fn close(&self) {
        let _ = self.tx.send(Input::Close);
    }
}

/// The live connection.
struct Live {
    sender: ConnSender,
    generation: u64,
    since: Instant,
    /// The first failed write: the cause of the loss the reader will report.
    write_error: Option<ClientError>,
}

enum Ended {
    Closed,
    Lost {
        reason: ClientError,
        up_for: Duration,
    },
}

/// The background thread's state.
struct Driver {
    /// Where each attempt goes, in turn.
    urls: Rotation,
    config: ClientConfig,
    backoff: Option<Backoff>,
    inbox: Receiver<Input>,
    /// For the reading threads.
    inbox_tx: Sender<Input>,
    events: SyncSender<Event>,
    /// Rooms asked for, in join order.
    rooms: Vec<String>,
    /// How far each room's history was read. The reading thread moves it as messages
    /// arrive (it must see them in order, before the application does); this thread
    /// reads it to rejoin and notes joins, leaves and our own room messages. The lock
    /// is held for a map update only, never across I/O.
    positions: Arc<Mutex<Positions>>,
    metadata: Map<String, Value>,
    generation: u64,
    connected_before: bool,
}

impl Driver {
    fn run(mut self) {
        let mut wait_first = false;
        loop {
            let Some(live) = self.connect(wait_first) else {
                return;
            };
            match self.serve(live) {
                Ended::Closed => {
                    self.emit(Event::Stopped(StopReason::Closed));
                    return;
                }
                Ended::Lost { reason, up_for } => {
                    self.emit(Event::Disconnected { reason });
                    if let Some(backoff) = &mut self.backoff {
                        backoff.connection_ended(up_for);
                    }
                    wait_first = true;
                }
            }
        }
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Connects, retrying on the backoff schedule. `None`: the client stopped (the
    /// `Stopped` event is out).
    fn connect(&mut self, mut wait_first: bool) -> Option<Live> {
        loop {
            if wait_first {
                let next = self
                    .backoff
                    .as_mut()
                    .and_then(|b| Some((b.next()?, b.attempt())));
                let Some((delay, attempt)) = next else {
                    self.emit(Event::Stopped(StopReason::GaveUp));
                    return None;
                };
                self.emit(Event::Reconnecting { attempt, delay });
                if !self.wait(delay) {
                    self.emit(Event::Stopped(StopReason::Closed));
                    return None;
                }
            }
            let url = self.urls.next_url().clone();
            match Connection::connect_url(&url, &self.config.connect) {
                Ok(conn) => return Some(self.go_live(conn, url)),
                Err(error) => {
                    let permanent = error.is_permanent();
                    self.emit(Event::ConnectFailed { url, error });
                    if permanent {
                        self.emit(Event::Stopped(StopReason::GaveUp));
                        return None;
                    }
                    wait_first = true;
                }
            }
        }
    }

    /// Waits `delay` while taking commands. `false`: asked to close.
    fn wait(&mut self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(left) {
                Ok(Input::Close) => return false,
                Ok(Input::Send(message, _)) => self.offline(Some(message), || None),
                Ok(Input::SendText(text)) => {
                    self.offline(ClientMessage::parse(&text), || Some(text))
                }
                Ok(Input::Lost { .. }) => {}
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// A command while no connection is up: remember it if it is state, else report
    /// it unsent.
    fn offline(&mut self, message: Option<ClientMessage>, text: impl FnOnce() -> Option<String>) {
        if let Some(message) = &message {
            if self.remember(message) {
                return;
            }
        }
        let text = text()
            .or_else(|| message.map(|m| m.to_json()))
            .unwrap_or_default();
        self.emit(Event::NotSent { text });
    }

    /// Tracks joins, leaves and metadata to re-apply them after a reconnect. Returns
    /// whether `message` was one of them.
    fn remember(&mut self, message: &ClientMessage) -> bool {
        match message {
            ClientMessage::JoinRoom { room, recover } => {
                // An empty name is refused by the server ("Room name required").
                if !room.is_empty() {
                    if !self.rooms.contains(room) {
                        self.rooms.push(room.clone());
                    }
                    self.positions().handle_join(room, recover.as_ref());
                }
            }
            ClientMessage::LeaveRoom { room } => {
                self.rooms.retain(|r| r != room);
                self.positions().handle_leave(room);
            }
            ClientMessage::SetMetadata { metadata } => {
                for (key, value) in metadata {
                    self.metadata.insert(key.clone(), value.clone());
                }
            }
            _ => return false,
        }
        true
    }

    /// Reports the new connection, starts its reading thread and re-applies state.
    fn go_live(&mut self, conn: Connection, url: WsUrl) -> Live {
        self.generation += 1;
        let generation = self.generation;
        self.emit(Event::Connected {
            url,
            client_id: conn.client_id().to_string(),
            reconnected: self.connected_before,
        });
        self.connected_before = true;
        self.emit(Event::Message(conn.welcome().clone()));
        let (mut reader, sender) = conn.split();
        let (events, inbox) = (self.events.clone(), self.inbox_tx.clone());
        let positions = Arc::clone(&self.positions);
        // Messages go straight to the application's channel: when it is full this
        // thread stops reading the socket, and TCP backpressure reaches the server.
        let spawned = std::thread::Builder::new()
            .name("ringcast-client-reader".into())
            .spawn(move || loop {
                match reader.recv() {
                    Ok(received) => {
                        let seen = lock(&positions).handle(&received.message);
                        if !send_seen(&events, seen, received) {
                            break;
                        }
                    }
                    Err(error) => {
                        let _ = inbox.send(Input::Lost { generation, error });
                        break;
                    }
                }
            });
        let mut live = Live {
            sender,
            generation,
            since: Instant::now(),
            write_error: None,
        };
        if let Err(source) = spawned {
            self.fail(
                &mut live,
                ClientError::Io {
                    during: super::Phase::Reading,
                    source,
                },
            );
            let _ = self.inbox_tx.send(Input::Lost {
                generation,
                error: ClientError::ConnectionLost,
            });
        }
        // Each rejoin asks to recover from where the room was read to. The position is
        // marked asked before the join goes out, so the reader sees it with the reply.
        let rejoin: Vec<ClientMessage> = {
            let mut positions = self.positions();
            let rooms = self.rooms.iter();
            rooms
                .map(|room| ClientMessage::JoinRoom {
                    room: room.clone(),
                    recover: positions.rejoin(room),
                })
                .collect()
        };
        for message in rejoin {
            self.send_live(&mut live, &message, None);
        }
        if !self.metadata.is_empty() {
            let metadata = ClientMessage::set_metadata(self.metadata.clone());
            self.send_live(&mut live, &metadata, None);
        }
        live
    }

    /// Runs a live connection until it is lost or the client is closed.
    fn serve(&mut self, mut live: Live) -> Ended {
        loop {
            let input = self.inbox.recv().unwrap_or(Input::Close);
            match input {
                Input::Send(message, id) => {
                    self.remember(&message);
                    self.note_own_message(&message);
                    self.send_live(&mut live, &message, id.as_ref());
                }
                Input::SendText(text) => {
                    if let Some(message) = ClientMessage::parse(&text) {
                        self.remember(&message);
                        self.note_own_message(&message);
                    }
                    if let Err(error) = live.sender.send_text(&text) {
                        self.emit(Event::NotSent { text });
                        self.fail(&mut live, error);
                    }
                }
                Input::Close => {
                    self.close_live(&live);
                    return Ended::Closed;
                }
                Input::Lost { generation, error } if generation == live.generation => {
                    return Ended::Lost {
                        reason: live.write_error.take().unwrap_or(error),
                        up_for: live.since.elapsed(),
                    };
                }
                Input::Lost { .. } => {}
            }
        }
    }

    fn positions(&self) -> MutexGuard<'_, Positions> {
        lock(&self.positions)
    }

    /// Our room message about to go out takes an offset we will never see; counted
    /// first, so the reader knows it before any later message can arrive.
    fn note_own_message(&self, message: &ClientMessage) {
        if let ClientMessage::RoomMessage { room, .. } = message {
            self.positions().handle_own_message(room);
        }
    }

    fn send_live(&self, live: &mut Live, message: &ClientMessage, id: Option<&RequestId>) {
        let result = match id {
            Some(id) => live.sender.send_with_id(message, id),
            None => live.sender.send(message),
        };
        if let Err(error) = result {
            self.emit(Event::NotSent {
                text: message.to_json(),
            });
            self.fail(live, error);
        }
    }

    /// A write failed: end the connection; its reader reports the loss, with this
    /// error as the cause.
    fn fail(&self, live: &mut Live, error: ClientError) {
        if live.write_error.is_none() {
            live.write_error = Some(error);
        }
        live.sender.shutdown();
    }

    /// The closing handshake: our close, then the reader's report that the server
    /// answered (or the close timeout).
    fn close_live(&mut self, live: &Live) {
        if live.sender.close().is_ok() {
            let deadline = Instant::now() + self.config.connect.close_timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.inbox.recv_timeout(left) {
                    Ok(Input::Lost { generation, .. }) if generation == live.generation => break,
                    Ok(Input::Send(message, _)) => self.emit(Event::NotSent {
                        text: message.to_json(),
                    }),
                    Ok(Input::SendText(text)) => self.emit(Event::NotSent { text }),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        live.sender.shutdown();
    }
}

fn lock(positions: &Mutex<Positions>) -> MutexGuard<'_, Positions> {
    // A panic mid-update leaves at worst one stale position: a rejoin then asks for
    // too much (the extra is dropped as duplicates) or too little (a gap, reported).
    positions
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends one received message's events in order: a note before it, the message
/// unless it was a duplicate, a note after it. `false`: the application is gone.
fn send_seen(events: &SyncSender<Event>, seen: Seen, received: Received) -> bool {
    let Seen {
        before,
        deliver,
        after,
    } = seen;
    let message = deliver.then_some(Event::Message(received));
    before
        .map(Event::from)
        .into_iter()
        .chain(message)
        .chain(after.map(Event::from))
        .all(|event| events.send(event).is_ok())
}
