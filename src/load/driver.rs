//! Load threads and how the main thread steers them: one pinned monoio runtime per
//! `--cpus` entry, a shared stage (connect, sync, run, drain) the threads poll, per-thread
//! counters the main thread samples, and waits that are always bounded. Scenario
//! logic lives in the scenario files; this file only starts, steers and stops.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::args::Plan;
use super::error::RunError;
use super::progress::{Progress, Totals};
use super::{measure, sys};

/// Where the run is. Threads only ever see it move forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stage {
    /// Opening connections; nothing is sent.
    Connecting = 0,
    /// Broadcast: probing until every connection hears the relay. Rooms: joining
    /// until every room is full.
    Syncing = 1,
    /// The measured interval: send and count.
    Running = 2,
    /// No new sends; wait for what is in flight.
    Draining = 3,
    /// Something failed: every thread stops.
    Aborted = 4,
}

/// One thread's counters. Each field has a single writer (its thread), so updates are
/// a relaxed load and store; the main thread only reads. Padded against false sharing.
#[derive(Default)]
#[repr(align(128))]
pub struct Counters {
    /// Messages sent in the measured interval.
    pub sent: AtomicU64,
    /// What the scenario counts: round trips, deliveries, connections opened.
    pub received: AtomicU64,
    /// Connections the server closed or broke.
    pub dropped: AtomicU64,
    /// Connections opened (upgraded).
    pub opened: AtomicU64,
}

/// Adds to a single-writer counter.
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed) + n, Relaxed);
}

/// State every load thread and the main thread share.
pub struct Shared {
    pub plan: Plan,
    /// Zero point of the timestamps carried in messages: all threads read one clock.
    pub epoch: Instant,
    stage: AtomicU8,
    ready: AtomicUsize,
    failure: Mutex<Option<RunError>>,
    counters: Box<[Counters]>,
    /// Broadcast: connections that have heard a sync probe. Rooms: members that have
    /// seen their room full.
    pub synced: AtomicUsize,
    /// Rooms: connections that got their `welcome`.
    pub welcomed: AtomicUsize,
    /// Rooms: connections that got `room_joined`.
    pub joined: AtomicUsize,
    /// Broadcast: publishers whose window has emptied after the run.
    pub publishers_done: AtomicUsize,
    /// Broadcast: messages each publisher sent, final once the threads are joined.
    pub final_sent: Box<[AtomicU64]>,
    /// Threads that got io_uring (the rest fell back to epoll).
    uring_threads: AtomicUsize,
}

impl Shared {
    pub fn new(plan: Plan) -> Arc<Shared> {
        let threads = plan.threads.len();
        let publishers = plan.publishers;
        Arc::new(Shared {
            plan,
            epoch: Instant::now(),
            stage: AtomicU8::new(Stage::Connecting as u8),
            ready: AtomicUsize::new(0),
            failure: Mutex::new(None),
            counters: (0..threads).map(|_| Counters::default()).collect(),
            synced: AtomicUsize::new(0),
            welcomed: AtomicUsize::new(0),
            joined: AtomicUsize::new(0),
            publishers_done: AtomicUsize::new(0),
            final_sent: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            uring_threads: AtomicUsize::new(0),
        })
    }

    pub fn stage(&self) -> Stage {
        match self.stage.load(Relaxed) {
            0 => Stage::Connecting,
            1 => Stage::Syncing,
            2 => Stage::Running,
            3 => Stage::Draining,
            _ => Stage::Aborted,
        }
    }

    /// Moves to `stage` unless the run has already aborted.
    pub fn set_stage(&self, stage: Stage) {
        let _ = self.stage.fetch_update(Relaxed, Relaxed, |now| {
            (now != Stage::Aborted as u8).then_some(stage as u8)
        });
    }

    /// Records the first failure and stops every thread.
    pub fn fail(&self, error: RunError) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(error);
        self.stage.store(Stage::Aborted as u8, Relaxed);
    }

    /// The first failure recorded (taken: later callers get `Aborted`).
    fn failure(&self) -> RunError {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.take().unwrap_or(RunError::Aborted)
    }

    pub fn ready_threads(&self) -> usize {
        self.ready.load(Relaxed)
    }

    pub fn threads(&self) -> usize {
        self.counters.len()
    }

    /// Which I/O driver the load threads run on.
    pub fn driver(&self) -> &'static str {
        match self.uring_threads.load(Relaxed) {
            0 => "epoll",
            n if n == self.threads() => "io_uring",
            _ => "mixed",
        }
    }

    /// Sums of all threads' counters.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for c in self.counters.iter() {
            t.sent += c.sent.load(Relaxed);
            t.received += c.received.load(Relaxed);
            t.dropped += c.dropped.load(Relaxed);
            t.opened += c.opened.load(Relaxed);
        }
        t
    }

    /// Reads the clocks and counters at one instant of the main thread.
    pub fn snapshot(&self) -> Result<Snapshot, RunError> {
        let server_cpu = match self.plan.server_pid {
            Some(pid) => Some(measure::process_cpu_time(pid)?),
            None => None,
        };
        Ok(Snapshot {
            at: Instant::now(),
            own_cpu: sys::own_cpu_time(),
            server_cpu,
            totals: self.totals(),
        })
    }
}

/// Clocks and counters at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    pub at: Instant,
    pub own_cpu: Duration,
    pub server_cpu: Option<Duration>,
    pub totals: Totals,
}

/// What changed between two snapshots.
#[derive(Clone, Copy, Debug)]
pub struct Interval {
    pub secs: f64,
    pub own_cpu_s: f64,
    pub server_cpu_s: Option<f64>,
    pub sent: u64,
    pub received: u64,
}

impl Interval {
    pub fn between(start: &Snapshot, end: &Snapshot) -> Interval {
        Interval {
            secs: end.at.duration_since(start.at).as_secs_f64(),
            own_cpu_s: end.own_cpu.saturating_sub(start.own_cpu).as_secs_f64(),
            server_cpu_s: match (start.server_cpu, end.server_cpu) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
                _ => None,
            },
            sent: end.totals.sent - start.totals.sent,
            received: end.totals.received - start.totals.received,
        }
    }
}

/// A load thread's handle on the shared state.
#[derive(Clone)]
pub struct ThreadCtx {
    pub shared: Arc<Shared>,
    pub index: usize,
}

/// The run was aborted (the reason is in [`Shared`]).
#[derive(Debug)]
pub struct Aborted;

impl From<Aborted> for RunError {
    fn from(_: Aborted) -> RunError {
        RunError::Aborted
    }
}

impl ThreadCtx {
    pub fn plan(&self) -> &Plan {
        &self.shared.plan
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters[self.index]
    }

    pub fn stage(&self) -> Stage {
        self.shared.stage()
    }

    /// Nanoseconds since the shared epoch.
    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// Nanoseconds from the shared epoch to `at`: a receive's time is its read's
    /// completion ([`FrameReader::read_at`](super::client::FrameReader::read_at)), one
    /// clock read for every message that read brought (a clock read per message was
    /// 12% of the load tool's CPU in `broadcast`).
    pub fn ns_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.shared.epoch).as_nanos() as u64
    }

    /// Global indices of the connections this thread owns.
    pub fn my_connections(&self) -> impl Iterator<Item = usize> {
        (self.index..self.plan().connections).step_by(self.shared.threads())
    }

    pub fn report_ready(&self) {
        self.shared.ready.fetch_add(1, Relaxed);
    }

    /// Polls until `done` holds; `Err` once the run is aborted.
    pub async fn wait_until(&self, done: impl Fn(&Shared) -> bool) -> Result<(), Aborted> {
        loop {
            if self.stage() == Stage::Aborted {
                return Err(Aborted);
            }
            if done(&self.shared) {
                return Ok(());
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Polls until `done` holds or `deadline` passes; returns whether it held.
    pub async fn wait_until_deadline(&self, deadline: Instant, done: impl Fn() -> bool) -> bool {
        loop {
            if done() {
                return true;
            }
            if Instant::now() >= deadline || self.stage() == Stage::Aborted {
                return false;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The running load threads, seen from the main thread.
pub struct Threads<T> {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<Option<T>>>,
}

/// Starts one thread per `plan.threads` entry: pinned, with its own monoio runtime,
/// running `thread_main`. A thread that fails records why and aborts the run.
pub fn spawn<T, F, Fut>(shared: &Arc<Shared>, thread_main: F) -> Result<Threads<T>, RunError>
where
    T: Send + 'static,
    F: Fn(ThreadCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, RunError>> + 'static,
{
    let thread_main = Arc::new(thread_main);
    let mut handles = Vec::new();
    for (index, cpu) in shared.plan.threads.iter().copied().enumerate() {
        let ctx = ThreadCtx {
            shared: shared.clone(),
            index,
        };
        let thread_main = thread_main.clone();
        let handle = std::thread::Builder::new()
            .name(format!("load-{index}"))
            .spawn(move || run_thread(ctx, cpu, &*thread_main))
            .map_err(RunError::Spawn)?;
        handles.push(handle);
    }
    Ok(Threads {
        shared: shared.clone(),
        handles,
    })
}

fn run_thread<T, F, Fut>(ctx: ThreadCtx, cpu: Option<usize>, thread_main: &F) -> Option<T>
where
    F: Fn(ThreadCtx) -> Fut,
    Fut: Future<Output = Result<T, RunError>>,
{
    if let Some(cpu) = cpu {
        if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
            ctx.shared.fail(RunError::Pin {
                cpu,
                source: e.into(),
            });
            return None;
        }
    }
    let mut runtime = match build_runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            ctx.shared.fail(RunError::Runtime(e));
            return None;
        }
    };
    if matches!(runtime, monoio::FusionRuntime::Uring(_)) {
        ctx.shared.uring_threads.fetch_add(1, Relaxed);
    }
    let shared = ctx.shared.clone();
    match runtime.block_on(thread_main(ctx)) {
        Ok(result) => Some(result),
        Err(error) => {
            shared.fail(error);
            None
        }
    }
}

/// A load thread's runtime: io_uring with deferred task-run (completions are reaped
/// when the thread asks for them instead of interrupting it: in the rooms scenario
/// this took the tool from 1.6-2.5 to 3.0-3.2 million deliveries/s on one CPU), else
/// plain io_uring (kernels before 6.1, or `RINGCAST_LOAD_URING_MODE=plain`), else epoll.
fn build_runtime() -> std::io::Result<
    monoio::FusionRuntime<
        monoio::time::TimeDriver<monoio::IoUringDriver>,
        monoio::time::TimeDriver<monoio::LegacyDriver>,
    >,
> {
    let plain = || {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .with_entries(4096)
            .enable_timer()
            .build()
    };
    if std::env::var("RINGCAST_LOAD_URING_MODE").as_deref() == Ok("plain") {
        return plain();
    }
    let mut ring = io_uring::IoUring::builder();
    ring.setup_defer_taskrun().setup_single_issuer();
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(4096)
        .enable_timer()
        .uring_builder(ring)
        .build()
        .or_else(|_| plain())
}

impl<T> Threads<T> {
    /// Polls `done` for up to `limit`, ticking `progress`: `Ok(true)` when it held,
    /// `Ok(false)` at the limit, `Err` with the run's failure if it aborted.
    fn poll(
        &self,
        limit: Duration,
        done: impl Fn(&Shared) -> bool,
        progress: &mut Progress,
        label: &str,
        unit: Option<&str>,
    ) -> Result<bool, RunError> {
        let started = Instant::now();
        loop {
            if self.shared.stage() == Stage::Aborted {
                return Err(self.shared.failure());
            }
            if done(&self.shared) {
                return Ok(true);
            }
            if started.elapsed() >= limit {
                return Ok(false);
            }
            progress.tick(self.shared.totals(), label, unit, started);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits up to `limit` for `done`. Fails with the run's failure if it aborts, or
    /// with `timeout_message` (and aborts the run) at the limit.
    pub fn wait(
        &self,
        limit: Duration,
        done: impl Fn(&Shared) -> bool,
        timed_out: impl Fn(&Shared) -> RunError,
        progress: &mut Progress,
        label: &str,
    ) -> Result<(), RunError> {
        let held = self.poll(limit, done, progress, label, None);
        progress.finish();
        if held? {
            return Ok(());
        }
        // One error for the run's record (which stops every thread), one to return.
        self.shared.fail(timed_out(&self.shared));
        Err(timed_out(&self.shared))
    }

    /// Sleeps through the measured interval, ticking `progress`; returns early if
    /// every connection has dropped, fails if the run aborts.
    pub fn run_for(
        &self,
        length: Duration,
        progress: &mut Progress,
        label: &str,
        unit: &str,
    ) -> Result<(), RunError> {
        let connections = self.shared.plan.connections as u64;
        let all_dropped = |shared: &Shared| shared.totals().dropped >= connections;
        let result = self.poll(length, all_dropped, progress, label, Some(unit));
        progress.finish();
        result.map(|_| ())
    }

    /// Waits until every thread has opened its connections, within `open_limit`.
    pub fn wait_opened(&self, progress: &mut Progress) -> Result<(), RunError> {
        let plan = &self.shared.plan;
        self.wait(
            super::open::open_limit(plan),
            |s| s.ready_threads() == s.threads(),
            |s| RunError::NotOpened {
                opened: s.totals().opened,
                wanted: s.plan.connections,
            },
            progress,
            "connecting",
        )
    }

    /// The measured interval: a snapshot, `Running` for `plan.duration`, a second
    /// snapshot, then `Draining`. Returns the two snapshots.
    pub fn measure(
        &self,
        progress: &mut Progress,
        label: &str,
        unit: &str,
    ) -> Result<(Snapshot, Snapshot), RunError> {
        let start = self.shared.snapshot()?;
        self.shared.set_stage(Stage::Running);
        self.run_for(self.shared.plan.duration, progress, label, unit)?;
        let end = self.shared.snapshot()?;
        self.shared.set_stage(Stage::Draining);
        Ok((start, end))
    }

    /// Waits up to `limit` for every thread to finish and returns their results.
    pub fn join(self, limit: Duration) -> Result<Vec<T>, RunError> {
        let deadline = Instant::now() + limit;
        while self.handles.iter().any(|h| !h.is_finished()) {
            if Instant::now() >= deadline {
                self.shared.fail(RunError::NotStopped(limit));
                return Err(RunError::NotStopped(limit));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut results = Vec::new();
        for handle in self.handles {
            match handle.join() {
                Ok(Some(result)) => results.push(result),
                Ok(None) => return Err(self.shared.failure()),
                Err(_) => return Err(RunError::Panicked),
            }
        }
        if self.shared.stage() == Stage::Aborted {
            return Err(self.shared.failure());
        }
        Ok(results)
    }

    /// Aborts the run and gives the threads a moment to close their sockets.
    pub fn abort(self, error: RunError) -> RunError {
        self.shared.fail(RunError::Aborted);
        let _ = self.join(Duration::from_secs(2));
        error
    }
}
