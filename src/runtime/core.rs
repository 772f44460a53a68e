//! One core's event loop: accepts on its own listener, runs its connections, drains
//! its inbox into the app, sweeps timeouts and heartbeats, and shuts down gracefully.
//! Everything here runs on one pinned thread; nothing is shared but the hub, the
//! shutdown signal and the connection counts of `admission.rs`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::io::{
    AsyncWriteRent, CancelHandle, CancelableAsyncReadRent, CancelableAsyncWriteRent, Canceller,
};
use monoio::net::{TcpListener, TcpStream};

use super::admission::{Admission, Admitted, Refusal, RETRY_AFTER_S};
use super::poller::Poller;
use super::reader::run_reader;
use super::shutdown::Shutdown;
use super::upgrade::run_handshake;
use super::writer::run_flusher;
use crate::app::App;
use crate::config::{Config, Heartbeat, ServerConfig};
use crate::conn::{abort_socket, set_nonblocking, ConnPhase, CoreCtx, Tick};
use crate::hub::Hub;
use crate::stats::ClusterStats;
use crate::ws::handshake;
use crate::ws::{close_code, Opcode, OutFrame};

/// Envelopes handed to the app per inbox wake-up.
const INBOX_BATCH: usize = 256;
/// Longest pause between two heartbeat sweeps.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// After the shutdown deadline, how long aborted connections get to clean up.
const ABORT_GRACE: Duration = Duration::from_millis(500);
/// How long a refused connection may take to get its answer and close, and how many
/// of its bytes are read and dropped meanwhile (see [`refuse`]).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
const REFUSAL_LINGER_BYTES: usize = 4096;

/// A core: its context (slab, outbox) and its app.
pub(crate) struct Core<A: App> {
    pub(crate) ctx: CoreCtx<A::Envelope>,
    pub(crate) app: RefCell<A>,
    /// The whole configuration (the runtime composes the layers; `ctx` has its slice).
    pub(crate) config: Arc<ServerConfig>,
    /// The cluster link's status, on a cluster node (`/healthz`, `/metrics`).
    pub(crate) cluster: Option<Arc<ClusterStats>>,
    /// Readiness of the core's upgraded sockets (`poller.rs`).
    pub(crate) poller: Poller,
    /// The places in the connection counts of upgraded connections, by slot, while
    /// `max_conns_per_ip` or `max_connections` is set (empty otherwise); given back when
    /// the connection closes. During its handshake its task holds it.
    pub(crate) admitted: RefCell<HashMap<u32, Admitted>>,
}

/// Runs a core until shutdown has completed.
pub(crate) async fn run_core<A: App>(
    core: Rc<Core<A>>,
    listener: std::net::TcpListener,
    hub: Arc<Hub<A::Envelope>>,
    shutdown: Arc<Shutdown>,
    admission: Arc<Admission>,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    monoio::spawn(drain_inbox(core.clone(), hub));
    let flusher = core.clone();
    monoio::spawn(async move { flusher.ctx.outbox.run_flusher().await });
    monoio::spawn(sweep(core.clone()));
    monoio::spawn(run_flusher(core.clone()));
    monoio::spawn(run_reader(core.clone()));
    let canceller = Canceller::new();
    let accepting = monoio::spawn(accept(
        core.clone(),
        listener,
        canceller.handle(),
        shutdown.clone(),
        admission,
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
    cancel: CancelHandle,
    shutdown: Arc<Shutdown>,
    admission: Arc<Admission>,
) {
    let mut last_error_log: Option<Instant> = None;
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, peer)) => {
                // Counted from here until the connection's task ends, just after its
                // slot is removed: the handshake is included.
                let admitted = match admission.try_admit(peer.ip()) {
                    Ok(admitted) => admitted,
                    Err(refusal) => {
                        match refusal {
                            Refusal::PerIp => core.ctx.stats().count_refused_per_ip(),
                            Refusal::Total => core.ctx.stats().count_refused_total(),
                        }
                        // A TLS client could not read a plain-text 429/503: closed.
                        if core.config.tls().is_none() {
                            monoio::spawn(refuse(stream, refusal));
                        }
                        continue;
                    }
                };
                if let Err(error) = configure_socket(&stream, &core.config) {
                    tracing::warn!(core = core.ctx.core().0, "dropping a connection: {error}");
                    continue;
                }
                monoio::spawn(run_handshake(core.clone(), stream, admitted));
            }
            Err(_) if shutdown.is_requested() => return,
            Err(error) => {
                // EMFILE and friends: log at most once a second and back off briefly.
                if last_error_log.is_none_or(|at| at.elapsed() > Duration::from_secs(1)) {
                    tracing::error!(core = core.ctx.core().0, "accept failed: {error}");
                    last_error_log = Some(Instant::now());
                }
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Readies an accepted socket: no Nagle delay, non-blocking (for the flush task's
/// direct writes), and the buffer sizes the config asks for.
fn configure_socket(stream: &TcpStream, config: &Config) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    set_nonblocking(fd)?;
    // SAFETY: `stream` owns the descriptor and outlives this borrow.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    set_buffer_sizes(socket, config.send_buffer_bytes, config.recv_buffer_bytes)
}

/// Sets SO_SNDBUF and SO_RCVBUF where asked (the kernel doubles the value and stops
/// autotuning that buffer for this socket; tuning/README.md); leaves the kernel's
/// autotuned size where not.
fn set_buffer_sizes(
    socket: BorrowedFd<'_>,
    send: Option<usize>,
    recv: Option<usize>,
) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(&socket);
    if let Some(bytes) = send {
        socket.set_send_buffer_size(bytes)?;
    }
    if let Some(bytes) = recv {
        socket.set_recv_buffer_size(bytes)?;
    }
    Ok(())
}

/// Answers a connection turned away at accept (429 or 503 with `Retry-After`) without
/// waiting for its request, so a flood of silent connections is refused at once and
/// holds no descriptor for the handshake timeout; then closes it. It never takes a
/// slot in the slab and never reaches the app.
///
/// After the answer: FIN, then reading and dropping what the client sends until it
/// closes, so that unread request bytes do not make the kernel reset the connection
/// and destroy the answer before the client reads it (as `linger` in `reader.rs`).
/// All of it is bounded by [`REFUSAL_LINGER`] and [`REFUSAL_LINGER_BYTES`]: at the
/// deadline the I/O in flight is cancelled and the socket closed, whatever the client
/// does (a zero window, a slow trickle).
async fn refuse(stream: TcpStream, refusal: Refusal) {
    let canceller = Canceller::new();
    let mut answering = pin!(answer_refusal(stream, refusal, canceller.handle()));
    let mut deadline = pin!(monoio::time::sleep(REFUSAL_LINGER));
    let mut canceller = Some(canceller);
    poll_fn(|cx| {
        if answering.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if canceller.is_some() && deadline.as_mut().poll(cx).is_ready() {
            if let Some(canceller) = canceller.take() {
                // The I/O in flight ends with ECANCELED and wakes `answering`, which
                // then returns (every later call on the handle is cancelled at once).
                canceller.cancel();
            }
        }
        Poll::Pending
    })
    .await;
}

/// The I/O of [`refuse`], every call cancelable; the socket closes when it returns.
async fn answer_refusal(mut stream: TcpStream, refusal: Refusal, cancel: CancelHandle) {
    let answer = handshake::busy_response(refusal.status(), RETRY_AFTER_S, refusal.reason());
    let len = answer.len();
    // A fresh socket's send buffer is empty: the ~150-byte answer goes in one write.
    let (written, _) = stream.cancelable_write(answer, cancel.clone()).await;
    if !matches!(written, Ok(n) if n == len) {
        return;
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = Vec::with_capacity(1024);
    let mut discarded = 0;
    while discarded < REFUSAL_LINGER_BYTES {
        buf.clear();
        let (read, back) = stream.cancelable_read(buf, cancel.clone()).await;
        buf = back;
        match read {
            Ok(n @ 1..) => discarded += n,
            _ => return,
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
    let Heartbeat {
        ping_interval,
        idle_timeout,
        handshake_timeout,
        close_timeout,
    } = core.config.heartbeat();
    let shortest = handshake_timeout.min(ping_interval).min(close_timeout);
    let period = (shortest / 4).clamp(Duration::from_millis(5), MAX_SWEEP_INTERVAL);
    let ping = OutFrame::new(Opcode::Ping, Bytes::new());
    loop {
        monoio::time::sleep(period).await;
        let now = Instant::now();
        let close_deadline = now + close_timeout;
        core.ctx
            .for_each_conn(|conn| match conn.tick(now, ping_interval, idle_timeout) {
                Tick::Nothing => {
                    conn.release_idle_queue();
                    false
                }
                Tick::SendPing => {
                    conn.push_control(ping.clone());
                    conn.last_ping = now;
                    true
                }
                Tick::IdleTimeout => {
                    conn.begin_close(close_code::GOING_AWAY, "idle timeout", close_deadline);
                    true
                }
                // A handshake past its deadline, or a close the peer has not answered (or
                // could not be sent: the peer stopped reading): reset, once.
                Tick::Abort if !conn.aborted => {
                    conn.aborted = true;
                    if matches!(conn.phase, ConnPhase::Handshake { .. }) {
                        core.ctx.stats().count_handshake_timeout();
                    }
                    abort_socket(conn.fd);
                    false
                }
                Tick::Abort => false,
            });
    }
}

/// Graceful shutdown of this core's connections: 1001 to every open one, then wait
/// for their closing handshakes until the deadline, then abort the rest.
async fn close_all<A: App>(core: &Core<A>) {
    let config = &core.config;
    let now = Instant::now();
    let deadline = now + Duration::from_millis(config.shutdown_timeout_ms);
    core.ctx.for_each_conn(|conn| {
        if conn.is_open() {
            conn.begin_close(close_code::GOING_AWAY, "server shutting down", deadline);
            true
        } else {
            if !matches!(conn.phase, crate::conn::ConnPhase::Closing { .. }) {
                abort_socket(conn.fd);
            }
            false
        }
    });
    let empty = || core.ctx.has_no_connections();
    while !empty() && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    core.ctx.for_each_conn(|conn| {
        abort_socket(conn.fd);
        false
    });
    let abort_deadline = Instant::now() + ABORT_GRACE;
    while !empty() && Instant::now() < abort_deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    #[test]
    fn buffer_sizes_are_set_where_asked_and_left_to_the_kernel_where_not() {
        let (server, _client) = tcp_pair();
        let socket = socket2::SockRef::from(&server);
        let (send_before, recv_before) = (
            socket.send_buffer_size().unwrap(),
            socket.recv_buffer_size().unwrap(),
        );
        set_buffer_sizes(server.as_fd(), None, None).unwrap();
        assert_eq!(socket.send_buffer_size().unwrap(), send_before);
        assert_eq!(socket.recv_buffer_size().unwrap(), recv_before);
        // Linux doubles the value for its bookkeeping overhead (socket(7)).
        set_buffer_sizes(server.as_fd(), Some(20_000), None).unwrap();
        assert_eq!(socket.send_buffer_size().unwrap(), 40_000);
        assert_eq!(socket.recv_buffer_size().unwrap(), recv_before);
        set_buffer_sizes(server.as_fd(), None, Some(30_000)).unwrap();
        assert_eq!(socket.send_buffer_size().unwrap(), 40_000);
        assert_eq!(socket.recv_buffer_size().unwrap(), 60_000);
    }
}
