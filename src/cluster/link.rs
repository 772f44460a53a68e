//! The link to Redis: one RESP3 connection per node, written by the writer thread (the
//! cores' ops, heartbeats, the reaper) and read by the reader thread (replies and
//! pub/sub messages, in the one order Redis produced them). RESP3 lets one connection
//! subscribe and run commands, so a `SUBSCRIBE` written before a join script is in
//! effect when the script publishes: no round trip to wait for, and nothing to merge.
//!
//! The writer keeps, per room, how many of this node's memberships are counted or on
//! the way; it subscribes to the room's channel when that goes 0→1 and unsubscribes
//! after the leave that takes it to 0. The reader plays the rooms' home role for the
//! node (`node_rooms.rs`) and posts envelopes to the cores' inboxes, waiting for room
//! when an inbox is full (Redis then buffers for us, up to its
//! `client-output-buffer-limit pubsub`).
//!
//! Losing Redis: the node serves its own clients; joins and leaves are kept in order
//! (up to `max_pending_changes`) and applied on reconnect, together with any whose
//! reply was lost with the connection (the scripts are idempotent); cross-node
//! messages are dropped and counted; private messages to other nodes and room checks
//! are answered at once (`Recipient not found`, `Room does not exist`). Reconnects back
//! off from 100 ms to 5 s. If the node's heartbeat key expired meanwhile (other nodes
//! have removed its members), or the kept changes overflowed, the node restarts: a new
//! node id, and every client closed with 1012 to reconnect and rejoin.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use redis_protocol::resp3::types::BytesFrame;
use serde_json::value::RawValue;

use super::node_rooms::{Join, NodeRooms, Posts};
use super::resp::{decode, error_text, put_command, put_simple, RedisUrl, RespConn};
use super::wire::{self, Event, PrivateReply};
use super::{scripts, ClusterError};
use crate::hub::{Hub, Mailbox};
use crate::proto::{error_frame, RequestError};
use crate::proto::{frame_with_offset, Recover};
use crate::rooms::{
    cluster_client_id, ClusterOp, Envelope, HistoryLimits, JoinHistory, LinkCommand,
};
use crate::stats::ClusterStats;
use crate::{ConnId, CoreId};

/// Memberships the reaper removes per call.
const REAP_BATCH: usize = 1000;
/// How long a private message to another node waits for its outcome before the
/// sender is told `Recipient not found` (the other node died with it).
const PRIVATE_TIMEOUT: Duration = Duration::from_secs(5);
/// The first and the longest wait between reconnect attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// How long set-up commands and the goodbye may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the link needs from the node.
pub struct LinkSetup {
    pub url: RedisUrl,
    /// The configured `node_id` (each life is `<node_id>-<n>`), or none (random).
    pub base: Option<Arc<str>>,
    pub cores: usize,
    pub hub: Arc<Hub<Envelope>>,
    pub mailbox: Arc<Mailbox<LinkCommand>>,
    pub stats: Arc<ClusterStats>,
    pub ttl: Duration,
    pub max_pending: usize,
    /// `history_size` and `history_ttl_s` (see `rooms::history`), applied in Redis.
    pub history: HistoryLimits,
}

/// The SHA1s of the loaded scripts.
struct Scripts {
    join: String,
    leave: String,
    reap: String,
    room_message: String,
}

/// What the reader must do with the reply to each command, in command order.
#[derive(Debug)]
enum Expect {
    Ignore,
    Join {
        room: Arc<str>,
        member: ConnId,
        token: u32,
        id: Option<Box<RawValue>>,
        recover: Option<Box<Recover>>,
    },
    Leave {
        room: Arc<str>,
        member: ConnId,
    },
    /// Its reply follows the message's own event: then the sender's core may be told
    /// it went on (`Sequenced`).
    RoomMessage {
        sender: ConnId,
    },
    Private {
        from: ConnId,
        token: u32,
        id: Option<Box<RawValue>>,
    },
    Exists {
        member: ConnId,
        token: u32,
        id: Option<Box<RawValue>>,
    },
    Reap,
    Heartbeat,
}

/// What the writer and the reader of one connection share.
struct Session {
    expects: Mutex<VecDeque<Expect>>,
    reader_done: AtomicBool,
    reap_more: AtomicBool,
    /// Set by the writer when the link stops: the reader stops waiting for full
    /// inboxes.
    closing: AtomicBool,
}

/// The running link; [`LinkHandle::stop`] says goodbye to Redis and ends it.
pub struct LinkHandle {
    stop: Arc<AtomicBool>,
    mailbox: Arc<Mailbox<LinkCommand>>,
    thread: JoinHandle<()>,
}

impl LinkHandle {
    /// Sends what the cores queued (their clients' leaves), removes the heartbeat key
    /// and closes the connection. Call once the cores have ended.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.mailbox.wake_consumer();
        let _ = self.thread.join();
    }
}

/// Connects and sets up the first session (an unreachable Redis is an error, so the
/// node refuses to start), then runs the link on its own thread. Gives the node id of
/// this life too.
pub fn start(setup: LinkSetup) -> Result<(LinkHandle, Arc<str>), ClusterError> {
    let conn = RespConn::connect(&setup.url, SETUP_TIMEOUT)?;
    let mut writer = Writer::new(setup);
    let session = writer.begin(conn)?;
    let node = writer.node.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let mailbox = writer.setup.mailbox.clone();
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("ringcast-cluster".into())
            .spawn(move || writer.run(session, &stop))
            .map_err(ClusterError::Io)?
    };
    let handle = LinkHandle {
        stop,
        mailbox,
        thread,
    };
    Ok((handle, node))
}

/// A connection's live parts, as the writer holds them.
struct Live {
    stream: TcpStream,
    session: Arc<Session>,
    reader: JoinHandle<NodeRooms>,
}

struct Writer {
    setup: LinkSetup,
    node: Arc<str>,
    epoch: u32,
    scripts: Option<Scripts>,
    /// This node's memberships per room, counted or on the way (the room's channel is
    /// subscribed while above 0).
    subscriptions: HashMap<Arc<str>, u32>,
    /// When this node last refreshed each room's history keys' TTL (rooms it is
    /// subscribed to; see `scripts::ROOM_MESSAGE`).
    refreshed: HashMap<Arc<str>, Instant>,
    /// Joins and leaves made while Redis was unreachable, or sent and unanswered when
    /// it went: sent first on reconnect.
    pending: VecDeque<ClusterOp>,
    overflowed: bool,
    /// The home role's state between connections (the reader has it while one runs).
    rooms: Option<NodeRooms>,
    connected_before: bool,
    /// The current node id has a heartbeat key in Redis (so a reconnect that finds it
    /// gone knows the node's state there is gone).
    registered: bool,
    buf: BytesMut,
    expects: Vec<Expect>,
    next_heartbeat: Instant,
    next_reap: Instant,
    /// Makes epoch candidates unique: `<node>.<n>`.
    epochs_made: u64,
    /// `history_ttl_s` in milliseconds (what the scripts set on the room's keys).
    history_ttl_ms: u64,
}

impl Writer {
    fn new(setup: LinkSetup) -> Writer {
        let node: Arc<str> = "(not connected yet)".into();
        let rooms = NodeRooms::new(node.clone(), setup.cores);
        Writer {
            node,
            epoch: 0,
            scripts: None,
            subscriptions: HashMap::new(),
            refreshed: HashMap::new(),
            pending: VecDeque::new(),
            overflowed: false,
            rooms: Some(rooms),
            connected_before: false,
            registered: false,
            buf: BytesMut::with_capacity(64 * 1024),
            expects: Vec::new(),
            next_heartbeat: Instant::now(),
            next_reap: Instant::now(),
            epochs_made: 0,
            history_ttl_ms: setup.history.ttl_s * 1000,
            setup,
        }
    }

    /// Sets a connection up: scripts, registration (restarting the node if its state
    /// in Redis is gone), subscriptions, the kept changes; then starts its reader.
    fn begin(&mut self, mut conn: RespConn) -> Result<Live, ClusterError> {
        let load = |conn: &mut RespConn, script: &str| -> Result<String, ClusterError> {
            match conn.call(&[b"SCRIPT", b"LOAD", script.as_bytes()])? {
                BytesFrame::BlobString { data, .. } | BytesFrame::SimpleString { data, .. } => {
                    Ok(String::from_utf8_lossy(&data).into_owned())
                }
                other => Err(ClusterError::Protocol(format!(
                    "SCRIPT LOAD answered {other:?}"
                ))),
            }
        };
        self.scripts = Some(Scripts {
            join: load(&mut conn, scripts::JOIN)?,
            leave: load(&mut conn, scripts::LEAVE)?,
            reap: load(&mut conn, scripts::REAP)?,
            room_message: load(&mut conn, scripts::ROOM_MESSAGE)?,
        });
        if !self.connected_before {
            let node = self.new_life(&mut conn)?;
            self.rooms = Some(NodeRooms::new(node.clone(), self.setup.cores));
            self.node = node;
        } else if self.registered {
            let old = wire::alive_key(&self.node);
            let alive = conn.call(&[b"EXISTS", old.as_bytes()])?;
            let alive = matches!(alive, BytesFrame::Number { data: 1, .. });
            if self.overflowed || !alive {
                if alive {
                    // Our previous life ends here: its members leave (with their
                    // notices) before its clients are told to rejoin.
                    conn.call(&[b"DEL", old.as_bytes()])?;
                    self.reap_now(&mut conn)?;
                }
                let node = self.new_life(&mut conn)?;
                self.restart(node);
            }
        }
        // The heartbeat key before the registration: a reaper never finds this node
        // registered without one.
        let ttl = self.setup.ttl.as_millis().to_string();
        let alive = wire::alive_key(&self.node);
        conn.call(&[b"SET", alive.as_bytes(), b"1", b"PX", ttl.as_bytes()])?;
        conn.call(&[b"SADD", wire::NODES.as_bytes(), self.node.as_bytes()])?;
        self.registered = true;
        self.next_heartbeat = Instant::now() + self.setup.ttl / 3;
        self.subscriptions.retain(|_, count| *count > 0);
        let mut channels = vec![wire::node_channel(&self.node), wire::ALL.to_string()];
        channels.extend(self.subscriptions.keys().map(|room| wire::room_key(room)));
        for chunk in channels.chunks(1000) {
            let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
            args.extend(chunk.iter().map(|c| c.as_bytes()));
            put_simple(&mut self.buf, &args);
        }
        for op in std::mem::take(&mut self.pending) {
            self.encode(op, false);
        }
        conn.stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(ClusterError::Io)?;
        let session = Arc::new(Session {
            expects: Mutex::new(VecDeque::new()),
            reader_done: AtomicBool::new(false),
            reap_more: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        });
        let reader = Reader {
            stream: conn.stream.try_clone().map_err(ClusterError::Io)?,
            buf: conn.read_buf,
            rooms: self
                .rooms
                .take()
                .expect("the rooms are back between connections"),
            session: session.clone(),
            hub: self.setup.hub.clone(),
            mailbox: self.setup.mailbox.clone(),
            stats: self.setup.stats.clone(),
            outstanding: HashMap::new(),
            held_join: None,
        };
        let reader = std::thread::Builder::new()
            .name("ringcast-cluster-rd".into())
            .spawn(move || reader.run())
            .map_err(ClusterError::Io)?;
        if self.connected_before {
            ClusterStats::count(&self.setup.stats.reconnects);
        }
        self.connected_before = true;
        self.setup.stats.set_up(true);
        Ok(Live {
            stream: conn.stream,
            session,
            reader,
        })
    }

    /// The id of a new life: random, or with `node_id` set, `<node_id>-<n>` where n
    /// counts that id's lives in Redis, so no client id is ever given twice and a
    /// restarted node never takes over its dead predecessor's members (they are
    /// reaped once its heartbeat key expires).
    fn new_life(&mut self, conn: &mut RespConn) -> Result<Arc<str>, ClusterError> {
        let Some(base) = self.setup.base.clone() else {
            return Ok(super::random_node_id().into());
        };
        let key = wire::lives_key(&base);
        match conn.call(&[b"INCR", key.as_bytes()])? {
            BytesFrame::Number { data, .. } => Ok(format!("{base}-{data}").into()),
            other => Err(ClusterError::Protocol(format!("INCR answered {other:?}"))),
        }
    }

    /// Runs the reaper until it has nothing more to remove.
    fn reap_now(&mut self, conn: &mut RespConn) -> Result<(), ClusterError> {
        let sha = self
            .scripts
            .as_ref()
            .expect("loaded at connect")
            .reap
            .clone();
        let batch = REAP_BATCH.to_string();
        loop {
            let reaped = conn.call(&[b"EVALSHA", sha.as_bytes(), b"0", batch.as_bytes()])?;
            if !matches!(reaped, BytesFrame::Number { data, .. } if data >= REAP_BATCH as i64) {
                return Ok(());
            }
        }
    }

    /// The node's state in Redis is gone: start a new life under `node`, and have
    /// every core close its clients (they reconnect and rejoin).
    fn restart(&mut self, node: Arc<str>) {
        self.node = node;
        self.epoch += 1;
        self.subscriptions.clear();
        self.refreshed.clear();
        self.pending.clear();
        self.overflowed = false;
        self.registered = false;
        self.rooms = Some(NodeRooms::new(self.node.clone(), self.setup.cores));
        ClusterStats::count(&self.setup.stats.restarts);
        tracing::warn!(
            "cluster: this node's state in Redis is gone; restarting its clients as node {}",
            self.node
        );
        let mut posts: Posts = (0..self.setup.cores as u16)
            .map(|core| {
                let envelope = Envelope::Restart {
                    node: self.node.clone(),
                    epoch: self.epoch,
                };
                (CoreId(core), envelope)
            })
            .collect();
        post_all(&self.setup.hub, &mut posts);
    }

    /// Runs connections until `stop`, reconnecting after each loss.
    fn run(mut self, first: Live, stop: &AtomicBool) {
        self.setup.mailbox.set_consumer(std::thread::current());
        let mut live = Some(first);
        loop {
            if let Some(current) = live.take() {
                let stopped = self.serve(&current, stop);
                self.end(current, stopped);
                if stopped {
                    return;
                }
            }
            match self.reconnect(stop) {
                Some(next) => live = Some(next),
                None => return,
            }
        }
    }

    /// Writes the cores' ops and the periodic commands until the connection fails
    /// or `stop` (then says goodbye). Returns whether it stopped.
    fn serve(&mut self, live: &Live, stop: &AtomicBool) -> bool {
        let mut stream = &live.stream;
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            let mut popped = 0;
            while popped < 4096 {
                let Some((epoch, op)) = self.setup.mailbox.pop() else {
                    break;
                };
                popped += 1;
                if epoch == self.epoch || matches!(op, ClusterOp::PrivateOutcome { .. }) {
                    self.accept(&op);
                    self.encode(op, true);
                }
            }
            self.periodic(&live.session);
            if stopping && self.setup.mailbox.is_empty() {
                let alive = wire::alive_key(&self.node);
                put_simple(&mut self.buf, &[b"DEL", alive.as_bytes()]);
                self.expects.push(Expect::Ignore);
            }
            if !self.buf.is_empty() {
                let count = self.expects.len() as u64;
                live.session
                    .expects
                    .lock()
                    .expect("no panics holding it")
                    .extend(self.expects.drain(..));
                self.setup
                    .stats
                    .commands
                    .fetch_add(count, Ordering::Relaxed);
                if let Err(e) = stream.write_all(&self.buf) {
                    tracing::warn!("cluster: writing to Redis: {e}");
                    self.buf.clear();
                    return false;
                }
                self.buf.clear();
            }
            if live.session.reader_done.load(Ordering::SeqCst) {
                return false;
            }
            if stopping && self.setup.mailbox.is_empty() {
                // Wait (bounded) for the replies, so the leaves have run.
                let deadline = Instant::now() + SETUP_TIMEOUT;
                while !live
                    .session
                    .expects
                    .lock()
                    .expect("no panics holding it")
                    .is_empty()
                    && Instant::now() < deadline
                    && !live.session.reader_done.load(Ordering::SeqCst)
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                return true;
            }
            if popped == 0 {
                let next = self.next_heartbeat.min(self.next_reap);
                let wait = next.saturating_duration_since(Instant::now());
                self.setup
                    .mailbox
                    .wait(wait.min(Duration::from_millis(100)));
            }
        }
    }

    /// Heartbeat and reaper, when due.
    fn periodic(&mut self, session: &Session) {
        let now = Instant::now();
        if now >= self.next_heartbeat {
            let ttl = self.setup.ttl.as_millis().to_string();
            let alive = wire::alive_key(&self.node);
            // XX: only while it exists. If it expired (the node stalled past its TTL),
            // other nodes may have removed its members: the reader then ends the
            // connection and the next one restarts the node.
            let command: [&[u8]; 6] =
                [b"SET", alive.as_bytes(), b"1", b"PX", ttl.as_bytes(), b"XX"];
            put_simple(&mut self.buf, &command);
            self.expects.push(Expect::Heartbeat);
            self.next_heartbeat = now + self.setup.ttl / 3;
        }
        if now >= self.next_reap || session.reap_more.swap(false, Ordering::SeqCst) {
            let sha = &self.scripts.as_ref().expect("loaded at connect").reap;
            let batch = REAP_BATCH.to_string();
            put_simple(
                &mut self.buf,
                &[b"EVALSHA", sha.as_bytes(), b"0", batch.as_bytes()],
            );
            self.expects.push(Expect::Reap);
            self.next_reap = now + (self.setup.ttl / 2).min(Duration::from_secs(1));
        }
    }

    /// Counts a membership change in `subscriptions` (when the core made it).
    fn accept(&mut self, op: &ClusterOp) {
        match op {
            ClusterOp::Join { room, .. } => {
                let count = self.subscriptions.entry(room.clone()).or_insert(0);
                *count += 1;
                if *count == 1 {
                    put_simple(
                        &mut self.buf,
                        &[b"SUBSCRIBE", wire::room_key(room).as_bytes()],
                    );
                }
            }
            ClusterOp::Leave { room, .. } => {
                if let Some(count) = self.subscriptions.get_mut(room) {
                    *count -= 1;
                }
            }
            _ => {}
        }
    }

    /// Writes the commands for one op; `live` ops may end a room's subscription.
    fn encode(&mut self, op: ClusterOp, live: bool) {
        let node = self.node.clone();
        let scripts = self.scripts.as_ref().expect("loaded at connect");
        let buf = &mut self.buf;
        match op {
            ClusterOp::Join {
                room,
                member,
                token,
                id,
                recover,
            } => {
                let client = cluster_client_id(&node, member);
                let id_text = id.as_deref().map_or("", RawValue::get);
                let (key, members, token_text) = (
                    wire::room_key(&room),
                    wire::members_key(&node),
                    token.to_string(),
                );
                let (seq, stream) = (wire::seq_key(&room), wire::history_key(&room));
                self.epochs_made += 1;
                let candidate = format!("{node}.{}", self.epochs_made);
                let ttl = self.history_ttl_ms.to_string();
                let (asked, epoch, from) = match &recover {
                    Some(r) => ("1", r.epoch.as_str(), r.offset.to_string()),
                    None => ("0", "", String::new()),
                };
                put_simple(
                    buf,
                    &[
                        b"EVALSHA",
                        scripts.join.as_bytes(),
                        b"4",
                        key.as_bytes(),
                        members.as_bytes(),
                        seq.as_bytes(),
                        stream.as_bytes(),
                        node.as_bytes(),
                        client.as_bytes(),
                        room.as_bytes(),
                        token_text.as_bytes(),
                        id_text.as_bytes(),
                        candidate.as_bytes(),
                        ttl.as_bytes(),
                        asked.as_bytes(),
                        epoch.as_bytes(),
                        from.as_bytes(),
                    ],
                );
                self.expects.push(Expect::Join {
                    room,
                    member,
                    token,
                    id,
                    recover,
                });
            }
            ClusterOp::Leave { room, member } => {
                let client = cluster_client_id(&node, member);
                let (key, members) = (wire::room_key(&room), wire::members_key(&node));
                put_simple(
                    buf,
                    &[
                        b"EVALSHA",
                        scripts.leave.as_bytes(),
                        b"2",
                        key.as_bytes(),
                        members.as_bytes(),
                        node.as_bytes(),
                        client.as_bytes(),
                        room.as_bytes(),
                    ],
                );
                if live && self.subscriptions.get(&room) == Some(&0) {
                    self.subscriptions.remove(&room);
                    self.refreshed.remove(&room);
                    put_simple(buf, &[b"UNSUBSCRIBE", key.as_bytes()]);
                }
                self.expects.push(Expect::Leave { room, member });
            }
            ClusterOp::RoomMessage { room, sender, open } => {
                let (seq, stream, key) = (
                    wire::seq_key(&room),
                    wire::history_key(&room),
                    wire::room_key(&room),
                );
                self.epochs_made += 1;
                let candidate = format!("{node}.{}", self.epochs_made);
                let (ttl, size) = (
                    self.history_ttl_ms.to_string(),
                    self.setup.history.size.to_string(),
                );
                let client = cluster_client_id(&node, sender);
                let now = Instant::now();
                let quarter = Duration::from_millis(self.history_ttl_ms / 4);
                let refresh = match self.refreshed.get(&room) {
                    Some(at) if now.duration_since(*at) < quarter => b"0",
                    _ => {
                        self.refreshed.insert(room.clone(), now);
                        b"1"
                    }
                };
                put_simple(
                    buf,
                    &[
                        b"EVALSHA",
                        scripts.room_message.as_bytes(),
                        b"3",
                        seq.as_bytes(),
                        stream.as_bytes(),
                        key.as_bytes(),
                        candidate.as_bytes(),
                        ttl.as_bytes(),
                        size.as_bytes(),
                        client.as_bytes(),
                        &open,
                        refresh,
                    ],
                );
                self.expects.push(Expect::RoomMessage { sender });
            }
            ClusterOp::Broadcast { frame } => {
                let header = wire::frame_header(b'B', &node);
                put_command(
                    buf,
                    &[&[b"PUBLISH"], &[wire::ALL.as_bytes()], &[&header, &frame]],
                );
                self.expects.push(Expect::Ignore);
            }
            ClusterOp::Private {
                node: to_node,
                to,
                from,
                frame,
                token,
                id,
            } => {
                let place = PrivateReply { from, token, id };
                let reply = place.encode();
                let header = wire::private_header(&node, to, &reply);
                let channel = wire::node_channel(&to_node);
                put_command(
                    buf,
                    &[
                        &[b"PUBLISH"],
                        &[channel.as_bytes()],
                        &[&header, &reply, &frame],
                    ],
                );
                let PrivateReply { from, token, id } = place;
                self.expects.push(Expect::Private { from, token, id });
            }
            ClusterOp::PrivateOutcome { reply, delivered } => {
                let Some(space) = reply.iter().position(|b| *b == b' ') else {
                    return;
                };
                let channel = wire::node_channel(&String::from_utf8_lossy(&reply[..space]));
                let payload = wire::outcome_payload(delivered, &reply[space + 1..]);
                put_command(buf, &[&[b"PUBLISH"], &[channel.as_bytes()], &[&payload]]);
                self.expects.push(Expect::Ignore);
            }
            ClusterOp::RoomExists {
                room,
                member,
                token,
                id,
            } => {
                put_simple(buf, &[b"EXISTS", wire::room_key(&room).as_bytes()]);
                self.expects.push(Expect::Exists { member, token, id });
            }
        }
    }

    /// After a connection ends: its reader's state back, unanswered joins and leaves
    /// kept for the next connection, other unanswered requests answered now.
    fn end(&mut self, live: Live, stopped: bool) {
        self.setup.stats.set_up(false);
        // Stopping: the cores have ended, their inboxes will not drain. Otherwise the
        // reader posts everything it read (a full inbox drains).
        live.session.closing.store(stopped, Ordering::SeqCst);
        let _ = live.stream.shutdown(Shutdown::Both);
        let rooms = live
            .reader
            .join()
            .unwrap_or_else(|_| NodeRooms::new(self.node.clone(), self.setup.cores));
        self.rooms = Some(rooms);
        if stopped {
            return;
        }
        tracing::error!(
            "cluster: lost the connection to Redis; serving this node's clients only, reconnecting"
        );
        let unanswered: Vec<Expect> = live
            .session
            .expects
            .lock()
            .expect("no panics holding it")
            .drain(..)
            .collect();
        let mut kept: VecDeque<ClusterOp> = VecDeque::new();
        let mut posts = Posts::new();
        for expect in unanswered {
            match expect {
                Expect::Join {
                    room,
                    member,
                    token,
                    id,
                    recover,
                } => kept.push_back(ClusterOp::Join {
                    room,
                    member,
                    token,
                    id,
                    recover,
                }),
                // Sent or not, the sender's later messages may go now.
                Expect::RoomMessage { sender } => {
                    posts.push((sender.core, Envelope::Sequenced { sender }))
                }
                Expect::Leave { room, member } => kept.push_back(ClusterOp::Leave { room, member }),
                Expect::Private { from, token, id } => {
                    posts.push(answer(from, token, RequestError::RecipientNotFound, id))
                }
                Expect::Exists { member, token, id } => {
                    posts.push(answer(member, token, RequestError::RoomDoesNotExist, id))
                }
                Expect::Ignore | Expect::Reap | Expect::Heartbeat => {}
            }
        }
        kept.extend(self.pending.drain(..));
        self.pending = kept;
        post_all(&self.setup.hub, &mut posts);
    }

    /// Reconnects with backoff, handling the cores' ops as a node cut off from Redis
    /// meanwhile. `None` if `stop` came first.
    fn reconnect(&mut self, stop: &AtomicBool) -> Option<Live> {
        let mut backoff = BACKOFF.0;
        loop {
            let deadline = Instant::now() + backoff;
            while Instant::now() < deadline {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                self.drain_while_down();
                self.setup.mailbox.wait(Duration::from_millis(20));
            }
            self.drain_while_down();
            match RespConn::connect(&self.setup.url, SETUP_TIMEOUT)
                .and_then(|conn| self.begin(conn))
            {
                Ok(live) => {
                    tracing::info!(node = %self.node, "cluster: reconnected to Redis");
                    return Some(live);
                }
                Err(e) => {
                    tracing::warn!("cluster: reconnecting to Redis: {e}; next try in {backoff:?}");
                    if self.rooms.is_none() {
                        // `begin` failed after taking them: a fresh start is safest.
                        self.overflowed = true;
                        self.rooms = Some(NodeRooms::new(self.node.clone(), self.setup.cores));
                    }
                }
            }
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// The cores' ops while Redis is unreachable (see the module docs).
    fn drain_while_down(&mut self) {
        let mut posts = Posts::new();
        while let Some((epoch, op)) = self.setup.mailbox.pop() {
            if epoch != self.epoch {
                continue;
            }
            self.accept(&op);
            match op {
                ClusterOp::Join { .. } | ClusterOp::Leave { .. } => {
                    if self.pending.len() < self.setup.max_pending {
                        self.pending.push_back(op);
                    } else {
                        self.overflowed = true;
                    }
                }
                ClusterOp::RoomMessage { room, sender, open } => {
                    // This node's members still get it (without an offset); the
                    // other nodes' do not.
                    ClusterStats::count(&self.setup.stats.dropped);
                    if let Some(rooms) = self.rooms.as_mut() {
                        rooms.room_message_unsequenced(&room, sender, &open, &mut posts);
                    }
                    posts.push((sender.core, Envelope::Sequenced { sender }));
                }
                ClusterOp::Broadcast { .. } | ClusterOp::PrivateOutcome { .. } => {
                    ClusterStats::count(&self.setup.stats.dropped);
                }
                ClusterOp::Private {
                    from, token, id, ..
                } => {
                    posts.push(answer(from, token, RequestError::RecipientNotFound, id));
                }
                ClusterOp::RoomExists {
                    member, token, id, ..
                } => {
                    posts.push(answer(member, token, RequestError::RoomDoesNotExist, id));
                }
            }
        }
        // Nothing subscribes while down; the next connection subscribes afresh.
        self.buf.clear();
        post_all(&self.setup.hub, &mut posts);
    }
}

/// Fills `to`'s held place with `error`.
fn answer(
    to: ConnId,
    token: u32,
    error: RequestError,
    id: Option<Box<RawValue>>,
) -> (CoreId, Envelope) {
    let frame = error_frame(&error, unix_now(), id.as_deref());
    let envelope = Envelope::PrivateDone {
        to,
        token,
        error: Some(frame),
    };
    (to.core, envelope)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Posts in order, waiting while an inbox is full (the cores always drain theirs).
fn post_all(hub: &Hub<Envelope>, posts: &mut Posts) {
    post_until(hub, posts, &AtomicBool::new(false));
}

/// [`post_all`], giving up once `closing` is set (the cores may have ended, and their
/// inboxes will never drain).
fn post_until(hub: &Hub<Envelope>, posts: &mut Posts, closing: &AtomicBool) {
    for (core, mut envelope) in posts.drain(..) {
        loop {
            match hub.try_push(core, envelope) {
                Ok(()) => break,
                Err(_) if closing.load(Ordering::SeqCst) => break,
                Err(back) => {
                    envelope = back;
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
    }
}

/// A client's held place: the client and the token of its place.
type HeldPlace = (ConnId, u32);
/// A private message waiting for its outcome: the request's id and the deadline.
type Waiting = (Option<Box<RawValue>>, Instant);

/// A join event's facts, kept as they are until the home role takes them.
struct JoinEvent {
    total: usize,
    member: String,
    epoch: String,
    offset: u64,
    recovered: Option<bool>,
    token: u32,
    id: Option<Box<RawValue>>,
}

/// A recovering join of a client here, waiting for its script's reply.
struct HeldJoin {
    room: String,
    event: JoinEvent,
}

/// The reader of one connection.
struct Reader {
    stream: TcpStream,
    buf: BytesMut,
    rooms: NodeRooms,
    session: Arc<Session>,
    hub: Arc<Hub<Envelope>>,
    mailbox: Arc<Mailbox<LinkCommand>>,
    stats: Arc<ClusterStats>,
    /// Private messages delivered to another node, waiting for its outcome.
    outstanding: HashMap<HeldPlace, Waiting>,
    /// A recovering join waiting for its script's reply (see `on_join_reply`).
    held_join: Option<HeldJoin>,
}

impl Reader {
    /// Reads until the connection ends; gives the home role's state back.
    fn run(mut self) -> NodeRooms {
        let mut posts = Posts::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut next_sweep = Instant::now() + Duration::from_secs(1);
        loop {
            loop {
                match decode(&mut self.buf) {
                    Ok(Some(frame)) => self.handle(frame, &mut posts),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("cluster: unreadable reply from Redis: {e}");
                        return self.finish(posts);
                    }
                }
                post_until(&self.hub, &mut posts, &self.session.closing);
            }
            if Instant::now() >= next_sweep {
                self.sweep(&mut posts, Instant::now());
                post_until(&self.hub, &mut posts, &self.session.closing);
                next_sweep = Instant::now() + Duration::from_secs(1);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.finish(posts),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return self.finish(posts),
            }
        }
    }

    fn finish(mut self, mut posts: Posts) -> NodeRooms {
        let far_future = Instant::now() + Duration::from_secs(3600);
        self.sweep(&mut posts, far_future);
        post_until(&self.hub, &mut posts, &self.session.closing);
        self.session.reader_done.store(true, Ordering::SeqCst);
        self.mailbox.wake_consumer();
        self.rooms
    }

    /// Answers private messages whose outcome is overdue at `now`.
    fn sweep(&mut self, posts: &mut Posts, now: Instant) {
        self.outstanding.retain(|(from, token), (id, deadline)| {
            if *deadline > now {
                return true;
            }
            posts.push(answer(
                *from,
                *token,
                RequestError::RecipientNotFound,
                id.take(),
            ));
            false
        });
    }

    fn handle(&mut self, frame: BytesFrame, posts: &mut Posts) {
        if let BytesFrame::Push { data, .. } = frame {
            return self.on_push(data, posts);
        }
        let expect = self
            .session
            .expects
            .lock()
            .expect("no panics holding it")
            .pop_front();
        let Some(expect) = expect else {
            tracing::warn!("cluster: a reply from Redis nobody asked for: {frame:?}");
            return;
        };
        if let Some(error) = error_text(&frame) {
            tracing::warn!("cluster: Redis refused a command ({expect:?}): {error}");
        }
        let is_null = matches!(frame, BytesFrame::Null);
        let number = match &frame {
            BytesFrame::Number { data, .. } => *data,
            _ => i64::MIN,
        };
        match expect {
            Expect::Join {
                room,
                member,
                token,
                id,
                recover,
            } => self.on_join_reply(frame, room, member, token, id, recover.is_some(), posts),
            Expect::RoomMessage { sender } => {
                posts.push((sender.core, Envelope::Sequenced { sender }));
            }
            Expect::Leave { room, member } if number == -1 => {
                self.rooms.leave_was_applied(&room, member, posts);
            }
            Expect::Private { from, token, id } => {
                if number == 0 {
                    posts.push(answer(from, token, RequestError::RecipientNotFound, id));
                } else {
                    self.outstanding
                        .insert((from, token), (id, Instant::now() + PRIVATE_TIMEOUT));
                }
            }
            Expect::Exists { member, token, id } => {
                let error = if number == 1 {
                    RequestError::NotInRoom
                } else {
                    RequestError::RoomDoesNotExist
                };
                posts.push(answer(member, token, error, id));
            }
            Expect::Reap if number >= REAP_BATCH as i64 => {
                self.session.reap_more.store(true, Ordering::SeqCst);
            }
            Expect::Heartbeat if is_null => {
                tracing::warn!(
                    "cluster: this node's heartbeat key had expired; reconnecting to restart it"
                );
                let _ = self.stream.shutdown(Shutdown::Both);
            }
            _ => {}
        }
    }

    /// The join script's reply: `{total, epoch, offset, recovered, missed...}`. A
    /// recovering join of a client here was held at its event (nothing else can come
    /// between the two): it goes on now with the messages it missed. A repeat
    /// (`total` below 0) is this node's part of a join whose event was lost.
    #[allow(
        clippy::too_many_arguments,
        reason = "the expectation's fields, unpacked"
    )]
    fn on_join_reply(
        &mut self,
        frame: BytesFrame,
        room: Arc<str>,
        member: ConnId,
        token: u32,
        id: Option<Box<RawValue>>,
        asked: bool,
        posts: &mut Posts,
    ) {
        let BytesFrame::Array { data, .. } = frame else {
            self.held_join = None;
            return;
        };
        let number = |frame: Option<&BytesFrame>| match frame {
            Some(BytesFrame::Number { data, .. }) => Some(*data),
            _ => None,
        };
        let text = |frame: Option<&BytesFrame>| match frame {
            Some(BytesFrame::BlobString { data, .. }) => String::from_utf8_lossy(data).into_owned(),
            _ => String::new(),
        };
        let (Some(total), epoch, Some(offset)) =
            (number(data.first()), text(data.get(1)), number(data.get(2)))
        else {
            return;
        };
        let offset = offset.max(0) as u64;
        if total < 0 {
            let history = JoinHistory {
                epoch: epoch.into(),
                offset,
                recovered: asked.then_some(false),
                replay: Vec::new(),
            };
            let member_id = cluster_client_id(self.rooms.node(), member);
            let join = Join {
                total: (-total - 1) as usize,
                member: &member_id,
                token,
                id,
                history,
            };
            self.rooms.join_was_applied(&room, member, join, posts);
            return;
        }
        let Some(held) = self.held_join.take() else {
            return;
        };
        let missed = &data[4.min(data.len())..];
        let first = offset + 1 - missed.len() as u64;
        let replay = missed
            .iter()
            .enumerate()
            .filter_map(|(n, entry)| match entry {
                BytesFrame::BlobString { data, .. } => {
                    Some(frame_with_offset(data, first + n as u64, None))
                }
                _ => None,
            })
            .collect();
        let HeldJoin { room, event } = held;
        self.deliver_join(&room, event, replay, posts);
    }

    /// A join event as the home role takes it, with the messages it recovered.
    fn deliver_join(
        &mut self,
        room: &str,
        event: JoinEvent,
        replay: Vec<Bytes>,
        posts: &mut Posts,
    ) {
        let history = JoinHistory {
            epoch: event.epoch.into(),
            offset: event.offset,
            recovered: event.recovered,
            replay,
        };
        let join = Join {
            total: event.total,
            member: &event.member,
            token: event.token,
            id: event.id,
            history,
        };
        self.rooms.joined(room, join, posts);
    }

    fn on_push(&mut self, data: Vec<BytesFrame>, posts: &mut Posts) {
        let mut parts = data.into_iter();
        let (Some(kind), Some(channel), Some(payload)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let (
            BytesFrame::BlobString { data: kind, .. },
            BytesFrame::BlobString { data: channel, .. },
            BytesFrame::BlobString { data: payload, .. },
        ) = (kind, channel, payload)
        else {
            return;
        };
        if &kind[..] != b"message" {
            return;
        }
        ClusterStats::count(&self.stats.received);
        let Some(event) = wire::parse_event(payload) else {
            tracing::warn!(
                "cluster: ignored a malformed message on {}",
                String::from_utf8_lossy(&channel)
            );
            return;
        };
        let room = channel[..]
            .strip_prefix(wire::ROOM_PREFIX.as_bytes())
            .map(String::from_utf8_lossy);
        match (event, room) {
            (
                Event::Joined {
                    total,
                    member,
                    epoch,
                    offset,
                    recovered,
                    token,
                    id,
                },
                Some(room),
            ) => {
                let event = JoinEvent {
                    total,
                    member,
                    epoch,
                    offset,
                    recovered,
                    token,
                    id,
                };
                if recovered == Some(true) && self.rooms.local(&event.member).is_some() {
                    // The missed messages are in the script's reply, next.
                    let room = room.into_owned();
                    self.held_join = Some(HeldJoin { room, event });
                } else {
                    self.deliver_join(&room, event, Vec::new(), posts);
                }
            }
            (Event::Left { total, member }, Some(room)) => {
                self.rooms.left(&room, total, &member, posts)
            }
            (
                Event::RoomMessage {
                    offset,
                    sender,
                    open,
                },
                Some(room),
            ) => self
                .rooms
                .room_message(&room, offset, &sender, &open, posts),
            // Not this node's own broadcast come back: its clients already have that.
            (Event::Broadcast { origin, frame }, None) if origin != self.rooms.node() => {
                self.rooms.broadcast(frame, posts)
            }
            (
                Event::Private {
                    from_node,
                    to,
                    reply,
                    frame,
                },
                None,
            ) => {
                let reply = wire::concat(&[from_node.as_bytes(), b" ", &reply]);
                if self.rooms.has_core(to) {
                    posts.push((to.core, Envelope::RemotePrivate { to, frame, reply }));
                } else {
                    let op = ClusterOp::PrivateOutcome {
                        reply,
                        delivered: false,
                    };
                    self.mailbox.push((u32::MAX, op));
                }
            }
            (Event::Outcome { delivered, reply }, None) => {
                let Some(PrivateReply { from, token, .. }) = PrivateReply::decode(&reply) else {
                    return;
                };
                if let Some((id, _)) = self.outstanding.remove(&(from, token)) {
                    if delivered {
                        posts.push((
                            from.core,
                            Envelope::PrivateDone {
                                to: from,
                                token,
                                error: None,
                            },
                        ));
                    } else {
                        posts.push(answer(from, token, RequestError::RecipientNotFound, id));
                    }
                }
            }
            _ => {}
        }
    }
}
