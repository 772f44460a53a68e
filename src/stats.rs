//! Counters per core, written by their core only and read by anyone (relaxed atomics),
//! and their rendering for `GET /metrics` (Prometheus text format, one series per core).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::auth::Refusal;

/// One core's counters.
#[derive(Debug, Default)]
pub struct CoreStats {
    accepted: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
    rejected_handshakes: AtomicU64,
    protocol_errors: AtomicU64,
    slow_consumers: AtomicU64,
    refused_per_ip: AtomicU64,
    refused_total: AtomicU64,
    messages_received: AtomicU64,
    handshake_timeouts: AtomicU64,
    history_bytes: AtomicU64,
    history_rooms: AtomicU64,
    auth_refused: AuthRefused<AtomicU64>,
    bytes_received: AtomicU64,
    bytes_queued: AtomicU64,
    frames_queued: AtomicU64,
    /// Handshakes answered with an HTTP error, by status (see [`HANDSHAKE_STATUSES`]).
    handshake_failures: [AtomicU64; HANDSHAKE_STATUSES.len()],
    /// Recipients of each fan-out (a room's or a broadcast's share on this core).
    pub fanout: Histogram,
    /// A connection's queued bytes each time the flush path takes them for a write.
    pub outbound_queue: Histogram,
}

/// The HTTP statuses a refused handshake is counted under.
pub const HANDSHAKE_STATUSES: [u16; 7] = [400, 401, 403, 405, 426, 431, 503];

/// Bucket bounds of [`CoreStats::fanout`] (recipients).
pub const FANOUT_BUCKETS: [u64; 5] = [1, 10, 100, 1_000, 10_000];
/// Bucket bounds of [`CoreStats::outbound_queue`] (bytes).
pub const QUEUE_BUCKETS: [u64; 5] = [256, 4_096, 65_536, 1 << 20, 4 << 20];

/// A Prometheus histogram written by one core only (plain loads and stores) and read
/// by anyone: one count per bucket (not cumulative: summed when rendered) and the sum.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 6],
    sum: AtomicU64,
}

impl Histogram {
    /// Records `value` against `bounds` (the last bucket is +Inf). Owning core only.
    pub fn observe(&self, bounds: &[u64; 5], value: u64) {
        let index = bounds.iter().position(|b| value <= *b).unwrap_or(5);
        let bucket = &self.buckets[index];
        bucket.store(bucket.load(Relaxed) + 1, Relaxed);
        self.sum.store(self.sum.load(Relaxed) + value, Relaxed);
    }

    fn snapshot(&self) -> ([u64; 6], u64) {
        let buckets = std::array::from_fn(|i| self.buckets[i].load(Relaxed));
        (buckets, self.sum.load(Relaxed))
    }
}

/// A sum of every core's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Connections that completed the WebSocket upgrade.
    pub opened: u64,
    /// Upgraded connections that have ended.
    pub closed: u64,
    /// Upgrade requests answered with an HTTP error.
    pub rejected_handshakes: u64,
    /// Connections failed with 1002, 1007 or 1009.
    pub protocol_errors: u64,
    /// Connections reset for passing their outbound limit (slow consumers).
    pub slow_consumers: u64,
    /// Connections turned away at accept with 429: their address held
    /// `max_conns_per_ip`. Not counted in `accepted`.
    pub refused_per_ip: u64,
    /// Connections turned away at accept with 503: the server held `max_connections`.
    /// Not counted in `accepted`.
    pub refused_total: u64,
    /// Whole messages received from clients.
    pub messages_received: u64,
    /// Connections that had not completed their upgrade by `handshake_timeout_ms`
    /// (silent, slowloris, or half-open) and were reset.
    pub handshake_timeouts: u64,
    /// Rooms app: bytes of room history kept (frames of the last `history_size`
    /// messages of the rooms homed on the core).
    pub history_bytes: u64,
    /// Rooms app: rooms with a history (an epoch and offsets) on the core.
    pub history_rooms: u64,
    /// Upgrades refused with 401 for their JWT, by `auth::Refusal` (also counted in
    /// `rejected_handshakes`).
    pub auth_refused: AuthRefused<u64>,
    /// WebSocket bytes read from clients after their upgrade (after TLS: plaintext).
    pub bytes_received: u64,
    /// Bytes of frames queued for clients (what the core sends, headers included).
    pub bytes_queued: u64,
    /// Frames queued for clients (messages and control frames).
    pub frames_queued: u64,
}

/// One counter per `auth::Refusal`, in `Refusal::ALL` order.
pub type AuthRefused<T> = [T; Refusal::ALL.len()];

impl Stats {
    /// Upgraded connections still open. The counters are read one by one while the
    /// core runs, so `closed` may include a connection opened after `opened` was read.
    pub fn open(&self) -> u64 {
        self.opened.saturating_sub(self.closed)
    }
}

/// One metric `GET /metrics` serves: its name, Prometheus type and help, and its
/// series (each once per core).
struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    series: &'static [Series],
}

/// Labels besides `core` (`""`, or e.g. `,reason="per_ip"`) and how to read the
/// series' value from a core's counters.
type Series = (&'static str, fn(&Stats) -> u64);

const METRICS: [Metric; 16] = [
    Metric {
        name: "ringcast_connections_accepted_total",
        kind: "counter",
        help: "TCP connections accepted.",
        series: &[("", |s| s.accepted)],
    },
    Metric {
        name: "ringcast_connections_opened_total",
        kind: "counter",
        help: "Connections that completed the WebSocket upgrade.",
        series: &[("", |s| s.opened)],
    },
    Metric {
        name: "ringcast_connections_closed_total",
        kind: "counter",
        help: "Upgraded connections that have ended.",
        series: &[("", |s| s.closed)],
    },
    Metric {
        name: "ringcast_connections_open",
        kind: "gauge",
        help: "Upgraded connections open now.",
        series: &[("", Stats::open)],
    },
    Metric {
        name: "ringcast_handshakes_rejected_total",
        kind: "counter",
        help: "Upgrade requests answered with an HTTP error.",
        series: &[("", |s| s.rejected_handshakes)],
    },
    Metric {
        name: "ringcast_protocol_errors_total",
        kind: "counter",
        help: "Connections failed with close code 1002, 1007 or 1009.",
        series: &[("", |s| s.protocol_errors)],
    },
    Metric {
        name: "ringcast_slow_consumers_total",
        kind: "counter",
        help: "Connections reset for letting their queue pass max_outbound_bytes (slow consumers).",
        series: &[("", |s| s.slow_consumers)],
    },
    Metric {
        name: "ringcast_handshake_timeouts_total",
        kind: "counter",
        help: "Connections reset for not completing the upgrade within handshake_timeout_ms.",
        series: &[("", |s| s.handshake_timeouts)],
    },
    Metric {
        name: "ringcast_bytes_received_total",
        kind: "counter",
        help: "WebSocket bytes read from clients after their upgrade (plaintext, after TLS).",
        series: &[("", |s| s.bytes_received)],
    },
    Metric {
        name: "ringcast_bytes_sent_total",
        kind: "counter",
        help: "Bytes of frames queued for clients (headers included, before TLS).",
        series: &[("", |s| s.bytes_queued)],
    },
    Metric {
        name: "ringcast_messages_sent_total",
        kind: "counter",
        help: "Frames queued for clients (messages, pings, closes).",
        series: &[("", |s| s.frames_queued)],
    },
    Metric {
        name: "ringcast_history_bytes",
        kind: "gauge",
        help: "Rooms app: bytes of room history kept on the core (at most history_max_bytes).",
        series: &[("", |s| s.history_bytes)],
    },
    Metric {
        name: "ringcast_history_rooms",
        kind: "gauge",
        help: "Rooms app: rooms with a history (epoch and offsets) homed on the core.",
        series: &[("", |s| s.history_rooms)],
    },
    Metric {
        name: "ringcast_messages_received_total",
        kind: "counter",
        help: "Whole messages (text or binary) received from clients.",
        series: &[("", |s| s.messages_received)],
    },
    Metric {
        name: "ringcast_connections_refused_total",
        kind: "counter",
        help: "Connections turned away at accept: reason=\"per_ip\" (429, max_conns_per_ip), reason=\"total\" (503, max_connections).",
        series: &[
            (",reason=\"per_ip\"", |s| s.refused_per_ip),
            (",reason=\"total\"", |s| s.refused_total),
        ],
    },
    Metric {
        name: "ringcast_auth_refused_total",
        kind: "counter",
        help: "Upgrades refused with 401 for their JWT (jwt_secret, jwt_public_key), by reason.",
        series: &[
            (",reason=\"missing\"", |s| s.auth_refused[0]),
            (",reason=\"malformed\"", |s| s.auth_refused[1]),
            (",reason=\"wrong_algorithm\"", |s| s.auth_refused[2]),
            (",reason=\"bad_signature\"", |s| s.auth_refused[3]),
            (",reason=\"invalid_claims\"", |s| s.auth_refused[4]),
            (",reason=\"expired\"", |s| s.auth_refused[5]),
            (",reason=\"not_yet_valid\"", |s| s.auth_refused[6]),
        ],
    },
];

/// Every core's counters in the Prometheus text exposition format (0.0.4), one
/// series per core labelled `core="N"` (N as in `ConnId` and the start-up log), so a
/// core that takes more than its share shows.
pub fn render_metrics(cores: &[Arc<CoreStats>]) -> String {
    let snapshots: Vec<Stats> = cores.iter().map(|core| sum([&**core])).collect();
    let mut out = String::new();
    for Metric {
        name,
        kind,
        help,
        series,
    } in METRICS
    {
        write_family(&mut out, name, kind, help);
        for (labels, value) in series {
            write_series(&mut out, name, labels, snapshots.iter().map(value));
        }
    }
    out
}

/// The handshake failures by status and the two histograms, per core, appended to
/// [`render_metrics`]'s text.
pub fn render_distributions(out: &mut String, cores: &[Arc<CoreStats>]) {
    let name = "ringcast_handshake_failures_total";
    let help = "Handshakes answered with an HTTP error, by status (400 malformed, 401 JWT, \
                403 origin, 405 method, 426 not an upgrade, 431 too large).";
    write_family(out, name, "counter", help);
    for (index, status) in HANDSHAKE_STATUSES.iter().enumerate() {
        let labels = format!(",status=\"{status}\"");
        let values = cores
            .iter()
            .map(|c| c.handshake_failures[index].load(Relaxed));
        write_series(out, name, &labels, values);
    }
    type Read = fn(&CoreStats) -> &Histogram;
    let histograms: [(&str, &str, Read, &[u64; 5]); 2] = [
        (
            "ringcast_fanout_recipients",
            "Recipients of each fan-out on the core (a room message's or broadcast's share).",
            |c| &c.fanout,
            &FANOUT_BUCKETS,
        ),
        (
            "ringcast_outbound_queue_bytes",
            "A connection's queued bytes each time the flush path takes them for a write.",
            |c| &c.outbound_queue,
            &QUEUE_BUCKETS,
        ),
    ];
    for (name, help, histogram, bounds) in histograms {
        write_family(out, name, "histogram", help);
        for (core, stats) in cores.iter().enumerate() {
            let (buckets, sum) = histogram(stats).snapshot();
            let mut cumulative = 0;
            for (index, count) in buckets.iter().enumerate() {
                cumulative += count;
                let le = bounds.get(index).map_or("+Inf".to_string(), u64::to_string);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{core=\"{core}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(out, "{name}_sum{{core=\"{core}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{core=\"{core}\"}} {cumulative}");
        }
    }
}

/// A cross-core backlog figure: name, Prometheus type, help, and how to read it from
/// a core's `(depth now, envelopes that ever waited)`.
type BacklogMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&(usize, u64)) -> u64,
);

const BACKLOG_METRICS: [BacklogMetric; 2] = [
    (
        "ringcast_backlog_envelopes",
        "gauge",
        "Envelopes waiting in the core's backlog for a full inbox (readers pause while any core has one).",
        |(depth, _)| *depth as u64,
    ),
    (
        "ringcast_backlogged_envelopes_total",
        "counter",
        "Envelopes that ever waited in the core's backlog (a sign inbox_capacity is small).",
        |(_, total)| *total,
    ),
];

/// Each core's cross-core backlog (see `hub`), `(depth now, envelopes that ever
/// waited)` in core order, appended to [`render_metrics`]'s text.
pub fn render_backlogs(out: &mut String, backlogs: &[(usize, u64)]) {
    for (name, kind, help, value) in BACKLOG_METRICS {
        write_family(out, name, kind, help);
        write_series(out, name, "", backlogs.iter().map(value));
    }
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn write_family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One line per core, `name{core="N"<labels>} value`, in core order.
fn write_series(out: &mut String, name: &str, labels: &str, values: impl Iterator<Item = u64>) {
    for (core, value) in values.enumerate() {
        let _ = writeln!(out, "{name}{{core=\"{core}\"{labels}}} {value}");
    }
}

macro_rules! counters {
    ($($count:ident => $field:ident),* ; hot: $($hot:ident),* $(,)?) => {
        impl CoreStats {
            $(pub(crate) fn $count(&self) {
                self.$field.fetch_add(1, Relaxed);
            })*
        }

        /// Sums the counters of every core.
        pub fn sum<'a>(cores: impl IntoIterator<Item = &'a CoreStats>) -> Stats {
            let mut total = Stats::default();
            for core in cores {
                $(total.$field += core.$field.load(Relaxed);)*
                $(total.$hot += core.$hot.load(Relaxed);)*
                for (sum, count) in total.auth_refused.iter_mut().zip(&core.auth_refused) {
                    *sum += count.load(Relaxed);
                }
            }
            total
        }
    };
}

counters! {
    count_accepted => accepted,
    count_opened => opened,
    count_closed => closed,
    count_rejected_handshake => rejected_handshakes,
    count_protocol_error => protocol_errors,
    count_slow_consumer => slow_consumers,
    count_refused_per_ip => refused_per_ip,
    count_refused_total => refused_total,
    count_handshake_timeout => handshake_timeouts;
    hot: messages_received, history_bytes, history_rooms, bytes_received, bytes_queued,
    frames_queued,
}

impl CoreStats {
    /// Counts an upgrade refused for its JWT, by reason.
    pub(crate) fn count_auth_refused(&self, refusal: Refusal) {
        let index = Refusal::ALL.iter().position(|r| *r == refusal);
        self.auth_refused[index.expect("every refusal is in ALL")].fetch_add(1, Relaxed);
    }

    /// Counts a message from a client. On the hot path, and only the owning core
    /// writes it: a plain load and store, not a locked read-modify-write.
    /// Counts bytes read from a client (owning core only: load and store).
    pub(crate) fn count_bytes_received(&self, n: usize) {
        let total = &self.bytes_received;
        total.store(total.load(Relaxed) + n as u64, Relaxed);
    }

    /// Counts a frame queued for a client and its wire length (owning core only).
    pub(crate) fn count_queued(&self, bytes: usize) {
        let (total, frames) = (&self.bytes_queued, &self.frames_queued);
        total.store(total.load(Relaxed) + bytes as u64, Relaxed);
        frames.store(frames.load(Relaxed) + 1, Relaxed);
    }

    /// Records a connection's queued bytes as the flush path takes them for a write
    /// (owning core only): once per write, not once per frame queued, which cost a
    /// fan-out a histogram update per recipient.
    pub(crate) fn observe_queue(&self, queued: usize) {
        self.outbound_queue.observe(&QUEUE_BUCKETS, queued as u64);
    }

    /// Counts a handshake answered with HTTP `status`.
    pub(crate) fn count_handshake_failure(&self, status: u16) {
        if let Some(index) = HANDSHAKE_STATUSES.iter().position(|s| *s == status) {
            self.handshake_failures[index].fetch_add(1, Relaxed);
        }
    }

    /// Sets the core's room history gauges (only the owning core writes them).
    pub fn set_history(&self, bytes: usize, rooms: usize) {
        self.history_bytes.store(bytes as u64, Relaxed);
        self.history_rooms.store(rooms as u64, Relaxed);
    }

    pub(crate) fn count_message_received(&self) {
        let n = self.messages_received.load(Relaxed);
        self.messages_received.store(n + 1, Relaxed);
    }
}

/// A cluster node's link to Redis (`cluster`): whether it is up, and what crossed
/// it. One per node, written by the link's threads, read by `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    up: AtomicBool,
    /// Connections to Redis made after the first (each follows a loss).
    pub reconnects: AtomicU64,
    /// Commands sent to Redis (publishes, joins, leaves, heartbeats).
    pub commands: AtomicU64,
    /// Messages from other nodes (and this node's own membership events) received.
    pub received: AtomicU64,
    /// Cross-node messages dropped because Redis was unreachable.
    pub dropped: AtomicU64,
    /// Times the node restarted its clients under a new node id (its state in Redis
    /// was lost: a long outage or a Redis restart).
    pub restarts: AtomicU64,
    /// Times a core found the link's queue full and waited.
    pub queue_full: AtomicU64,
}

impl ClusterStats {
    /// Whether the link is connected to Redis now.
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Relaxed);
    }

    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// The cluster link's figures (see [`ClusterStats`]), appended to [`render_metrics`]'s
/// text on a cluster node. Node-wide: no `core` label.
pub fn render_cluster(out: &mut String, stats: &ClusterStats) {
    let figures: [(&str, &str, &str, u64); 7] = [
        (
            "ringcast_cluster_up",
            "gauge",
            "1 while the node is connected to Redis; 0 while it serves only its own clients.",
            u64::from(stats.is_up()),
        ),
        (
            "ringcast_cluster_reconnects_total",
            "counter",
            "Connections to Redis after the first (each follows a loss).",
            stats.reconnects.load(Relaxed),
        ),
        (
            "ringcast_cluster_commands_total",
            "counter",
            "Commands sent to Redis: publishes, joins, leaves, heartbeats.",
            stats.commands.load(Relaxed),
        ),
        (
            "ringcast_cluster_received_total",
            "counter",
            "Messages received from Redis (other nodes' messages, membership events).",
            stats.received.load(Relaxed),
        ),
        (
            "ringcast_cluster_dropped_total",
            "counter",
            "Cross-node messages dropped while Redis was unreachable.",
            stats.dropped.load(Relaxed),
        ),
        (
            "ringcast_cluster_restarts_total",
            "counter",
            "Times the node closed its clients (1012) and rejoined under a new node id.",
            stats.restarts.load(Relaxed),
        ),
        (
            "ringcast_cluster_queue_full_total",
            "counter",
            "Times a core found the Redis link's queue full and waited.",
            stats.queue_full.load(Relaxed),
        ),
    ];
    for (name, kind, help, value) in figures {
        write_family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_metrics_say_whether_the_link_is_up() {
        let stats = ClusterStats::default();
        ClusterStats::count(&stats.dropped);
        let mut text = String::new();
        render_cluster(&mut text, &stats);
        assert!(text.lines().any(|l| l == "ringcast_cluster_up 0"), "{text}");
        assert!(text
            .lines()
            .any(|l| l == "ringcast_cluster_dropped_total 1"));
        stats.set_up(true);
        let mut text = String::new();
        render_cluster(&mut text, &stats);
        assert!(text.lines().any(|l| l == "ringcast_cluster_up 1"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP ")).count(), 7);
    }

    #[test]
    fn auth_refusals_are_counted_under_their_reason() {
        let cores = [Arc::new(CoreStats::default())];
        for (n, refusal) in Refusal::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                cores[0].count_auth_refused(refusal);
            }
        }
        let text = render_metrics(&cores);
        for (n, refusal) in Refusal::ALL.into_iter().enumerate() {
            let line = format!(
                "ringcast_auth_refused_total{{core=\"0\",reason=\"{}\"}} {}",
                refusal.reason(),
                n + 1
            );
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    #[test]
    fn metrics_give_every_counter_of_every_core_with_help_and_type() {
        let cores = [
            Arc::new(CoreStats::default()),
            Arc::new(CoreStats::default()),
        ];
        for _ in 0..3 {
            cores[1].count_accepted();
            cores[1].count_opened();
        }
        cores[1].count_closed();
        cores[0].count_accepted();
        cores[0].count_rejected_handshake();
        cores[1].count_protocol_error();
        cores[1].count_slow_consumer();
        cores[0].count_refused_per_ip();
        cores[0].count_refused_per_ip();
        cores[1].count_refused_total();
        for _ in 0..5 {
            cores[0].count_message_received();
        }
        cores[1].set_history(4096, 3);
        let text = render_metrics(&cores);
        for line in [
            "# TYPE ringcast_connections_accepted_total counter",
            "ringcast_connections_accepted_total{core=\"0\"} 1",
            "ringcast_connections_accepted_total{core=\"1\"} 3",
            "ringcast_connections_opened_total{core=\"1\"} 3",
            "ringcast_connections_closed_total{core=\"1\"} 1",
            "# TYPE ringcast_connections_open gauge",
            "ringcast_connections_open{core=\"0\"} 0",
            "ringcast_connections_open{core=\"1\"} 2",
            "ringcast_handshakes_rejected_total{core=\"0\"} 1",
            "ringcast_protocol_errors_total{core=\"1\"} 1",
            "ringcast_slow_consumers_total{core=\"1\"} 1",
            "# TYPE ringcast_connections_refused_total counter",
            "ringcast_connections_refused_total{core=\"0\",reason=\"per_ip\"} 2",
            "ringcast_connections_refused_total{core=\"1\",reason=\"per_ip\"} 0",
            "ringcast_connections_refused_total{core=\"0\",reason=\"total\"} 0",
            "ringcast_connections_refused_total{core=\"1\",reason=\"total\"} 1",
            "ringcast_messages_received_total{core=\"0\"} 5",
            "ringcast_messages_received_total{core=\"1\"} 0",
            "# TYPE ringcast_history_bytes gauge",
            "ringcast_history_bytes{core=\"1\"} 4096",
            "ringcast_history_rooms{core=\"1\"} 3",
            "ringcast_history_rooms{core=\"0\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // 16 metrics: HELP, TYPE and one line per core each; the refusals two per
        // core, the JWT refusals seven.
        assert_eq!(text.lines().count(), 16 * 2 + 23 * cores.len());
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# HELP ")).count(),
            16
        );
    }

    #[test]
    fn open_never_underflows_when_counters_are_read_mid_change() {
        let stats = Stats {
            opened: 4,
            closed: 5,
            ..Stats::default()
        };
        assert_eq!(stats.open(), 0);
    }
}

#[cfg(test)]
mod distribution_tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_with_sum_and_count_per_core() {
        let cores = [
            Arc::new(CoreStats::default()),
            Arc::new(CoreStats::default()),
        ];
        for recipients in [1, 5, 5, 500, 20_000] {
            cores[1].fanout.observe(&FANOUT_BUCKETS, recipients);
        }
        cores[0].count_queued(100);
        cores[0].observe_queue(300);
        cores[0].count_handshake_failure(426);
        cores[0].count_handshake_failure(426);
        cores[0].count_handshake_failure(999); // not a status we answer: ignored
        let mut text = String::new();
        render_distributions(&mut text, &cores);
        for line in [
            "# TYPE ringcast_fanout_recipients histogram",
            "ringcast_fanout_recipients_bucket{core=\"1\",le=\"1\"} 1",
            "ringcast_fanout_recipients_bucket{core=\"1\",le=\"10\"} 3",
            "ringcast_fanout_recipients_bucket{core=\"1\",le=\"1000\"} 4",
            "ringcast_fanout_recipients_bucket{core=\"1\",le=\"+Inf\"} 5",
            "ringcast_fanout_recipients_sum{core=\"1\"} 20511",
            "ringcast_fanout_recipients_count{core=\"1\"} 5",
            "ringcast_fanout_recipients_count{core=\"0\"} 0",
            "ringcast_outbound_queue_bytes_bucket{core=\"0\",le=\"256\"} 0",
            "ringcast_outbound_queue_bytes_bucket{core=\"0\",le=\"4096\"} 1",
            "ringcast_handshake_failures_total{core=\"0\",status=\"426\"} 2",
            "ringcast_handshake_failures_total{core=\"1\",status=\"426\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let total = sum(cores.iter().map(|c| &**c));
        assert_eq!((total.bytes_queued, total.frames_queued), (100, 1));
    }
}
