//! The echo scenario: every connection keeps `--in-flight` messages of `--size` bytes
//! outstanding and sends a new one as each comes back, checking that each reply is the
//! message it answers (echoes come back in order) and timing the round trip.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{FrameReader, SendQueue, WsStream};
use super::driver::{self, bump, Interval, Shared, Stage, ThreadCtx};
use super::error::RunError;
use super::histogram::Histogram;
use super::open::open_connections;
use super::payload::{echo_matches, fill_echo};
use super::progress::Progress;
use super::report::Report;
use crate::ws::{Incoming, Opcode};

/// One connection's bookkeeping, shared between its reader task and its thread.
#[derive(Default)]
struct EchoConn {
    /// Sequence number and send time of every message not yet echoed, oldest first.
    in_flight: VecDeque<(u64, u64)>,
    next_seq: u64,
    mismatched: u64,
    /// Why the connection ended before the run did.
    ended: Option<String>,
}

/// What one load thread hands back.
pub struct EchoThread {
    latency: Histogram,
    mismatched: u64,
    unanswered: u64,
    first_drop: Option<String>,
}

/// Runs the scenario from the main thread.
pub fn run(shared: Arc<Shared>) -> Result<Report, RunError> {
    let plan = &shared.plan;
    let threads = driver::spawn(&shared, thread_main)?;
    let mut progress = Progress::new(plan.progress);
    let measured = (|| {
        threads.wait_opened(&mut progress)?;
        threads.measure(&mut progress, "echo", "round trips")
    })();
    let (start, end) = match measured {
        Ok(snapshots) => snapshots,
        Err(message) => return Err(threads.abort(message)),
    };
    let results = threads.join(plan.drain + Duration::from_secs(5))?;

    let interval = Interval::between(&start, &end);
    let mut latency = Histogram::default();
    let (mut mismatched, mut unanswered, mut first_drop) = (0, 0, None);
    for r in &results {
        latency.merge(&r.latency);
        mismatched += r.mismatched;
        unanswered += r.unanswered;
        first_drop = first_drop.or(r.first_drop.clone());
    }
    let mut report = Report::of_messages(plan, shared.driver(), "round trips", &interval, &latency);
    report.in_flight = Some(plan.in_flight);
    report.mismatched = Some(mismatched);
    report.unanswered = Some(unanswered);
    report.record_drops(shared.totals().dropped, first_drop);
    if mismatched > 0 {
        report.problems.push(format!(
            "{mismatched} echo(es) did not match the message sent"
        ));
    }
    if unanswered > 0 {
        report.problems.push(format!(
            "{unanswered} message(s) never echoed within --drain"
        ));
    }
    if interval.received == 0 {
        report.problems.push("no round trip completed".into());
    }
    Ok(report)
}

async fn thread_main(ctx: ThreadCtx) -> Result<EchoThread, RunError> {
    let opened: Rc<RefCell<Vec<(usize, WsStream)>>> = Rc::default();
    let sink = opened.clone();
    open_connections(&ctx, true, move |index, stream, _| {
        sink.borrow_mut().push((index, stream))
    })
    .await?;
    ctx.report_ready();
    ctx.wait_until(|s| s.stage() >= Stage::Running).await?;

    let latency = Rc::new(RefCell::new(Histogram::default()));
    let mut conns = Vec::new();
    for (index, stream) in opened.take() {
        let (reader, outbox, writer) = stream.split(ctx.plan().max_message, index as u64 + 1);
        let conn = Rc::new(RefCell::new(EchoConn::default()));
        // A failed write needs no handling here: the reader sees the broken connection.
        monoio::spawn(writer.run());
        monoio::spawn(echo_connection(
            ctx.clone(),
            reader,
            outbox,
            conn.clone(),
            latency.clone(),
        ));
        conns.push(conn);
    }
    ctx.wait_until(|s| s.stage() >= Stage::Draining).await?;
    let deadline = Instant::now() + ctx.plan().drain;
    let settled = || {
        conns.iter().all(|c| {
            let c = c.borrow();
            c.ended.is_some() || c.in_flight.is_empty()
        })
    };
    ctx.wait_until_deadline(deadline, settled).await;

    let mut result = EchoThread {
        latency: latency.take(),
        mismatched: 0,
        unanswered: 0,
        first_drop: None,
    };
    for conn in &conns {
        let conn = conn.borrow();
        result.mismatched += conn.mismatched;
        if conn.ended.is_none() {
            result.unanswered += conn.in_flight.len() as u64;
        }
        if result.first_drop.is_none() {
            result.first_drop.clone_from(&conn.ended);
        }
    }
    Ok(result)
}

/// The reader task of one connection; it also sends, in answer to what it reads.
async fn echo_connection(
    ctx: ThreadCtx,
    mut reader: FrameReader,
    outbox: Rc<SendQueue>,
    conn: Rc<RefCell<EchoConn>>,
    latency: Rc<RefCell<Histogram>>,
) {
    let plan = ctx.plan();
    let opcode = if plan.binary {
        Opcode::Binary
    } else {
        Opcode::Text
    };
    let send = |conn: &mut EchoConn| {
        let seq = conn.next_seq;
        conn.next_seq += 1;
        outbox.push_with(opcode, plan.size, |out| fill_echo(out, seq));
        conn.in_flight.push_back((seq, ctx.now_ns()));
        bump(&ctx.counters().sent, 1);
    };
    for _ in 0..plan.in_flight {
        send(&mut conn.borrow_mut());
    }
    loop {
        match reader.next().await {
            Ok(Incoming::Text(payload) | Incoming::Binary(payload)) => {
                let now = ctx.ns_at(reader.read_at());
                let mut conn = conn.borrow_mut();
                let Some((seq, sent_at)) = conn.in_flight.pop_front() else {
                    conn.mismatched += 1;
                    continue;
                };
                if !echo_matches(&payload, seq, plan.size) {
                    conn.mismatched += 1;
                }
                if ctx.stage() == Stage::Running {
                    latency.borrow_mut().record(now.saturating_sub(sent_at));
                    bump(&ctx.counters().received, 1);
                    send(&mut conn);
                }
            }
            Ok(Incoming::Ping(payload)) => outbox.push(Opcode::Pong, &payload),
            Ok(_) => {}
            Err(err) => {
                conn.borrow_mut().ended = Some(err.to_string());
                bump(&ctx.counters().dropped, 1);
                outbox.close();
                return;
            }
        }
    }
}
