//! The connect scenario: opens `--connections` idle WebSocket connections as fast as
//! `--concurrency` allows, spread over `--sources` source addresses, reports the
//! connect rate and upgrade latency, then holds them for `--hold` seconds and, given
//! `--server-pid`, reports how much the server's resident memory grew per connection.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::client::{FrameReader, SendQueue};
use super::driver::{self, bump, Interval, Shared, Stage, ThreadCtx};
use super::error::RunError;
use super::histogram::Histogram;
use super::measure::process_rss;
use super::open::{open_connections, OpenOutcome};
use super::progress::Progress;
use super::report::Report;
use crate::ws::{Incoming, Opcode};

/// What one load thread hands back.
pub struct ConnectThread {
    latency: Histogram,
    outcome: OpenOutcome,
    first_drop: Option<String>,
}

/// Runs the scenario from the main thread.
pub fn run(shared: Arc<Shared>) -> Result<Report, RunError> {
    let plan = &shared.plan;
    let rss = || {
        plan.server_pid
            .map(process_rss)
            .transpose()
            .map_err(RunError::from)
    };
    let rss_before = rss()?;
    let threads = driver::spawn(&shared, thread_main)?;
    let mut progress = Progress::new(plan.progress);
    let measured = (|| {
        let start = shared.snapshot()?;
        shared.set_stage(Stage::Running);
        threads.wait_opened(&mut progress)?;
        let opened = shared.snapshot()?;
        threads.run_for(plan.hold, &mut progress, "holding", "connections")?;
        let rss_after = rss()?;
        let dropped = shared.totals().dropped;
        shared.set_stage(Stage::Draining);
        Ok::<_, RunError>((start, opened, rss_after, dropped))
    })();
    let (start, opened, rss_after, dropped) = match measured {
        Ok(measured) => measured,
        Err(message) => return Err(threads.abort(message)),
    };
    let results = threads.join(Duration::from_secs(5))?;

    let mut latency = Histogram::default();
    let mut failures: Vec<(String, u64)> = Vec::new();
    let (mut first_failure, mut first_drop) = (None, None);
    for r in results {
        latency.merge(&r.latency);
        for (kind, n) in r.outcome.failures {
            match failures.iter_mut().find(|(k, _)| k == kind) {
                Some((_, total)) => *total += n,
                None => failures.push((kind.to_string(), n)),
            }
        }
        first_failure = first_failure.or(r.outcome.first_failure);
        first_drop = first_drop.or(r.first_drop);
    }
    let interval = Interval::between(&start, &opened);
    if interval.received == 0 {
        return Err(RunError::NoConnection { first_failure });
    }
    let mut report = Report::new(plan, shared.driver(), "connections", &interval);
    report.latency = latency.percentiles();
    report.dropped = dropped;
    let held = interval.received - dropped.min(interval.received);
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        report.server_rss_before = Some(before);
        report.server_rss_after = Some(after);
        report.server_rss_per_connection =
            (held > 0).then(|| (after as f64 - before as f64) / held as f64);
    }
    let failed: u64 = failures.iter().map(|(_, n)| n).sum();
    if failed > 0 {
        let first = first_failure.clone().unwrap_or_default();
        report.problems.push(format!(
            "{failed} connection(s) failed to open (first: {first})"
        ));
    }
    if dropped > 0 {
        let first = first_drop.unwrap_or_default();
        report.problems.push(format!(
            "{dropped} connection(s) dropped while held (first: {first})"
        ));
    }
    report.connect_failures = Some(failures);
    report.first_failure = first_failure;
    Ok(report)
}

async fn thread_main(ctx: ThreadCtx) -> Result<ConnectThread, RunError> {
    ctx.wait_until(|s| s.stage() >= Stage::Running).await?;
    let latency = Rc::new(RefCell::new(Histogram::default()));
    let first_drop: Rc<RefCell<Option<String>>> = Rc::default();
    let opened = {
        let (ctx, latency, first_drop) = (ctx.clone(), latency.clone(), first_drop.clone());
        move |index: usize, stream: super::client::WsStream, took: Duration| {
            latency.borrow_mut().record(took.as_nanos() as u64);
            bump(&ctx.counters().received, 1);
            let (reader, outbox, writer) = stream.split(ctx.plan().max_message, index as u64 + 1);
            monoio::spawn(writer.run());
            monoio::spawn(hold(ctx.clone(), reader, outbox, first_drop.clone()));
        }
    };
    let outcome = open_connections(&ctx, false, opened).await?;
    ctx.report_ready();
    ctx.wait_until(|s| s.stage() >= Stage::Draining).await?;
    let first_drop = first_drop.take();
    Ok(ConnectThread {
        latency: latency.take(),
        outcome,
        first_drop,
    })
}

/// Keeps an idle connection: answers pings, notices when the server drops it.
async fn hold(
    ctx: ThreadCtx,
    mut reader: FrameReader,
    outbox: Rc<SendQueue>,
    first_drop: Rc<RefCell<Option<String>>>,
) {
    loop {
        match reader.next().await {
            Ok(Incoming::Ping(payload)) => outbox.push(Opcode::Pong, &payload),
            Ok(_) => {}
            Err(err) => {
                first_drop.borrow_mut().get_or_insert(err.to_string());
                bump(&ctx.counters().dropped, 1);
                outbox.close();
                return;
            }
        }
    }
}
