//! The churn scenario: short-lived clients, all the time, as the hostile background of
//! a soak test beside a steady `rooms` run (`benches/soak.sh`). It checks the replies
//! its clients wait for and counts what they did; it measures no latency and does not
//! check room traffic (the `rooms` run beside it does).
//!
//! Each of `-c` worker threads runs one client after another, at `--rate` connections
//! a second in all: connect, upgrade, wait for the `welcome`, join 1-5 rooms (waiting
//! for each `room_joined`), send 0-3 room messages, set metadata (half of them, waiting
//! for `metadata_updated`), leave some rooms, then end by a clean close (6 in 10:
//! close 1000, the server's close frame, its FIN), a reset (2 in 10: `SO_LINGER` 0, an
//! RST with replies possibly in flight), or a plain drop without a close frame (1 in
//! 10). The tenth is half-open: it sends part of its upgrade request (maybe nothing)
//! and is dropped 0.5-12.5 s later, past the server's 10 s handshake timeout for some.
//! Every wait is bounded by `--connect-timeout`; a client that times out, is refused,
//! or gets an `error` counts as failed. Clients are numbered across the workers; with
//! several URLs, client `n` connects to URL `n % N`.
//!
//! Rooms: about half of the joins go to the first `--rooms` rooms of a `rooms` run
//! (`load-0`, ...; run it with `--guests` so its members accept the visitors), the
//! rest to the churn's own rooms (`churn-0` .. `churn-15`); `--rooms 0` keeps to its
//! own. What each client does is drawn from a generator seeded by its worker
//! ([`Cycle::draw`]), so runs are repeatable in what they attempt.
//!
//! Blocking `std::net` sockets and the crate's codec (`client.rs`), one thread per
//! worker: the point is the variety of endings, not throughput.

mod client;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use client::{connect, nonce, Client};

use super::args::Plan;
pub use super::checks::ChurnCounts;
use super::driver::Interval;
use super::error::RunError;
use super::report::Report;
use super::rooms::Layout;
use super::{measure, sys};
use crate::ws::handshake::client_request;

/// The churn's own rooms: `churn-0` .. `churn-{OWN_ROOMS - 1}`.
const OWN_ROOMS: u64 = 16;

/// Most rooms one client joins.
const MAX_JOINS: u64 = 5;

/// Connections a second when `--rate` is not given.
const DEFAULT_RATE: f64 = 100.0;

/// A worker this far behind its schedule starts afresh instead of bursting to catch up.
const MAX_LAG: Duration = Duration::from_secs(1);

/// How an upgraded client ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The closing handshake, then the server's FIN (RFC 6455 §7.1.1).
    Close,
    /// `SO_LINGER` 0 and close: an RST.
    Reset,
    /// Closed without a close frame.
    Vanish,
}

/// What one churn client does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cycle {
    /// Sends the first `sent` bytes of its upgrade request, holds the socket `hold`.
    HalfOpen { sent: usize, hold: Duration },
    Session {
        /// Rooms to join, in order, each once.
        rooms: Vec<String>,
        /// Room messages to send after joining, by index into `rooms`.
        messages: Vec<usize>,
        metadata: bool,
        /// How many of `rooms`, the first ones, to leave before the end.
        leave: usize,
        ending: Ending,
    },
}

/// A small seeded generator (xorshift64*): repeatable runs without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` for `n` far below 2^64; `n` must not be 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

impl Cycle {
    /// The next client's plan. `shared_rooms`: rooms of the `rooms` run to visit;
    /// `request_len`: length of an upgrade request, for the half-open ones.
    pub fn draw(rng: &mut Rng, shared_rooms: usize, request_len: usize) -> Cycle {
        let ending = match rng.below(10) {
            0 => {
                return Cycle::HalfOpen {
                    sent: rng.below(request_len as u64) as usize,
                    hold: Duration::from_millis(500 + rng.below(12_000)),
                }
            }
            1 | 2 => Ending::Reset,
            3 => Ending::Vanish,
            _ => Ending::Close,
        };
        let mut rooms: Vec<String> = Vec::new();
        for _ in 0..1 + rng.below(MAX_JOINS) {
            let name = if shared_rooms > 0 && rng.below(2) == 0 {
                Layout::room_name(rng.below(shared_rooms as u64) as usize)
            } else {
                format!("churn-{}", rng.below(OWN_ROOMS))
            };
            if !rooms.contains(&name) {
                rooms.push(name);
            }
        }
        let n = rooms.len() as u64;
        let messages = (0..rng.below(4)).map(|_| rng.below(n) as usize).collect();
        Cycle::Session {
            metadata: rng.below(2) == 0,
            leave: rng.below(n + 1) as usize,
            rooms,
            messages,
            ending,
        }
    }
}

/// Runs the scenario: `-c` workers for `--duration`, then the report.
pub fn run(plan: Plan) -> Result<Report, RunError> {
    let plan = Arc::new(plan);
    let server_cpu = |plan: &Plan| -> Result<Option<Duration>, RunError> {
        Ok(plan.server_pid.map(measure::process_cpu_time).transpose()?)
    };
    let (cpu_before, own_before) = (server_cpu(&plan)?, sys::own_cpu_time());
    let start = Instant::now();
    let mut handles = Vec::with_capacity(plan.connections);
    for worker in 0..plan.connections {
        let plan = plan.clone();
        let handle = std::thread::Builder::new()
            .name(format!("churn-{worker}"))
            .stack_size(256 << 10)
            .spawn(move || run_worker(&plan, worker, start))
            .map_err(RunError::Spawn)?;
        handles.push(handle);
    }
    let mut counts = ChurnCounts::default();
    for handle in handles {
        match handle.join() {
            Ok(Ok(worker)) => counts.merge(&worker),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(RunError::Panicked),
        }
    }
    let interval = Interval {
        secs: start.elapsed().as_secs_f64(),
        own_cpu_s: sys::own_cpu_time().saturating_sub(own_before).as_secs_f64(),
        server_cpu_s: match (cpu_before, server_cpu(&plan)?) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
            _ => None,
        },
        sent: counts.messages,
        received: counts.attempts,
    };
    let mut report = Report::new(&plan, "blocking", "connections", &interval);
    report.load_threads = plan.connections;
    report.rooms = Some(plan.rooms);
    if counts.failures > 0 {
        report.problems.push(format!(
            "{} of {} churn clients failed (first: {})",
            counts.failures,
            counts.attempts,
            counts.first_failure.as_deref().unwrap_or("-")
        ));
    }
    if counts.attempts == 0 {
        report.problems.push("no churn client started".into());
    }
    report.churn = Some(counts);
    Ok(report)
}

/// One worker: a client at a time on its share of the schedule, until the end.
fn run_worker(plan: &Plan, worker: usize, start: Instant) -> Result<ChurnCounts, RunError> {
    if let Some(&Some(cpu)) = plan.threads.get(worker % plan.threads.len()) {
        monoio::utils::bind_to_cpu_set([cpu]).map_err(|errno| RunError::Pin {
            cpu,
            source: errno.into(),
        })?;
    }
    let workers = plan.connections;
    let rate = plan.rate.unwrap_or(DEFAULT_RATE);
    let period = Duration::from_secs_f64(workers as f64 / rate);
    let end = start + plan.duration;
    let mut rng = Rng::new(worker as u64 + 1);
    let mut counts = ChurnCounts::default();
    // Half-open sockets and when to drop them.
    let mut held: Vec<(Instant, TcpStream)> = Vec::new();
    let mut due = start + period.mul_f64(worker as f64 / workers as f64);
    for n in 0.. {
        let now = Instant::now();
        held.retain(|(until, _)| *until > now);
        if due >= end || now >= end {
            break;
        }
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > MAX_LAG {
            due = now;
        }
        due += period;
        let client = worker + n * workers;
        counts.attempts += 1;
        let target = plan.target_for(client);
        let request_len = client_request(&target.host, &target.path, [0; 16]).0.len();
        let cycle = Cycle::draw(&mut rng, plan.rooms, request_len);
        if let Err(e) = run_client(plan, client, cycle, &mut rng, &mut counts, &mut held) {
            counts.failures += 1;
            counts
                .first_failure
                .get_or_insert_with(|| format!("client {client}: {e}"));
        }
    }
    Ok(counts)
}

/// Runs one client's cycle, counting what it did.
fn run_client(
    plan: &Plan,
    client: usize,
    cycle: Cycle,
    rng: &mut Rng,
    counts: &mut ChurnCounts,
    held: &mut Vec<(Instant, TcpStream)>,
) -> Result<(), String> {
    let (rooms, messages, metadata, leave, ending) = match cycle {
        Cycle::HalfOpen { sent, hold } => {
            let mut stream = connect(plan, client)?;
            let target = plan.target_for(client);
            let (request, _) = client_request(&target.host, &target.path, nonce(rng));
            stream
                .write_all(&request[..sent])
                .map_err(|e| format!("half-open write: {e}"))?;
            counts.half_open += 1;
            held.push((Instant::now() + hold, stream));
            return Ok(());
        }
        Cycle::Session {
            rooms,
            messages,
            metadata,
            leave,
            ending,
        } => (rooms, messages, metadata, leave, ending),
    };
    let mut conn = Client::open(plan, client)?;
    counts.upgraded += 1;
    for room in &rooms {
        conn.send_json(&json!({"type": "join_room", "room": room}))?;
        conn.expect("room_joined", Some(room))?;
        counts.joins += 1;
    }
    for &r in &messages {
        let text = format!("churn {client}");
        conn.send_json(&json!({"type": "room_message", "room": rooms[r], "message": text}))?;
        counts.messages += 1;
    }
    if metadata {
        let name = format!("churn-{client}");
        conn.send_json(&json!({"type": "set_metadata", "metadata": {"name": name}}))?;
        conn.expect("metadata_updated", None)?;
        counts.metadata += 1;
    }
    for room in &rooms[..leave] {
        conn.send_json(&json!({"type": "leave_room", "room": room}))?;
        counts.leaves += 1;
    }
    match ending {
        Ending::Close => {
            conn.close()?;
            counts.clean_closes += 1;
        }
        Ending::Reset => {
            conn.reset()?;
            counts.resets += 1;
        }
        Ending::Vanish => counts.vanished += 1,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(seed: u64, shared: usize, n: usize) -> Vec<Cycle> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| Cycle::draw(&mut rng, shared, 150)).collect()
    }

    #[test]
    fn the_same_seed_draws_the_same_clients() {
        assert_eq!(draws(7, 10, 50), draws(7, 10, 50));
        assert_ne!(draws(7, 10, 50), draws(8, 10, 50));
    }

    #[test]
    fn cycles_stay_within_their_bounds_and_cover_every_ending() {
        let cycles = draws(1, 3, 2000);
        let mut endings = [0usize; 4];
        for cycle in &cycles {
            match cycle {
                Cycle::HalfOpen { sent, hold } => {
                    assert!(*sent < 150);
                    assert!(*hold >= Duration::from_millis(500));
                    assert!(*hold < Duration::from_millis(12_500));
                    endings[3] += 1;
                }
                Cycle::Session {
                    rooms,
                    messages,
                    leave,
                    ending,
                    ..
                } => {
                    assert!((1..=MAX_JOINS as usize).contains(&rooms.len()));
                    let mut distinct = rooms.clone();
                    distinct.sort();
                    distinct.dedup();
                    assert_eq!(distinct.len(), rooms.len(), "each room joined once");
                    for room in rooms {
                        let shared = ["load-0", "load-1", "load-2"].contains(&room.as_str());
                        assert!(shared || room.starts_with("churn-"), "{room}");
                    }
                    assert!(messages.iter().all(|&m| m < rooms.len()));
                    assert!(*leave <= rooms.len());
                    endings[*ending as usize] += 1;
                }
            }
        }
        // About 6 / 2 / 1 / 1 in 10.
        for (ending, share) in endings.iter().zip([0.6, 0.2, 0.1, 0.1]) {
            let got = *ending as f64 / cycles.len() as f64;
            assert!((got - share).abs() < 0.05, "{endings:?}");
        }
    }

    #[test]
    fn no_shared_rooms_keeps_to_its_own() {
        for cycle in draws(3, 0, 500) {
            if let Cycle::Session { rooms, .. } = cycle {
                assert!(rooms.iter().all(|r| r.starts_with("churn-")), "{rooms:?}");
            }
        }
    }
}
