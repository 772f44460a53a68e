//! Every knob of the server, in one place: defaults, the TOML file format, and
//! resolution at start-up. A [`Config`] is what the file and the flags say (main.rs
//! parses the command line and overrides fields); [`Config::resolve`] checks it once
//! and fixes the CPU list, giving the [`ServerConfig`] the runtime runs. Holds no
//! runtime state.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{KeyError, Secret, Verifier};

/// Which application the engine drives on every core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// Echo every message back to its sender (the conformance and benchmark target).
    Echo,
    /// Relay every message to every open connection on every core, sender included
    /// (the seed's Swoole server).
    Broadcast,
    /// The room protocol of PROTOCOL.md (the seed's Ratchet server).
    #[default]
    Rooms,
}

/// The most cores the rooms app supports: its core sets are 128-bit masks.
pub const MAX_ROOM_CORES: usize = 128;

/// How each core sets up its io_uring (see `runtime::build_runtime`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UringMode {
    /// Deferred task-run, single issuer (Linux 6.1+): completions are processed when
    /// the core asks for them, not by interrupting it. The default.
    #[default]
    Defer,
    /// Cooperative task-run: completions without an inter-processor interrupt.
    Coop,
    /// io_uring with no task-run flags (the kernel's default).
    Plain,
}

/// Which CPUs get a core thread.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CpuSelection {
    /// `"all"`: one core thread per CPU this process may run on.
    All(AllCpus),
    /// An explicit list, e.g. `[0, 2, 3]`; one core thread per entry, pinned to it.
    List(Vec<usize>),
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllCpus {
    All,
}

/// The server's configuration. Field docs give the default, when to change it, and
/// its memory cost. The TOML file uses the same field names.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address every core listens on (SO_REUSEPORT). Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// CPUs to run core threads on. Default `"all"` (the process's affinity mask).
    pub cpus: CpuSelection,
    /// Use only the first N CPUs of `cpus`. Default: all of them.
    pub cores: Option<usize>,
    /// The application. Default `rooms`.
    pub app: AppKind,
    /// Largest message (after reassembly) a client may send; larger closes with 1009.
    /// Default 1 MiB. Costs up to this much per connection receiving such a message.
    pub max_message_bytes: usize,
    /// Bytes a connection may have queued for sending before it counts as a slow
    /// consumer (a client that does not read): its queue is dropped and the connection
    /// reset (SO_LINGER 0), so no kernel buffer outlives it. Default 4 MiB. Broadcast payloads are shared, so
    /// the real memory is usually far less; a single frame is always admitted to an
    /// empty queue. Raise for large messages to slow readers, lower for density.
    pub max_outbound_bytes: usize,
    /// Most bytes read from one ready socket at a time, into the core's read buffer (one
    /// per core, not per connection: an idle connection has no buffer). A socket with
    /// more waiting is read again on the next pass, after the other ready sockets.
    /// Default 65536. A frame that arrives in parts keeps its bytes with its connection
    /// until complete, up to `max_message_bytes`.
    pub read_buffer_bytes: usize,
    /// Largest HTTP upgrade request; larger gets 431. Default 8192 bytes.
    pub max_handshake_bytes: usize,
    /// Time a client has to complete the upgrade request. Default 10 s.
    pub handshake_timeout_ms: u64,
    /// PEM certificate chain; with `tls_key`, every core terminates TLS (wss://) on
    /// `listen` with rustls. Reloaded on SIGHUP (new connections get the new one).
    /// Default none: plain ws://. The TLS handshake counts against
    /// `handshake_timeout_ms`. Costs a rustls session per connection: about 3.8 KB more
    /// per idle connection than ws:// (BENCHMARKS.md, TLS).
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `tls_cert`. Default none.
    pub tls_key: Option<std::path::PathBuf>,
    /// Interval of server pings to idle connections. Default 30 s.
    pub ping_interval_ms: u64,
    /// A connection silent (no frame, no pong) this long is closed. Default 75 s.
    pub idle_timeout_ms: u64,
    /// After sending a close frame, how long to wait for the peer's close. Default 5 s.
    pub close_timeout_ms: u64,
    /// On SIGINT/SIGTERM, how long to wait for closing handshakes. Default 10 s.
    pub shutdown_timeout_ms: u64,
    /// Capacity of each core's cross-core inbox, in envelopes. Default 65,536. The
    /// queue is allocated up front: about 40 bytes a slot for the broadcast app and 90
    /// for rooms (2.5-5.5 MiB per core at the default); payloads are shared `Bytes`.
    /// When it is full, senders' envelopes wait in order on their own core (see `hub`).
    pub inbox_capacity: usize,
    /// Listen backlog per core. Default 4096 (capped by net.core.somaxconn).
    pub listen_backlog: u32,
    /// io_uring submission queue entries per core. Default 4096.
    pub uring_entries: u32,
    /// After a write pass that fanned several messages out to many sockets, how long
    /// the core waits before its next pass, so each socket's frames go out in fewer,
    /// larger writes (a loopback write costs ~3 µs whatever its size). Default 1000 µs.
    /// Only a core already busy fanning out waits (request/response traffic, a single
    /// message's fan-out and quiet cores never do; see `conn::pacing`); 0 turns it off.
    /// Costs up to this much latency, plus the runtime timer's 1 ms granularity, under
    /// fan-out load.
    pub flush_pace_us: u64,
    /// Rooms app: messages per second a client may send, sustained; a message over the
    /// limit gets the error `Rate limit exceeded` and is dropped (the connection stays
    /// open). Default 0: no limit (outbound queues and the slow-consumer close already
    /// bound what one client costs). Set it on public servers, where one client can fan
    /// out to large rooms.
    pub rate_limit_per_s: u32,
    /// Rooms app: messages a client may send at once before `rate_limit_per_s` applies.
    /// Default 100. Ignored while `rate_limit_per_s` is 0.
    pub rate_limit_burst: u32,
    /// Browser origins allowed to open a WebSocket, e.g. `["https://chat.example.com"]`
    /// (`scheme://host[:port]`, compared without regard to case). An upgrade request
    /// whose `Origin` is not listed gets 403; one without `Origin` (not a browser) is
    /// always served. Default empty: every origin is served. Set it on a public server
    /// so other sites' pages cannot use their visitors' browsers as clients
    /// (RFC 6455 §10.2).
    pub allowed_origins: Vec<String>,
    /// Rooms app: rooms one client may be in at once; a join over it gets the error
    /// `Too many rooms` (the connection stays open). Default 100. Bounds what one
    /// client costs the server: its room list, its leaves on disconnect, and its share
    /// of every room's member index (about 100 bytes per membership).
    pub max_rooms_per_client: usize,
    /// Rooms app: longest room name, in bytes of UTF-8; a longer join gets the error
    /// `Room name too long`. Default 128. A room's name is kept once per core that
    /// knows the room.
    pub max_room_name_bytes: usize,
    /// Rooms app: largest metadata object a client may have, as the merged object's
    /// JSON text; a `set_metadata` that would pass it gets the error
    /// `Metadata too large` and changes nothing. Default 16 KiB: each
    /// `metadata_updated` carries the whole object, so this bounds that reply too.
    pub max_metadata_bytes: usize,
    /// SO_SNDBUF of every accepted socket, in bytes. Default: none (the kernel's
    /// autotuned buffer, `net.ipv4.tcp_wmem`). A small value caps the kernel memory a
    /// slow reader can pin, at the cost of throughput to fast, distant readers
    /// (tuning/README.md). The kernel doubles the value it is given.
    pub send_buffer_bytes: Option<usize>,
    /// SO_RCVBUF of every accepted socket, in bytes. Default: none (the kernel's
    /// autotuned buffer, `net.ipv4.tcp_rmem`). The kernel doubles the value it is given.
    pub recv_buffer_bytes: Option<usize>,
    /// Connections one IP address may have open at once, counted across all cores
    /// (handshakes included); more get HTTP 429 with `Retry-After`. Default 0: no limit.
    /// Set it on a public server, so one host cannot take every descriptor.
    pub max_conns_per_ip: usize,
    /// Connections the whole server holds at once (handshakes included); more get HTTP
    /// 503 with `Retry-After`. Default 0: no limit but the open-files limit
    /// (`ulimit -n`). Keep it below that limit, so refusals are answered, not dropped.
    pub max_connections: usize,
    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it. Default
    /// off. Costs nothing per connection when off, and when on nothing per connection
    /// but a flag: the server compresses without context takeover (one compressor
    /// per core, a fan-out compressed once per core) and asks clients to do the same
    /// (one inflater per core). See `ws::deflate` and README "Compression".
    pub deflate: bool,
    /// io_uring setup of every core: `defer` (default), `coop` or `plain`. A kernel
    /// that refuses the mode gets a plain ring, and one without io_uring epoll.
    pub uring_mode: UringMode,
    /// Serve the server's own page (a room client and a live panel of the cores) at
    /// `GET /` on the WebSocket port (`--no-page` turns it off; then `GET /` without an
    /// upgrade gets 426). Default on.
    pub page: bool,
    /// Rooms app: messages kept per room for clients that reconnect and recover what
    /// they missed (`join_room` with `recover`). 0 keeps none (offsets and epochs are
    /// still given). Default 64. Memory: up to this many frames per room (each the
    /// message's size plus about 100 B), within `history_max_bytes` per core.
    pub history_size: usize,
    /// Rooms app: seconds a room's history outlives its last message and its last
    /// member; then it is forgotten (a new epoch). Default 300.
    pub history_ttl_s: u64,
    /// Rooms app: bytes of kept messages per core, all rooms together; past it, other
    /// rooms' kept messages are dropped (their clients get `recovered: false`).
    /// Default 67108864 (64 MiB).
    pub history_max_bytes: usize,
    /// HS256 secret clients' JWTs must be signed with (flag `--jwt-secret`); every
    /// upgrade then needs a valid token (README, JWT). Default: none. Not with
    /// `jwt_public_key`. Costs a boxed identity (~60 B) per connection while on.
    pub jwt_secret: Option<Secret>,
    /// PEM public key (RSA: RS256, P-256 EC: ES256, Ed25519: EdDSA) clients' JWTs must
    /// be signed with (flag `--jwt-public-key`). Default: none. Read once at start-up.
    pub jwt_public_key: Option<PathBuf>,
    /// The `[cluster]` table: several nodes over Redis acting as one server (rooms app
    /// only). Without `redis_url`, nothing changes.
    pub cluster: ClusterConfig,
}

/// Several ringcast nodes sharing rooms through Redis (`src/cluster`, README
/// "Cluster"). Every field but `redis_url` has a default that suits most clusters.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[:PASSWORD@]HOST[:PORT][/DB]` (flag `--redis`). Default: none, a
    /// stand-alone server.
    pub redis_url: Option<String>,
    /// This node's name in client ids and Redis keys: 1 to 32 of `[A-Za-z0-9-]`, to
    /// which each start (and each restart after lost state) appends `-<n>`, counted
    /// in Redis, so a restarted node never answers for its previous life's clients.
    /// Default: random per start.
    pub node_id: Option<String>,
    /// The node's heartbeat key lives this long; it is refreshed every third of it.
    /// Other nodes remove the members of a node whose key expired (it died) within
    /// about 1.5x this. Default 10000 (10 s).
    pub node_ttl_ms: u64,
    /// Requests the cores may queue for the Redis link (one per cross-node message,
    /// join or leave). A core finding it full waits for room (backpressure to its
    /// clients). Default 65536 (about 5 MiB when full).
    pub queue_capacity: usize,
    /// Joins and leaves kept, in order, while Redis is unreachable, to be applied when
    /// it is back; past this the node gives up its state and restarts its clients
    /// (close 1012) once Redis is back. Default 65536.
    pub max_pending_changes: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: None,
            node_id: None,
            node_ttl_ms: 10_000,
            queue_capacity: 65_536,
            max_pending_changes: 65_536,
        }
    }
}

/// Whether `id` may name a node's life: it appears in client ids
/// (`client_<node>_...`) and Redis keys, so no `_`, spaces or other separators. A
/// configured `node_id` (at most 32 characters) gets `-<n>` appended per life.
pub fn is_node_id(id: &str) -> bool {
    (1..=48).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            cpus: CpuSelection::All(AllCpus::All),
            cores: None,
            app: AppKind::Rooms,
            max_message_bytes: 1 << 20,
            max_outbound_bytes: 4 << 20,
            read_buffer_bytes: 64 * 1024,
            max_handshake_bytes: 8192,
            handshake_timeout_ms: 10_000,
            tls_cert: None,
            tls_key: None,
            ping_interval_ms: 30_000,
            idle_timeout_ms: 75_000,
            close_timeout_ms: 5_000,
            shutdown_timeout_ms: 10_000,
            inbox_capacity: 65_536,
            listen_backlog: 4096,
            uring_entries: 4096,
            flush_pace_us: 1000,
            rate_limit_per_s: 0,
            rate_limit_burst: 100,
            allowed_origins: Vec::new(),
            max_rooms_per_client: 100,
            max_room_name_bytes: 128,
            max_metadata_bytes: 16 * 1024,
            send_buffer_bytes: None,
            recv_buffer_bytes: None,
            max_conns_per_ip: 0,
            max_connections: 0,
            deflate: false,
            uring_mode: UringMode::Defer,
            page: true,
            history_size: 64,
            history_ttl_s: 300,
            history_max_bytes: 64 << 20,
            jwt_secret: None,
            jwt_public_key: None,
            cluster: ClusterConfig::default(),
        }
    }
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("invalid CPU list {0:?}: expected e.g. \"0,2-3\" or \"all\"")]
    CpuList(String),
    #[error("CPU {0} is not available to this process (see `taskset -p $$`)")]
    CpuUnavailable(usize),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("{field} must be {rule}")]
    Invalid {
        field: &'static str,
        rule: &'static str,
    },
    #[error(transparent)]
    Jwt(#[from] KeyError),
}

impl Config {
    /// Reads a TOML config file; missing fields keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: shown,
            source,
        })
    }

    /// Checks every field and fixes the CPU list, once, at start-up.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        self.validate()?;
        let cpus = self.core_cpus()?;
        let jwt = Verifier::from_config(self.jwt_secret.as_ref(), self.jwt_public_key.as_deref())?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(crate::tls::TlsSlot::load(cert, key)?)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    field: "tls_cert",
                    rule: "set together with tls_key",
                })
            }
        };
        Ok(ServerConfig {
            settings: self,
            cpus,
            jwt: jwt.map(Arc::new),
            tls,
        })
    }

    /// Checks every field. Long because it is one table: a rule per field, in the
    /// order of the struct, each with the text the error shows.
    fn validate(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        let rules: [(bool, &'static str, &'static str); 24] = [
            (
                self.max_message_bytes >= 125,
                "max_message_bytes",
                "at least 125",
            ),
            (
                self.max_outbound_bytes >= 1024,
                "max_outbound_bytes",
                "at least 1024",
            ),
            (
                (64..=1 << 20).contains(&self.read_buffer_bytes),
                "read_buffer_bytes",
                "between 64 and 1048576",
            ),
            (
                self.max_handshake_bytes >= 256,
                "max_handshake_bytes",
                "at least 256",
            ),
            (
                self.handshake_timeout_ms > 0,
                "handshake_timeout_ms",
                "above 0",
            ),
            (self.ping_interval_ms > 0, "ping_interval_ms", "above 0"),
            (
                self.idle_timeout_ms > self.ping_interval_ms,
                "idle_timeout_ms",
                "greater than ping_interval_ms",
            ),
            (self.inbox_capacity >= 16, "inbox_capacity", "at least 16"),
            (
                self.flush_pace_us <= 100_000,
                "flush_pace_us",
                "at most 100000 (100 ms)",
            ),
            (
                self.rate_limit_per_s == 0 || self.rate_limit_burst >= 1,
                "rate_limit_burst",
                "at least 1 when rate_limit_per_s is set",
            ),
            (self.cores != Some(0), "cores", "at least 1"),
            (
                self.max_rooms_per_client >= 1,
                "max_rooms_per_client",
                "at least 1",
            ),
            (
                self.max_room_name_bytes >= 1,
                "max_room_name_bytes",
                "at least 1",
            ),
            (
                self.max_metadata_bytes >= 2,
                "max_metadata_bytes",
                "at least 2 (the empty object `{}`)",
            ),
            (
                self.send_buffer_bytes.is_none_or(|b| (1024..=1 << 30).contains(&b)),
                "send_buffer_bytes",
                "between 1024 and 1073741824",
            ),
            (
                self.recv_buffer_bytes.is_none_or(|b| (1024..=1 << 30).contains(&b)),
                "recv_buffer_bytes",
                "between 1024 and 1073741824",
            ),
            (
                self.allowed_origins.iter().all(|o| is_origin(o)),
                "allowed_origins",
                "a list of origins like \"https://chat.example.com\" (scheme://host[:port], no path)",
            ),
            (
                self.app != AppKind::Rooms
                    || self
                        .core_cpus()
                        .map_or(true, |c| c.len() <= MAX_ROOM_CORES),
                "cores",
                "at most 128 for the rooms app",
            ),
            (
                cluster.redis_url.is_none() || self.app == AppKind::Rooms,
                "cluster.redis_url",
                "unset unless app is \"rooms\" (only the rooms app runs as a cluster)",
            ),
            (
                cluster
                    .node_id
                    .as_deref()
                    .is_none_or(|id| is_node_id(id) && id.len() <= 32),
                "cluster.node_id",
                "1 to 32 letters, digits or '-'",
            ),
            (
                self.history_size <= 100_000,
                "history_size",
                "at most 100000",
            ),
            (
                self.history_ttl_s >= 1,
                "history_ttl_s",
                "at least 1",
            ),
            (
                cluster.node_ttl_ms >= 1000,
                "cluster.node_ttl_ms",
                "at least 1000",
            ),
            (
                cluster.queue_capacity >= 16 && cluster.max_pending_changes >= 1,
                "cluster.queue_capacity",
                "at least 16 (and max_pending_changes at least 1)",
            ),
        ];
        for (ok, field, rule) in rules {
            if !ok {
                return Err(ConfigError::Invalid { field, rule });
            }
        }
        self.core_cpus().map(|_| ())
    }

    /// The CPU each core thread is pinned to, in core order.
    fn core_cpus(&self) -> Result<Vec<usize>, ConfigError> {
        let allowed = allowed_cpus();
        let mut cpus = match &self.cpus {
            CpuSelection::All(_) => allowed.clone(),
            CpuSelection::List(list) => list.clone(),
        };
        if let Some(&cpu) = cpus.iter().find(|cpu| !allowed.contains(cpu)) {
            return Err(ConfigError::CpuUnavailable(cpu));
        }
        if let Some(n) = self.cores {
            cpus.truncate(n);
        }
        if cpus.is_empty() {
            return Err(ConfigError::Invalid {
                field: "cpus",
                rule: "a non-empty list",
            });
        }
        Ok(cpus)
    }

    pub fn duration(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }
}

/// A configuration that passed [`Config::resolve`]: every field checked, and the CPU
/// of each core fixed. Reads as the [`Config`] it came from.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    settings: Config,
    cpus: Vec<usize>,
    /// The JWT key, parsed once here (`jwt_secret` or `jwt_public_key`).
    jwt: Option<Arc<Verifier>>,
    /// The loaded certificate, when `tls_cert` is set (shared with the SIGHUP thread).
    tls: Option<Arc<crate::tls::TlsSlot>>,
}

impl ServerConfig {
    /// The CPU each core thread is pinned to, in core order.
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// The TLS certificate slot, when the server terminates TLS.
    pub fn tls(&self) -> Option<&Arc<crate::tls::TlsSlot>> {
        self.tls.as_ref()
    }

    /// How many cores the server runs.
    pub fn cores(&self) -> usize {
        self.cpus.len()
    }

    /// What verifies upgrades' JWTs; `None` when JWT is off.
    pub fn jwt(&self) -> Option<&Verifier> {
        self.jwt.as_deref()
    }
}

impl Deref for ServerConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.settings
    }
}

/// The connection table's slice of the configuration: what `conn` enforces on each
/// connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// `max_outbound_bytes`.
    pub max_outbound_bytes: usize,
    /// `handshake_timeout_ms`.
    pub handshake_timeout: Duration,
    /// `close_timeout_ms`.
    pub close_timeout: Duration,
}

/// The heartbeat sweep's slice: when to ping, when to give up on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub close_timeout: Duration,
}

impl ServerConfig {
    /// What `conn` needs.
    pub fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            max_outbound_bytes: self.max_outbound_bytes,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            close_timeout: Duration::from_millis(self.close_timeout_ms),
        }
    }

    /// What the heartbeat sweep needs.
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            ping_interval: Duration::from_millis(self.ping_interval_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            close_timeout: Duration::from_millis(self.close_timeout_ms),
        }
    }
}

/// Whether `text` is a web origin as a browser sends it: `http://` or `https://`, then
/// a host with an optional port, and nothing else.
fn is_origin(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    rest.is_some_and(|authority| {
        !authority.is_empty()
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    })
}

/// Parses `"all"` or a list like `"0,2-3"`.
pub fn parse_cpu_list(text: &str) -> Result<CpuSelection, ConfigError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("all") {
        return Ok(CpuSelection::All(AllCpus::All));
    }
    let bad = || ConfigError::CpuList(text.to_string());
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo: usize = lo.parse().map_err(|_| bad())?;
        let hi: usize = hi.parse().map_err(|_| bad())?;
        if lo > hi || hi - lo > 4096 {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    let mut seen = std::collections::HashSet::new();
    if !cpus.iter().all(|cpu| seen.insert(*cpu)) {
        return Err(bad());
    }
    Ok(CpuSelection::List(cpus))
}

/// CPUs in this process's affinity mask.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            return (0..n).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_ranges_and_reject_garbage() {
        assert_eq!(
            parse_cpu_list("0,2-3").unwrap(),
            CpuSelection::List(vec![0, 2, 3])
        );
        assert_eq!(
            parse_cpu_list("all").unwrap(),
            CpuSelection::All(AllCpus::All)
        );
        for bad in ["", "a", "3-1", "1,1", "0-"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn toml_file_overrides_only_the_fields_it_names() {
        let config: Config =
            toml::from_str("app = \"echo\"\ncpus = [0]\nmax_message_bytes = 2048").unwrap();
        assert_eq!(config.app, AppKind::Echo);
        assert_eq!(config.cpus, CpuSelection::List(vec![0]));
        assert_eq!(config.max_message_bytes, 2048);
        assert_eq!(config.listen, Config::default().listen);
        let all: Config = toml::from_str("cpus = \"all\"").unwrap();
        assert_eq!(all.cpus, CpuSelection::All(AllCpus::All));
    }

    #[test]
    fn the_example_config_in_tuning_loads_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/ringcast.toml");
        let config = Config::from_file(&path).expect("tuning/ringcast.toml parses");
        config.validate().expect("tuning/ringcast.toml is valid");
    }

    #[test]
    fn allowed_origins_must_be_bare_origins() {
        let with = |origins: &[&str]| Config {
            cpus: CpuSelection::All(AllCpus::All),
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..Config::default()
        };
        let good = [
            "https://chat.example.com",
            "http://localhost:8080",
            "HTTPS://Example.COM",
            "http://[::1]:3000",
        ];
        assert!(with(&good).validate().is_ok());
        for bad in [
            "chat.example.com",
            "https://",
            "https://chat.example.com/",
            "https://chat.example.com/app",
            "ws://chat.example.com",
            "*",
            "https://a b",
        ] {
            assert!(
                matches!(
                    with(&[bad]).validate(),
                    Err(ConfigError::Invalid {
                        field: "allowed_origins",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        let config: Config =
            toml::from_str("allowed_origins = [\"https://chat.example.com\"]").unwrap();
        assert_eq!(config.allowed_origins, ["https://chat.example.com"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("nonsense = 1").is_err());
        let config = Config {
            idle_timeout_ms: 10,
            ping_interval_ms: 20,
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                field: "idle_timeout_ms",
                ..
            })
        ));
        let config = Config {
            rate_limit_per_s: 10,
            rate_limit_burst: 0,
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                field: "rate_limit_burst",
                ..
            })
        ));
        let config = Config {
            cpus: CpuSelection::List(vec![100_000]),
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::CpuUnavailable(100_000))
        ));
    }

    #[test]
    fn cores_takes_the_first_cpus_of_the_selection() {
        let config = Config {
            cores: Some(1),
            ..Config::default()
        };
        assert_eq!(config.core_cpus().unwrap().len(), 1);
        assert!(Config::default().validate().is_ok());
    }
}
