//! The engine: one thread per configured CPU, each pinned and running its own monoio
//! runtime (io_uring, or epoll where io_uring is unavailable), its own SO_REUSEPORT
//! listener and its own table of connections (`conn::CoreCtx`). A connection has a task
//! only during its handshake (`upgrade.rs`); once upgraded, the core's poller
//! (`poller.rs`, one epoll instance waited on through the runtime) reports its socket
//! ready, the core's reader (`reader.rs`: frames, app calls, cleanup) reads it into one
//! buffer per core, and the core's flush task writes its frames (`writer.rs`). Cores
//! share only the hub of inboxes, the shutdown signal and the connection counts
//! (`admission.rs`: `max_conns_per_ip`, `max_connections`).
//! Start it with [`start`]; the app is built once per core.

mod admission;
mod core;
mod listener;
mod poller;
mod reader;
mod shutdown;
mod upgrade;
mod writer;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use monoio::time::TimeDriver;
use monoio::{FusionDriver, FusionRuntime, RuntimeBuilder};

pub(crate) use self::core::Core;
pub use crate::conn::CoreCtx;
pub use crate::stats::{ClusterStats, CoreStats, Stats};
pub use listener::ListenError;

use self::admission::Admission;
use self::shutdown::Shutdown;
use crate::app::{App, AppSetup};
use crate::config::{ConfigError, ServerConfig, UringMode};
use crate::hub::{Hub, Outbox};
use crate::CoreId;

/// Which I/O driver a core's runtime got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    /// epoll: io_uring is unavailable (old kernel, seccomp) or
    /// `MONOIO_FORCE_LEGACY_DRIVER=1` is set.
    Epoll,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("core {core} failed to start: {reason}")]
    Core { core: u16, reason: CoreFailure },
}

/// Why one core could not start.
#[derive(Debug, thiserror::Error)]
pub enum CoreFailure {
    #[error("pinning to CPU {cpu}: {source}")]
    Pin { cpu: usize, source: std::io::Error },
    #[error("building the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("spawning the thread: {0}")]
    Thread(std::io::Error),
    #[error("the core thread exited during start-up")]
    Exited,
}

/// A running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    drivers: Vec<Driver>,
    shutdown: Arc<Shutdown>,
    stats: Arc<[Arc<CoreStats>]>,
    threads: Vec<JoinHandle<std::io::Result<()>>>,
    /// Run once every core has ended (the cluster link's goodbye).
    after_stop: Vec<Box<dyn FnOnce() + Send>>,
}

impl ServerHandle {
    /// The address every core listens on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The driver of each core, in core order.
    pub fn drivers(&self) -> &[Driver] {
        &self.drivers
    }

    /// The sum of every core's counters now.
    pub fn stats(&self) -> Stats {
        crate::stats::sum(self.stats.iter().map(|s| &**s))
    }

    /// Counters of one core.
    pub fn core_stats(&self, core: CoreId) -> Stats {
        crate::stats::sum([&*self.stats[core.index()]])
    }

    /// A handle that can start a graceful shutdown from any thread.
    pub fn shutdown_trigger(&self) -> impl Fn() + Send + Sync + 'static {
        let shutdown = self.shutdown.clone();
        move || shutdown.trigger()
    }

    /// Stops accepting, closes every connection with 1001, waits for the closing
    /// handshakes (up to `shutdown_timeout_ms`) and returns when every core has ended.
    pub fn shutdown(self) -> std::io::Result<()> {
        self.shutdown.trigger();
        self.join()
    }

    /// Runs `stop` once every core has ended, after the shutdown's closing handshakes
    /// (what a cluster node uses to say goodbye to Redis).
    pub fn after_stop(&mut self, stop: impl FnOnce() + Send + 'static) {
        self.after_stop.push(Box::new(stop));
    }

    /// Waits for every core to end (after a shutdown started elsewhere).
    pub fn join(mut self) -> std::io::Result<()> {
        let result = self.join_cores();
        for stop in self.after_stop {
            stop();
        }
        result
    }

    fn join_cores(&mut self) -> std::io::Result<()> {
        let mut result = Ok(());
        for thread in self.threads.drain(..) {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(std::io::Error::other("a core thread panicked")),
            }
        }
        result
    }
}

/// A core's runtime: io_uring or epoll, with timers.
type CoreRuntime =
    FusionRuntime<TimeDriver<monoio::IoUringDriver>, TimeDriver<monoio::LegacyDriver>>;

/// Builds a core's runtime: io_uring with deferred task-run (completions are processed
/// when the core asks for them, not by interrupting it: fewer interrupts under load),
/// else plain io_uring on kernels before 6.1, else epoll.
fn build_runtime(entries: u32, mode: UringMode) -> Result<CoreRuntime, CoreFailure> {
    let mut ring = io_uring::IoUring::builder();
    match mode {
        UringMode::Plain => {}
        UringMode::Coop => {
            ring.setup_coop_taskrun().setup_taskrun_flag();
        }
        UringMode::Defer => {
            ring.setup_defer_taskrun().setup_single_issuer();
        }
    }
    let tuned = RuntimeBuilder::<FusionDriver>::new()
        .enable_timer()
        .with_entries(entries)
        .uring_builder(ring)
        .build();
    tuned
        .or_else(|_| {
            RuntimeBuilder::<FusionDriver>::new()
                .enable_timer()
                .with_entries(entries)
                .build()
        })
        .map_err(CoreFailure::Runtime)
}

/// What a caller may give the cores besides the config and the app: the hub of
/// inboxes (when a thread outside the cores posts to them: the cluster link) and the
/// cluster link's status (`/healthz` answers 503 while it is down; `/metrics` shows it).
pub struct Attachments<E> {
    pub hub: Arc<Hub<E>>,
    pub cluster: Option<Arc<ClusterStats>>,
}

impl<E: Send> Attachments<E> {
    /// A hub sized by the config (`inbox_capacity`), no cluster.
    pub fn new(config: &ServerConfig) -> Self {
        Attachments {
            hub: Hub::new(config.cores(), config.inbox_capacity),
            cluster: None,
        }
    }
}

/// What every core shares, handed to each core thread.
struct Shared<A: App, F> {
    config: Arc<ServerConfig>,
    hub: Arc<Hub<A::Envelope>>,
    cluster: Option<Arc<ClusterStats>>,
    shutdown: Arc<Shutdown>,
    admission: Arc<Admission>,
    make_app: Arc<F>,
    stats: Arc<[Arc<CoreStats>]>,
}

impl<A: App, F> Clone for Shared<A, F> {
    fn clone(&self) -> Self {
        Shared {
            config: self.config.clone(),
            hub: self.hub.clone(),
            cluster: self.cluster.clone(),
            shutdown: self.shutdown.clone(),
            admission: self.admission.clone(),
            make_app: self.make_app.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// A core thread's report once it accepts (its I/O driver) or failed to start.
type Ready = (CoreId, Result<Driver, CoreFailure>);

/// Starts the server: binds every core's listener, starts and pins every core, and
/// returns once all of them are accepting.
pub fn start<A, F>(config: ServerConfig, make_app: F) -> Result<ServerHandle, StartError>
where
    A: App,
    F: Fn(AppSetup<'_>) -> A + Send + Sync + 'static,
{
    let attachments = Attachments::new(&config);
    start_with(config, attachments, make_app)
}

/// [`start`] with a hub and cluster status made by the caller.
pub fn start_with<A, F>(
    config: ServerConfig,
    attachments: Attachments<A::Envelope>,
    make_app: F,
) -> Result<ServerHandle, StartError>
where
    A: App,
    F: Fn(AppSetup<'_>) -> A + Send + Sync + 'static,
{
    assert_eq!(
        attachments.hub.cores(),
        config.cores(),
        "one inbox per core"
    );
    let cpus = config.cpus().to_vec();
    let listeners = listener::bind_listeners(config.listen, cpus.len(), config.listen_backlog)?;
    let local_addr = listeners[0].local_addr().map_err(|e| ListenError::Io {
        addr: config.listen,
        source: e,
    })?;
    let shared = Shared::<A, F> {
        hub: attachments.hub,
        cluster: attachments.cluster,
        shutdown: Arc::new(Shutdown::new(cpus.len())),
        admission: Arc::new(Admission::new(&config)),
        make_app: Arc::new(make_app),
        stats: cpus.iter().map(|_| Arc::default()).collect(),
        config: Arc::new(config),
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for (index, (cpu, listener)) in cpus.iter().copied().zip(listeners).enumerate() {
        let id = CoreId(index as u16);
        let (shared, ready) = (shared.clone(), ready_tx.clone());
        let thread = std::thread::Builder::new()
            .name(format!("ringcast-core-{index}"))
            .spawn(move || run_core_thread(id, cpu, listener, shared, ready))
            .map_err(|e| StartError::Core {
                core: id.0,
                reason: CoreFailure::Thread(e),
            })?;
        threads.push(thread);
    }
    drop(ready_tx);
    let mut drivers = vec![Driver::IoUring; cpus.len()];
    for _ in 0..cpus.len() {
        match ready_rx.recv() {
            Ok((id, Ok(driver))) => drivers[id.index()] = driver,
            Ok((id, Err(reason))) => {
                shared.shutdown.trigger();
                return Err(StartError::Core { core: id.0, reason });
            }
            Err(_) => {
                return Err(StartError::Core {
                    core: 0,
                    reason: CoreFailure::Exited,
                })
            }
        }
    }
    Ok(ServerHandle {
        local_addr,
        drivers,
        shutdown: shared.shutdown,
        stats: shared.stats,
        threads,
        after_stop: Vec::new(),
    })
}

/// One core thread: pins itself, builds its runtime and app, reports ready, and runs
/// the core until shutdown.
fn run_core_thread<A, F>(
    id: CoreId,
    cpu: usize,
    listener: std::net::TcpListener,
    shared: Shared<A, F>,
    ready: mpsc::Sender<Ready>,
) -> std::io::Result<()>
where
    A: App,
    F: Fn(AppSetup<'_>) -> A + Send + Sync + 'static,
{
    let Shared {
        config,
        hub,
        cluster,
        shutdown,
        admission,
        make_app,
        stats,
    } = shared;
    let pinned = monoio::utils::bind_to_cpu_set([cpu]).map_err(|errno| CoreFailure::Pin {
        cpu,
        source: errno.into(),
    });
    let runtime = pinned.and_then(|()| build_runtime(config.uring_entries, config.uring_mode));
    let mut runtime = match runtime {
        Ok(runtime) => runtime,
        Err(reason) => {
            let _ = ready.send((id, Err(reason)));
            return Ok(());
        }
    };
    let driver = match runtime {
        FusionRuntime::Uring(_) => Driver::IoUring,
        FusionRuntime::Legacy(_) => Driver::Epoll,
    };
    runtime.block_on(async move {
        let outbox = Outbox::new(hub.clone(), id);
        let setup = AppSetup {
            core: id,
            cores: config.cores(),
            config: &config,
        };
        let app = RefCell::new(make_app(setup));
        let ctx = CoreCtx::new(id, config.conn_limits(), outbox, stats);
        let poller = match poller::Poller::new() {
            Ok(poller) => poller,
            Err(error) => {
                let _ = ready.send((id, Err(CoreFailure::Runtime(error))));
                return Ok(());
            }
        };
        let core = Rc::new(Core {
            ctx,
            app,
            config,
            cluster,
            poller,
            admitted: RefCell::default(),
        });
        let _ = ready.send((id, Ok(driver)));
        self::core::run_core(core, listener, hub, shutdown, admission).await
    })
}
