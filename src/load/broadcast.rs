//! The broadcast scenario, against a server that relays every message to every
//! connection, sender included. The first `--publishers` connections publish, each
//! keeping at most `--window` messages that it has not yet received back itself;
//! every connection checks it receives every message exactly once, and times each
//! delivery from the send time the message carries. Before the run, sync probes
//! confirm the relay reaches every connection, so a late registration is not "loss".

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::accounting::{Arrival, SeqTracker, Tally};
use super::client::{FrameReader, SendQueue, WsStream};
use super::driver::{self, bump, Interval, Shared, Stage, ThreadCtx};
use super::error::RunError;
use super::histogram::Histogram;
use super::open::open_connections;
use super::payload::{fill_broadcast, parse_broadcast, Kind, Stamp};
use super::progress::Progress;
use super::report::Report;
use crate::ws::{Incoming, Opcode};

/// How often connection 0 sends a sync probe until every connection has heard one.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// A publishing connection's side.
struct Publisher {
    id: u32,
    next_seq: u64,
    /// Sent and not yet received back.
    unacked: usize,
}

/// One connection's bookkeeping, shared between its reader task and its thread.
struct BroadcastConn {
    outbox: Rc<SendQueue>,
    /// What this connection received from each publisher.
    trackers: Vec<SeqTracker>,
    publisher: Option<Publisher>,
    synced: bool,
    /// Payloads that were not ours.
    foreign: u64,
    ended: Option<String>,
}

/// What one load thread hands back: each connection's trackers.
pub struct BroadcastThread {
    latency: Histogram,
    receivers: Vec<Vec<SeqTracker>>,
    foreign: u64,
    first_drop: Option<String>,
}

/// Runs the scenario from the main thread.
pub fn run(shared: Arc<Shared>) -> Result<Report, RunError> {
    let plan = &shared.plan;
    let threads = driver::spawn(&shared, thread_main)?;
    let mut progress = Progress::new(plan.progress);
    let connections = plan.connections;
    let measured = (|| {
        threads.wait_opened(&mut progress)?;
        shared.set_stage(Stage::Syncing);
        threads.wait(
            plan.connect_timeout,
            |s| s.synced.load(Relaxed) == connections,
            |s| RunError::NotSynced {
                synced: s.synced.load(Relaxed),
                connections,
                timeout: s.plan.connect_timeout,
            },
            &mut progress,
            "syncing",
        )?;
        threads.measure(&mut progress, "broadcast", "deliveries")
    })();
    let (start, end) = match measured {
        Ok(snapshots) => snapshots,
        Err(message) => return Err(threads.abort(message)),
    };
    let results = threads.join(plan.drain * 2 + Duration::from_secs(5))?;

    let sent: Vec<u64> = shared.final_sent.iter().map(|s| s.load(Relaxed)).collect();
    let mut tally = Tally::default();
    let mut latency = Histogram::default();
    let (mut foreign, mut first_drop) = (0, None);
    for r in &results {
        latency.merge(&r.latency);
        foreign += r.foreign;
        first_drop = first_drop.or(r.first_drop.clone());
        for trackers in &r.receivers {
            tally.add_receiver(trackers, &sent);
        }
    }
    let interval = Interval::between(&start, &end);
    let mut report = Report::of_messages(plan, shared.driver(), "deliveries", &interval, &latency);
    report.publishers = Some(plan.publishers);
    report.window = Some(plan.window);
    report.delivery = Some(tally);
    report.foreign = Some(foreign);
    report.record_drops(shared.totals().dropped, first_drop);
    if !tally.is_clean() {
        report.problems.push(format!(
            "not exactly once: {} of {} deliveries lost, {} duplicates, {} of messages never sent",
            tally.lost, tally.expected, tally.duplicates, tally.phantom
        ));
    }
    if foreign > 0 {
        report.problems.push(format!(
            "{foreign} payloads that the load tool did not send"
        ));
    }
    if interval.received == 0 {
        report
            .problems
            .push("no delivery in the measured interval".into());
    }
    Ok(report)
}

async fn thread_main(ctx: ThreadCtx) -> Result<BroadcastThread, RunError> {
    let opened: Rc<RefCell<Vec<(usize, WsStream)>>> = Rc::default();
    let sink = opened.clone();
    open_connections(&ctx, true, move |index, stream, _| {
        sink.borrow_mut().push((index, stream))
    })
    .await?;
    ctx.report_ready();
    ctx.wait_until(|s| s.stage() >= Stage::Syncing).await?;

    let plan = ctx.plan();
    let latency = Rc::new(RefCell::new(Histogram::default()));
    let mut conns = Vec::new();
    for (index, stream) in opened.take() {
        let (reader, outbox, writer) = stream.split(plan.max_message, index as u64 + 1);
        let conn = Rc::new(RefCell::new(BroadcastConn {
            outbox,
            trackers: vec![SeqTracker::default(); plan.publishers],
            publisher: (index < plan.publishers).then_some(Publisher {
                id: index as u32,
                next_seq: 0,
                unacked: 0,
            }),
            synced: false,
            foreign: 0,
            ended: None,
        }));
        monoio::spawn(writer.run());
        monoio::spawn(receive(ctx.clone(), reader, conn.clone(), latency.clone()));
        conns.push((index, conn));
    }
    // Global connection 0 (on thread 0, wherever it landed in the list) sends the probes.
    if let Some((_, conn)) = conns.iter().find(|(index, _)| *index == 0) {
        let outbox = conn.borrow().outbox.clone();
        let mut probe = 0;
        while ctx.stage() == Stage::Syncing {
            outbox.push_with(opcode(&ctx), plan.size, |out| {
                let stamp = Stamp {
                    kind: Kind::Sync,
                    publisher: 0,
                    seq: probe,
                    sent_ns: ctx.now_ns(),
                };
                fill_broadcast(out, stamp);
            });
            probe += 1;
            monoio::time::sleep(PROBE_EVERY).await;
        }
    }
    ctx.wait_until(|s| s.stage() >= Stage::Running).await?;
    for (_, conn) in &conns {
        top_up(&ctx, &mut conn.borrow_mut());
    }
    ctx.wait_until(|s| s.stage() >= Stage::Draining).await?;
    drain(&ctx, &conns).await;

    let mut result = BroadcastThread {
        latency: latency.take(),
        receivers: Vec::with_capacity(conns.len()),
        foreign: 0,
        first_drop: None,
    };
    for (_, conn) in conns {
        let conn = conn.borrow();
        result.receivers.push(conn.trackers.clone());
        result.foreign += conn.foreign;
        if result.first_drop.is_none() {
            result.first_drop.clone_from(&conn.ended);
        }
    }
    Ok(result)
}

fn opcode(ctx: &ThreadCtx) -> Opcode {
    if ctx.plan().binary {
        Opcode::Binary
    } else {
        Opcode::Text
    }
}

/// Publishes until the connection's window is full, while the run is on.
fn top_up(ctx: &ThreadCtx, conn: &mut BroadcastConn) {
    let Some(publisher) = conn.publisher.as_mut() else {
        return;
    };
    if conn.ended.is_some() {
        return;
    }
    let plan = ctx.plan();
    while publisher.unacked < plan.window && ctx.stage() == Stage::Running {
        let stamp = Stamp {
            kind: Kind::Data,
            publisher: publisher.id,
            seq: publisher.next_seq,
            sent_ns: ctx.now_ns(),
        };
        conn.outbox
            .push_with(opcode(ctx), plan.size, |out| fill_broadcast(out, stamp));
        publisher.next_seq += 1;
        publisher.unacked += 1;
        ctx.shared.final_sent[publisher.id as usize].store(publisher.next_seq, Relaxed);
        bump(&ctx.counters().sent, 1);
    }
}

/// After the run: waits (each step at most `--drain`) for this thread's publishers to
/// get their own last messages back, then for every publisher's messages to reach
/// every connection here. What is still missing after that is loss.
async fn drain(ctx: &ThreadCtx, conns: &[(usize, Rc<RefCell<BroadcastConn>>)]) {
    let shared = &ctx.shared;
    let deadline = Instant::now() + ctx.plan().drain;
    let windows_empty = || {
        conns.iter().all(|(_, c)| {
            let c = c.borrow();
            c.ended.is_some() || c.publisher.as_ref().is_none_or(|p| p.unacked == 0)
        })
    };
    ctx.wait_until_deadline(deadline, windows_empty).await;
    let mine = conns
        .iter()
        .filter(|(_, c)| c.borrow().publisher.is_some())
        .count();
    // Release: a thread that sees the count also sees our final `final_sent` values.
    shared
        .publishers_done
        .fetch_add(mine, std::sync::atomic::Ordering::Release);

    let deadline = Instant::now() + ctx.plan().drain;
    let all_arrived = || {
        if shared
            .publishers_done
            .load(std::sync::atomic::Ordering::Acquire)
            < shared.plan.publishers
        {
            return false;
        }
        conns.iter().all(|(_, c)| {
            let c = c.borrow();
            c.ended.is_some()
                || c.trackers
                    .iter()
                    .zip(shared.final_sent.iter())
                    .all(|(t, sent)| t.has_all(sent.load(Relaxed)))
        })
    };
    ctx.wait_until_deadline(deadline, all_arrived).await;
}

/// The reader task of one connection: accounts for every message, acknowledges its own.
async fn receive(
    ctx: ThreadCtx,
    mut reader: FrameReader,
    conn: Rc<RefCell<BroadcastConn>>,
    latency: Rc<RefCell<Histogram>>,
) {
    let publishers = ctx.plan().publishers;
    loop {
        let payload = match reader.next().await {
            Ok(Incoming::Text(payload) | Incoming::Binary(payload)) => payload,
            Ok(Incoming::Ping(payload)) => {
                conn.borrow().outbox.push(Opcode::Pong, &payload);
                continue;
            }
            Ok(_) => continue,
            Err(err) => {
                let mut conn = conn.borrow_mut();
                conn.ended = Some(err.to_string());
                conn.outbox.close();
                bump(&ctx.counters().dropped, 1);
                return;
            }
        };
        let now = ctx.ns_at(reader.read_at());
        let mut conn = conn.borrow_mut();
        let stamp = match parse_broadcast(&payload) {
            Some(stamp) if (stamp.publisher as usize) < publishers => stamp,
            _ => {
                conn.foreign += 1;
                continue;
            }
        };
        if stamp.kind == Kind::Sync {
            if !conn.synced {
                conn.synced = true;
                ctx.shared.synced.fetch_add(1, Relaxed);
            }
            continue;
        }
        let arrival = conn.trackers[stamp.publisher as usize].receive(stamp.seq);
        if arrival == Arrival::Duplicate {
            continue;
        }
        if ctx.stage() == Stage::Running {
            latency
                .borrow_mut()
                .record(now.saturating_sub(stamp.sent_ns));
            bump(&ctx.counters().received, 1);
        }
        let own = conn
            .publisher
            .as_ref()
            .is_some_and(|p| p.id == stamp.publisher);
        if own {
            if let Some(publisher) = conn.publisher.as_mut() {
                publisher.unacked = publisher.unacked.saturating_sub(1);
            }
            top_up(&ctx, &mut conn);
        }
    }
}
