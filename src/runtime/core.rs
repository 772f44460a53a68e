//! One core's event loop: accepts on its own listener, runs its connections, drains
//! its inbox into the app, sweeps timeouts and heartbeats, and shuts down gracefully.
//! Everything here runs on one pinned thread; nothing is shared but the hub.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::io::Canceller;
use monoio::net::TcpListener;

use super::ctx::CoreCtx;
use super::shutdown::Shutdown;
use crate::app::App;
use crate::conn::{abort_socket, run_connection, run_flusher, set_nonblocking, Tick};
use crate::hub::Hub;
use crate::ws::{Opcode, OutFrame};

/// Envelopes handed to the app per inbox wake-up.
const INBOX_BATCH: usize = 256;
/// Longest pause between two heartbeat sweeps.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// After the shutdown deadline, how long aborted connections get to clean up.
const ABORT_GRACE: Duration = Duration::from_millis(500);

/// A core: its context (slab, outbox) and its app.
pub(crate) struct Core<A: App> {
    pub(crate) ctx: CoreCtx<A::Envelope>,
    pub(crate) app: RefCell<A>,
}

/// Runs a core until shutdown has completed.
pub(crate) async fn run_core<A: App>(
    core: Rc<Core<A>>,
    listener: std::net::TcpListener,
    hub: Arc<Hub<A::Envelope>>,
    shutdown: Arc<Shutdown>,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    monoio::spawn(drain_inbox(core.clone(), hub));
    let flusher = core.clone();
    monoio::spawn(async move { flusher.ctx.outbox.run_flusher().await });
    monoio::spawn(sweep(core.clone()));
    monoio::spawn(run_flusher(core.clone()));
    let canceller = Canceller::new();
    let accepting = monoio::spawn(accept(
        core.clone(),
        listener,
        canceller.handle(),
        shutdown.clone(),
    ));
    shutdown.wait(core.ctx.core()).await;
    canceller.cancel();
    accepting.await;
    close_all(&core).await;
    Ok(())
}

async fn accept<A: App>(
    core: Rc<Core<A>>,
    listener: TcpListener,
    cancel: monoio::io::CancelHandle,
    shutdown: Arc<Shutdown>,
) {
    let mut last_error_log: Option<Instant> = None;
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                if let Err(error) = set_nonblocking(stream.as_raw_fd()) {
                    eprintln!(
                        "ringcast: core {}: dropping a connection: {error}",
                        core.ctx.core().0
                    );
                    continue;
                }
                monoio::spawn(run_connection(core.clone(), stream));
            }
            Err(_) if shutdown.is_requested() => return,
            Err(error) => {
                // EMFILE and friends: log at most once a second and back off briefly.
                if last_error_log.is_none_or(|at| at.elapsed() > Duration::from_secs(1)) {
                    eprintln!(
                        "ringcast: core {}: accept failed: {error}",
                        core.ctx.core().0
                    );
                    last_error_log = Some(Instant::now());
                }
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn drain_inbox<A: App>(core: Rc<Core<A>>, hub: Arc<Hub<A::Envelope>>) {
    let mut batch = Vec::with_capacity(INBOX_BATCH);
    loop {
        hub.recv_batch(core.ctx.core(), &mut batch, INBOX_BATCH)
            .await;
        let mut app = core.app.borrow_mut();
        for envelope in batch.drain(..) {
            core.ctx.count_input();
            app.on_envelope(&core.ctx, envelope);
        }
    }
}

/// Heartbeat and deadlines for every connection of the core, on one timer: no
/// per-connection timer is kept, which keeps idle connections small.
async fn sweep<A: App>(core: Rc<Core<A>>) {
    let config = core.ctx.config.clone();
    let ping_interval = Duration::from_millis(config.ping_interval_ms);
    let idle_timeout = Duration::from_millis(config.idle_timeout_ms);
    let shortest = [
        config.handshake_timeout_ms,
        config.ping_interval_ms,
        config.close_timeout_ms,
    ]
    .into_iter()
    .min()
    .unwrap_or(1000);
    let period =
        Duration::from_millis(shortest / 4).clamp(Duration::from_millis(5), MAX_SWEEP_INTERVAL);
    let ping = OutFrame::new(Opcode::Ping, Bytes::new());
    loop {
        monoio::time::sleep(period).await;
        let now = Instant::now();
        let close_deadline = now + Duration::from_millis(config.close_timeout_ms);
        for (slot, conn) in core.ctx.conns.borrow_mut().iter_mut() {
            match conn.tick(now, ping_interval, idle_timeout) {
                Tick::Nothing => {}
                Tick::SendPing => {
                    conn.push_control(ping.clone());
                    conn.last_ping = now;
                    core.ctx.kick(slot, conn);
                }
                Tick::IdleTimeout => {
                    conn.begin_close(1001, "idle timeout", close_deadline);
                    core.ctx.kick(slot, conn);
                }
                // A handshake past its deadline, or a close the peer has not answered
                // (or could not be sent: the peer stopped reading): reset.
                Tick::Abort => abort_socket(conn.fd),
            }
        }
    }
}

/// Graceful shutdown of this core's connections: 1001 to every open one, then wait
/// for their closing handshakes until the deadline, then abort the rest.
async fn close_all<A: App>(core: &Core<A>) {
    let config = &core.ctx.config;
    let now = Instant::now();
    let deadline = now + Duration::from_millis(config.shutdown_timeout_ms);
    for (slot, conn) in core.ctx.conns.borrow_mut().iter_mut() {
        if conn.is_open() {
            conn.begin_close(1001, "server shutting down", deadline);
            core.ctx.kick(slot, conn);
        } else if !matches!(conn.phase, crate::conn::Phase::Closing { .. }) {
            abort_socket(conn.fd);
        }
    }
    let empty = || core.ctx.conns.borrow().is_empty();
    while !empty() && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    for (_, conn) in core.ctx.conns.borrow().iter() {
        abort_socket(conn.fd);
    }
    let abort_deadline = Instant::now() + ABORT_GRACE;
    while !empty() && Instant::now() < abort_deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}
