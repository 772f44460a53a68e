//! Opening a load thread's share of the connections, `--concurrency` at a time, each
//! bounded by `--connect-timeout`; what to do with an open connection is the caller's.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::args::Plan;
use super::client::{self, WsStream};
use super::driver::{bump, Aborted, Stage, ThreadCtx};
use super::error::RunError;

/// What opening this thread's connections came to.
#[derive(Debug, Default)]
pub struct OpenOutcome {
    /// Failures by kind.
    pub failures: Vec<(&'static str, u64)>,
    pub first_failure: Option<String>,
}

impl OpenOutcome {
    fn record(&mut self, kind: &'static str, message: String) {
        match self.failures.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.failures.push((kind, 1)),
        }
        self.first_failure.get_or_insert(message);
    }
}

/// Opens this thread's connections, `--concurrency` at a time, calling `opened` for
/// each with its global index and how long it took. With `fail_fast`, the first
/// failure aborts the whole run; otherwise failures are counted and the rest go on.
pub async fn open_connections(
    ctx: &ThreadCtx,
    fail_fast: bool,
    opened: impl Fn(usize, WsStream, Duration) + 'static,
) -> Result<OpenOutcome, Aborted> {
    open_connections_of(ctx, ctx.my_connections().collect(), fail_fast, opened).await
}

/// [`open_connections`] for a given list of global indices (a scenario that decides
/// itself which thread owns which connection).
pub async fn open_connections_of(
    ctx: &ThreadCtx,
    indices: Vec<usize>,
    fail_fast: bool,
    opened: impl Fn(usize, WsStream, Duration) + 'static,
) -> Result<OpenOutcome, Aborted> {
    let queue: Rc<RefCell<VecDeque<usize>>> = Rc::new(RefCell::new(indices.into()));
    let outcome = Rc::new(RefCell::new(OpenOutcome::default()));
    let opened = Rc::new(opened);
    let workers: Vec<_> = (0..ctx.plan().concurrency)
        .map(|_| {
            let (ctx, queue, outcome, opened) =
                (ctx.clone(), queue.clone(), outcome.clone(), opened.clone());
            monoio::spawn(async move {
                loop {
                    let Some(index) = queue.borrow_mut().pop_front() else {
                        return;
                    };
                    if ctx.stage() == Stage::Aborted {
                        return;
                    }
                    let plan = ctx.plan();
                    let started = Instant::now();
                    let nonce = nonce_for(index);
                    match client::connect(
                        plan.target_for(index),
                        plan.source_for(index),
                        nonce,
                        plan.connect_timeout,
                    )
                    .await
                    {
                        Ok(stream) => {
                            bump(&ctx.counters().opened, 1);
                            opened(index, stream, started.elapsed());
                        }
                        Err(err) if fail_fast => {
                            ctx.shared.fail(RunError::Connection { index, source: err });
                            return;
                        }
                        Err(err) => outcome
                            .borrow_mut()
                            .record(err.kind(), format!("connection {index}: {err}")),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await;
    }
    if ctx.stage() == Stage::Aborted {
        return Err(Aborted);
    }
    Ok(Rc::try_unwrap(outcome)
        .map(|c| c.into_inner())
        .unwrap_or_default())
}

/// How long opening every connection may take: each attempt is bounded by
/// `--connect-timeout`, and a thread makes `--concurrency` at a time.
pub fn open_limit(plan: &Plan) -> Duration {
    let per_thread = plan.connections.div_ceil(plan.threads.len());
    let rounds = per_thread.div_ceil(plan.concurrency) as u32;
    plan.connect_timeout * (rounds + 1) + Duration::from_secs(1)
}

/// Sec-WebSocket-Key bytes for connection `index` (splitmix64): distinct per connection.
pub fn nonce_for(index: usize) -> [u8; 16] {
    let mut x = index as u64 ^ 0x5EED_0FC0_FFEE;
    let mut next = || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&next().to_le_bytes());
    out[8..].copy_from_slice(&next().to_le_bytes());
    out
}
