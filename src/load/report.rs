//! The result of a run: one struct that prints as a readable summary or one JSON line,
//! plus the list of problems (loss, duplicates, drops) that make the run fail.
//! It computes rates from an [`Interval`]; it measures nothing itself.

use std::fmt::Write as _;

use serde::Serialize;

use super::accounting::Tally;
use super::args::{Plan, Scenario};
use super::checks::{ChurnCounts, RoomChecks};
use super::driver::Interval;
use super::histogram::{Histogram, Percentiles};

/// Everything a run found. Fields that do not apply to the scenario are `None` and left
/// out of the JSON.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    /// The URLs, in the order given; connections are spread over them.
    pub urls: Vec<String>,
    /// With several URLs: how many connections went to each, in the same order
    /// (not for churn, whose clients come and go).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_per_url: Option<Vec<usize>>,
    /// The load tool's I/O driver: io_uring, epoll (fallback) or mixed.
    pub driver: &'static str,
    pub connections: usize,
    pub load_threads: usize,
    pub load_cpus: Vec<usize>,
    /// Seconds in the measured interval.
    pub seconds: f64,
    /// What `count` counts: round trips, deliveries, connections.
    pub unit: &'static str,
    pub count: u64,
    pub rate_per_s: f64,
    /// Messages sent in the interval (echo, broadcast).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publishers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    /// Rooms: rooms the connections were spread over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rooms: Option<usize>,
    /// Rooms: messages per second per publisher, if on a schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Rooms: seconds from the first `join_room` to every member seeing its room full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_s: Option<f64>,
    /// Round-trip, delivery or connect latency. A message counts as received when the
    /// read that brought it completed (one clock read per read, not per message).
    pub latency: Option<Percentiles>,
    /// Rooms: time from sending a message to its last delivery in the room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fanout_latency: Option<Percentiles>,
    pub load_cpu_s: f64,
    /// Load CPU time over wall time, in percent of one CPU.
    pub load_cpu_percent: f64,
    pub server_pid: Option<u32>,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_percent: Option<f64>,
    /// `count` per second of server CPU time: the number to compare servers by.
    pub per_server_cpu_s: Option<f64>,
    /// Connections the server closed or broke before the end.
    pub dropped: u64,
    /// Echo: replies that did not match what was sent, or came with nothing in flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatched: Option<u64>,
    /// Echo: messages still unanswered after the drain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unanswered: Option<u64>,
    /// Broadcast: exactly-once accounting over all connections and publishers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Tally>,
    /// Rooms: protocol checks beyond exactly-once delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_checks: Option<RoomChecks>,
    /// Broadcast: payloads that were not the tool's own messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub foreign: Option<u64>,
    /// Churn: what the short-lived clients did and how they ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnCounts>,
    /// Connect: failed attempts by kind, and the first failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_failures: Option<Vec<(String, u64)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_after: Option<u64>,
    /// Connect: growth of the server's resident memory per connection held, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_per_connection: Option<f64>,
    /// Everything that makes this run a failure; empty for a clean run.
    pub problems: Vec<String>,
}

impl Report {
    /// The fields every scenario fills the same way.
    pub fn new(
        plan: &Plan,
        driver: &'static str,
        unit: &'static str,
        interval: &Interval,
    ) -> Report {
        let per_s = |x: f64| {
            if interval.secs > 0.0 {
                x / interval.secs
            } else {
                0.0
            }
        };
        Report {
            scenario: plan.scenario.name(),
            urls: plan.urls.clone(),
            connections_per_url: (plan.urls.len() > 1 && plan.scenario != Scenario::Churn)
                .then(|| plan.connections_per_url()),
            driver,
            connections: plan.connections,
            load_threads: plan.threads.len(),
            load_cpus: plan.threads.iter().flatten().copied().collect(),
            seconds: interval.secs,
            unit,
            count: interval.received,
            rate_per_s: per_s(interval.received as f64),
            load_cpu_s: interval.own_cpu_s,
            load_cpu_percent: per_s(interval.own_cpu_s) * 100.0,
            server_pid: plan.server_pid,
            server_cpu_s: interval.server_cpu_s,
            server_cpu_percent: interval.server_cpu_s.map(|s| per_s(s) * 100.0),
            per_server_cpu_s: interval
                .server_cpu_s
                .filter(|&s| s > 0.0)
                .map(|s| interval.received as f64 / s),
            ..Report::default()
        }
    }

    /// A message scenario's report (echo, broadcast, rooms): `new` plus what was
    /// sent, the message shape and the latency percentiles.
    pub fn of_messages(
        plan: &Plan,
        driver: &'static str,
        unit: &'static str,
        interval: &Interval,
        latency: &Histogram,
    ) -> Report {
        Report {
            sent: Some(interval.sent),
            size: Some(plan.size),
            binary: Some(plan.binary),
            latency: latency.percentiles(),
            ..Report::new(plan, driver, unit, interval)
        }
    }

    /// Records the connections that dropped during the run, a problem if any did.
    pub fn record_drops(&mut self, dropped: u64, first_drop: Option<String>) {
        self.dropped = dropped;
        if dropped > 0 {
            let first = first_drop.unwrap_or_default();
            self.problems
                .push(format!("{dropped} connection(s) dropped (first: {first})"));
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }

    /// The readable summary: what was run, what was measured, what it cost, and what
    /// was checked.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        self.summary_setup(&mut out);
        self.summary_measured(&mut out);
        self.summary_costs(&mut out);
        self.summary_checks(&mut out);
        out
    }

    /// The scenario, its targets and its shape.
    fn summary_setup(&self, out: &mut String) {
        let cpus = if self.load_cpus.is_empty() {
            "unpinned".to_string()
        } else {
            format!("CPUs {:?}", self.load_cpus)
        };
        let spread = match self.urls.len() {
            1 => String::new(),
            n => format!(" over {n} URLs"),
        };
        let _ = writeln!(
            out,
            "{} {}  ({} connections{spread}, {} load thread(s) {cpus}, {})",
            self.scenario,
            self.urls.join(" "),
            self.connections,
            self.load_threads,
            self.driver
        );
        if let Some(counts) = &self.connections_per_url {
            let each: Vec<String> = self
                .urls
                .iter()
                .zip(counts)
                .map(|(url, n)| format!("{n} to {url}"))
                .collect();
            let _ = writeln!(out, "  {}", each.join(", "));
        }
        let mut shape = Vec::new();
        if let Some(size) = self.size {
            let kind = if self.binary == Some(true) {
                "binary"
            } else {
                "text"
            };
            shape.push(format!("{size}-byte {kind} messages"));
        }
        if let Some(p) = self.in_flight {
            shape.push(format!("{p} in flight per connection"));
        }
        if let Some(r) = self.rooms {
            shape.push(format!("{r} room(s)"));
        }
        if let (Some(k), Some(w)) = (self.publishers, self.window) {
            shape.push(format!("{k} publisher(s), window {w}"));
        }
        if let Some(rate) = self.rate {
            shape.push(format!("{rate} msg/s per publisher"));
        }
        if !shape.is_empty() {
            let _ = writeln!(out, "  {}", shape.join(", "));
        }
    }

    /// The count, rate and latency measured.
    fn summary_measured(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  {:<18}{} {} in {:.2} s = {:.0}/s",
            "measured", self.count, self.unit, self.seconds, self.rate_per_s
        );
        if let Some(sent) = self.sent {
            let _ = writeln!(out, "  {:<18}{sent}", "messages sent");
        }
        if let Some(s) = self.join_s {
            let notices = self.room_checks.as_ref().map_or(0, |c| c.join_notices);
            let _ = writeln!(
                out,
                "  {:<18}{s:.2} s until every room was full ({notices} member_joined notices)",
                "joining"
            );
        }
        let percentiles = |out: &mut String, label: &str, l: &Percentiles| {
            let _ = writeln!(
                out,
                "  {label:<18}p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs  ({} samples)",
                l.p50_us, l.p99_us, l.p999_us, l.max_us, l.samples
            );
        };
        if let Some(l) = &self.latency {
            percentiles(out, "latency", l);
        }
        if let Some(l) = &self.fanout_latency {
            percentiles(out, "to whole room", l);
        }
    }

    /// CPU and memory on both sides.
    fn summary_costs(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  {:<18}{:.2} s ({:.0}% of one CPU)",
            "load CPU", self.load_cpu_s, self.load_cpu_percent
        );
        if let (Some(s), Some(pct)) = (self.server_cpu_s, self.server_cpu_percent) {
            let _ = write!(out, "  {:<18}{s:.2} s ({pct:.0}% of one CPU)", "server CPU");
            match self.per_server_cpu_s {
                Some(r) => {
                    let _ = writeln!(out, " = {r:.0} {} per server CPU-second", self.unit);
                }
                None => out.push('\n'),
            }
        }
        if let (Some(before), Some(after)) = (self.server_rss_before, self.server_rss_after) {
            let _ = write!(
                out,
                "  {:<18}{} KiB -> {} KiB",
                "server RSS",
                before / 1024,
                after / 1024
            );
            match self.server_rss_per_connection {
                Some(per) => {
                    let _ = writeln!(out, " = {per:.0} bytes per connection");
                }
                None => out.push('\n'),
            }
        }
    }

    /// Correctness: delivery, protocol, churn, failures, and the verdict.
    fn summary_checks(&self, out: &mut String) {
        if let Some(t) = &self.delivery {
            let _ = writeln!(
                out,
                "  {:<18}{} of {} owed deliveries arrived; lost {}, duplicates {}, reordered {}, phantom {}",
                "exactly once", t.delivered, t.expected, t.lost, t.duplicates, t.reordered, t.phantom
            );
        }
        if let Some(c) = &self.room_checks {
            let _ = writeln!(
                out,
                "  {:<18}misrouted {}, own messages {}, inexact counts {}, errors {}, unexpected {}",
                "protocol", c.misrouted, c.own_messages, c.count_errors, c.server_errors, c.unexpected
            );
            if c.guest_notices > 0 {
                let _ = writeln!(out, "  {:<18}{} notices", "guests", c.guest_notices);
            }
        }
        if let Some(c) = &self.churn {
            let _ = writeln!(
                out,
                "  {:<18}{} upgraded ({} closed cleanly, {} reset, {} dropped), {} half-open",
                "churn clients", c.upgraded, c.clean_closes, c.resets, c.vanished, c.half_open
            );
            let _ = writeln!(
                out,
                "  {:<18}{} joins, {} leaves, {} room messages, {} metadata; {} failed",
                "churn requests", c.joins, c.leaves, c.messages, c.metadata, c.failures
            );
        }
        if let Some(failures) = &self.connect_failures {
            for (kind, n) in failures {
                let _ = writeln!(out, "  {:<18}{n} x {kind}", "connect failed");
            }
        }
        if let Some(first) = &self.first_failure {
            let _ = writeln!(out, "  {:<18}{first}", "first failure");
        }
        let _ = writeln!(out, "  {:<18}{}", "dropped", self.dropped);
        if self.problems.is_empty() {
            let _ = writeln!(out, "  result            clean");
        } else {
            for problem in &self.problems {
                let _ = writeln!(out, "  PROBLEM           {problem}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::target::{parse_target, Spread};
    use std::time::Duration;

    fn plan() -> Plan {
        Plan {
            scenario: Scenario::Echo,
            urls: vec!["ws://127.0.0.1:9/".into()],
            targets: vec![parse_target("ws://127.0.0.1:9/", None).unwrap()],
            spread: Spread::RoundRobin,
            connections: 10,
            duration: Duration::from_secs(1),
            json: false,
            threads: vec![Some(1)],
            size: 32,
            binary: false,
            in_flight: 1,
            publishers: 1,
            window: 1,
            rooms: 1,
            rate: None,
            guests: false,
            join_timeout: Duration::from_secs(1),
            sources: vec![],
            hold: Duration::ZERO,
            server_pid: Some(1),
            concurrency: 1,
            connect_timeout: Duration::from_secs(1),
            drain: Duration::ZERO,
            max_message: 1 << 20,
            progress: false,
        }
    }

    #[test]
    fn rates_are_per_wall_second_and_per_server_cpu_second() {
        let interval = Interval {
            secs: 2.0,
            own_cpu_s: 1.0,
            server_cpu_s: Some(0.5),
            sent: 1000,
            received: 1000,
        };
        let r = Report::new(&plan(), "io_uring", "round trips", &interval);
        assert_eq!(r.rate_per_s, 500.0);
        assert_eq!(r.per_server_cpu_s, Some(2000.0));
        assert_eq!(r.server_cpu_percent, Some(25.0));
        assert_eq!(r.load_cpu_percent, 50.0);
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["per_server_cpu_s"], 2000.0);
        assert!(json.get("delivery").is_none());
        assert!(r
            .summary()
            .contains("2000 round trips per server CPU-second"));
    }

    #[test]
    fn a_message_report_carries_the_shape_latency_and_drops() {
        let interval = Interval {
            secs: 1.0,
            own_cpu_s: 0.5,
            server_cpu_s: Some(0.5),
            sent: 7,
            received: 5,
        };
        let mut latency = Histogram::default();
        latency.record(1_000_000);
        let mut r = Report::of_messages(&plan(), "io_uring", "round trips", &interval, &latency);
        assert_eq!((r.sent, r.size, r.binary), (Some(7), Some(32), Some(false)));
        assert!(r.latency.is_some());
        r.record_drops(0, None);
        assert!(r.problems.is_empty());
        r.record_drops(2, Some("reset by peer".into()));
        assert_eq!(r.dropped, 2);
        assert_eq!(
            r.problems,
            ["2 connection(s) dropped (first: reset by peer)"]
        );
    }

    #[test]
    fn idle_server_gives_no_per_cpu_rate_rather_than_infinity() {
        let interval = Interval {
            secs: 1.0,
            own_cpu_s: 0.0,
            server_cpu_s: Some(0.0),
            sent: 0,
            received: 10,
        };
        let r = Report::new(&plan(), "epoll", "connections", &interval);
        assert_eq!(r.per_server_cpu_s, None);
        assert!(r.to_json().contains("\"per_server_cpu_s\":null"));
    }

    #[test]
    fn several_urls_are_counted_with_the_connections_each_got() {
        let interval = Interval {
            secs: 1.0,
            own_cpu_s: 0.0,
            server_cpu_s: None,
            sent: 0,
            received: 0,
        };
        let one = Report::new(&plan(), "epoll", "connections", &interval);
        assert!(one
            .summary()
            .starts_with("echo ws://127.0.0.1:9/  (10 connections, 1 load"));
        assert!(!one.to_json().contains("connections_per_url"));
        let mut two = plan();
        two.urls.push("ws://127.0.0.1:10/".into());
        two.targets
            .push(parse_target("ws://127.0.0.1:10/", None).unwrap());
        let r = Report::new(&two, "epoll", "connections", &interval);
        let summary = r.summary();
        assert!(
            summary.contains("(10 connections over 2 URLs,"),
            "{summary}"
        );
        assert!(
            summary.contains("5 to ws://127.0.0.1:9/, 5 to ws://127.0.0.1:10/"),
            "{summary}"
        );
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["urls"].as_array().map(Vec::len), Some(2));
        assert_eq!(json["connections_per_url"], serde_json::json!([5, 5]));
    }

    #[test]
    fn problems_are_listed_in_the_summary() {
        let interval = Interval {
            secs: 1.0,
            own_cpu_s: 0.0,
            server_cpu_s: None,
            sent: 0,
            received: 0,
        };
        let mut r = Report::new(&plan(), "epoll", "deliveries", &interval);
        r.problems.push("3 deliveries lost".into());
        assert!(r.summary().contains("PROBLEM           3 deliveries lost"));
    }
}
