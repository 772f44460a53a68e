//! `--app rooms`: the room protocol of PROTOCOL.md (the seed's Ratchet server), exact,
//! on every core. `crate::proto` parses and encodes; `state` is the per-core logic as a
//! pure state machine (home, replica and client roles); [`RoomsApp`] drives it from the
//! engine. No I/O here.
//!
//! # How rooms span cores
//! - **Home core.** Every room has a home core (a fixed hash of its name) that keeps
//!   its authoritative member count and how many members each core has. Joins and
//!   leaves are sent there; `members` and `total_members` come from there, so they are
//!   exact across cores.
//! - **Replicated core sets.** Every core keeps, for every room, the set of cores that
//!   have members. The home sends the new set to every core when a core's count goes
//!   0↔1 (and the empty set when the room ceases to exist). Only this replica is read
//!   on the hot path; "Room does not exist" is decided from it.
//! - **Order of a join.** The home sends, in this order: `Joined` (with the room's
//!   core set) to the joiner's core, which adds the joiner to its local index and sends
//!   `room_joined`; the new core set to every core; and `member_joined` to the cores
//!   with members. Each core has one multi-producer FIFO inbox (`hub`), and a push is
//!   linearizable, so a core has the new set, and the joiner's core has the joiner,
//!   before any member anywhere can see `member_joined` and answer with a message to
//!   the room. A join carries a token: a `Joined` for an earlier join of a room the
//!   client has since left and rejoined is recognised as stale.
//! - **Replies in request order.** The seed answered each request before reading the
//!   next. A reply that comes from another core (`room_joined`, the outcome of a
//!   private message to another core, which that core always reports back) holds a
//!   place in the client's queue, and everything for that client waits behind it
//!   (`replies.rs`). Clients without a held place, nearly all, are sent to directly.
//! - **Room messages through the home.** A room message is encoded on the sender's
//!   core but for its offset (`Encoder::open`) and posted to the room's home, which
//!   gives it the room's next offset, keeps it in the room's history (`history.rs`,
//!   for clients that recover after a reconnect) and posts it as one envelope (one
//!   `Bytes`) to every core with members; each core queues a clone on its local
//!   members. So every member sees the room in one order, and a join (with its
//!   recovery) is one point in it. Per-sender order across rooms, broadcasts and
//!   private messages holds because a client's requests take one way at a time: one
//!   that would overtake the client's room messages still on their way to a home
//!   waits on the client's core until the home reports them sent on (`state/gate.rs`).
//! - **Routable ids.** `client_id` is `client_<core>_<slot>_<generation>`: a private
//!   message goes straight to the owning core, which checks the slot's generation; a
//!   departed id gives `Recipient not found`, answered back through the sender's core.
//! - **Disconnect.** The client leaves its rooms in join order: one `Leave` travels
//!   from the first room's home to the next room's home and so on, each home sending
//!   its `member_left` before passing it on, so every member sees them in join order.
//! - **Full inboxes and slow clients** are the engine's: a full inbox never blocks a
//!   core (the sending core's backlog keeps order and pauses its readers, see `hub`),
//!   and a client that does not read is closed with 1008 without slowing the room.
//! - Envelopes a core sends itself go on a local work list, run in a loop before the
//!   call that made them returns (no recursion: a client that leaves 20,000 rooms on
//!   one core is a queue of 20,000 leaves, not 20,000 stack frames).
//! - **Per-client limits** (`ClientLimits`): rooms per client, room name length, and
//!   merged metadata size; a request over one gets an error and changes nothing.
//!   A room's local members are a `JoinOrder` list: joins, leaves and lookups take
//!   constant time whatever the room's size.
//! - **History** (`history.rs`): per room, its epoch, latest offset and last
//!   `history_size` frames, on the room's home; a join with `recover` gets the missed
//!   frames right after `room_joined` and before anything live.
//! - **Rate limit** (off by default): a token bucket per client, on the client's own
//!   core (`limit.rs`); a message over it gets `Rate limit exceeded` and is dropped.

mod history;
mod join_order;
mod limit;
mod replies;
mod state;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use history::HistoryLimits;
pub use limit::{ClientLimits, RateLimit};
pub use state::{
    client_id, cluster_client_id, home_of, parse_client_id, parse_cluster_client_id, ClusterOp,
    CoreSet, Effect, Envelope, JoinHistory, RoomsCore, MAX_CORES,
};

use crate::app::{App, AppSetup, CoreCtx, Identity, Message};
use crate::hub::Mailbox;
use crate::stats::ClusterStats;
use crate::ws::OutFrame;
use crate::{ConnId, CoreId};

/// The engine's side of the room logic on one core.
pub struct RoomsApp {
    state: RoomsCore,
    effects: Vec<Effect>,
    /// The origin of the rate limit's monotonic milliseconds.
    started: Instant,
    /// On a cluster node: the queue to the link to Redis.
    link: Option<ClusterLink>,
}

/// What a core of a cluster node sends the link: an op and the node's life it was
/// made in.
pub type LinkCommand = (u32, ClusterOp);

/// A core's handle on the cluster link.
#[derive(Clone)]
pub struct ClusterLink {
    pub mailbox: Arc<Mailbox<LinkCommand>>,
    pub stats: Arc<ClusterStats>,
}

impl RoomsApp {
    /// The room app of core `core` out of `cores`, with no rate limit.
    pub fn new(core: CoreId, cores: usize) -> Self {
        RoomsApp {
            state: RoomsCore::new(core, cores),
            effects: Vec::new(),
            started: Instant::now(),
            link: None,
        }
    }

    /// Makes this core part of cluster node `node` (in its life `epoch`), talking to
    /// the other nodes through `link` (see `crate::cluster`).
    pub fn with_cluster(mut self, node: Arc<str>, epoch: u32, link: ClusterLink) -> Self {
        self.state = self.state.clustered(node, epoch);
        self.link = Some(link);
        self
    }

    /// The room app of a core, with the rate limit and client limits its config names
    /// (what `ringcast serve` runs).
    pub fn configured(setup: AppSetup<'_>) -> Self {
        let config = setup.config;
        let history = HistoryLimits {
            size: config.history_size,
            ttl_s: config.history_ttl_s,
            max_bytes: config.history_max_bytes,
        };
        let mut app = RoomsApp::new(setup.core, setup.cores)
            .with_rate_limit(RateLimit::from_config(config))
            .with_limits(ClientLimits::from_config(config));
        app.state = app.state.with_history(history);
        app
    }

    /// Limits the messages each client may send (PROTOCOL.md ext `Rate limit exceeded`).
    pub fn with_rate_limit(mut self, rate_limit: RateLimit) -> Self {
        self.state = self.state.with_rate_limit(rate_limit);
        self
    }

    /// Bounds what each client may hold (see [`ClientLimits`]).
    pub fn with_limits(mut self, limits: ClientLimits) -> Self {
        self.state = self.state.with_limits(limits);
        self
    }

    fn apply(&mut self, ctx: &CoreCtx<Envelope>) {
        let (bytes, rooms) = self.state.history_usage();
        ctx.stats().set_history(bytes, rooms);
        for effect in self.effects.drain(..) {
            match effect {
                Effect::Send { to, frame } => {
                    ctx.send(to, OutFrame::preencoded(frame));
                }
                Effect::SendToAll { except, frame } => {
                    ctx.send_to_all_except(except, &OutFrame::preencoded(frame))
                }
                Effect::SendToEach { to, except, frame } => {
                    let to = to.iter().copied().filter(|m| Some(*m) != except);
                    ctx.send_to_each(to, &OutFrame::preencoded(frame));
                }
                Effect::Post { core, envelope } => ctx.post(core, envelope),
                Effect::Close { to, code, reason } => ctx.close(to, code, reason),
                Effect::Cluster { epoch, op } => {
                    if let Some(link) = &self.link {
                        if link.mailbox.push((epoch, op)) {
                            ClusterStats::count(&link.stats.queue_full);
                        }
                    }
                }
            }
        }
    }
}

/// Unix time in whole seconds (PHP `time()`).
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl App for RoomsApp {
    type Envelope = Envelope;

    fn on_open(&mut self, ctx: &CoreCtx<Envelope>, conn: ConnId, identity: Option<Box<Identity>>) {
        self.state
            .handle_open_as(conn, identity, now(), &mut self.effects);
        self.apply(ctx);
    }

    fn on_message(&mut self, ctx: &CoreCtx<Envelope>, conn: ConnId, message: Message) {
        let now_ms = if self.state.has_rate_limit() {
            self.started.elapsed().as_millis() as u64
        } else {
            0
        };
        self.state
            .handle_message(conn, &message.payload, now(), now_ms, &mut self.effects);
        self.apply(ctx);
    }

    fn on_close(&mut self, ctx: &CoreCtx<Envelope>, conn: ConnId) {
        self.state.handle_close(conn, now(), &mut self.effects);
        self.apply(ctx);
    }

    fn on_envelope(&mut self, ctx: &CoreCtx<Envelope>, envelope: Envelope) {
        self.state
            .handle_envelope(envelope, now(), &mut self.effects);
        self.apply(ctx);
    }
}
