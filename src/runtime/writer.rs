//! The write path. Frames queued on a connection are corked: the core's flush task runs
//! after every task already runnable has queued its frames, then sends each dirty
//! connection's frames in one non-blocking `writev(2)` (`conn::WriteBatch`). One write
//! per batch, not per frame, is what makes fan-out fast: a loopback write costs ~3 µs
//! whatever its size. A socket that would block keeps the rest of its batch in its
//! entry (`Writer::Blocked`) and is watched for writability by the core's poller; the
//! reader calls [`resume`] when it is, and writing goes on from there. No task and no
//! buffer exist per connection for writing.
//!
//! Why a direct syscall and not an io_uring op: on loopback the kernel's TCP work is
//! the same either way, and the direct write saves the op and its completion round
//! trip (BENCHMARKS.md, echo).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::poller::{READABLE, WRITABLE};
use super::reader::close_conn;
use super::Core;
use crate::app::App;
use crate::conn::batch::MAX_BATCH_FRAMES;
use crate::conn::pacing::FlushPacing;
use crate::conn::{shutdown_socket, Conn, ConnPhase, WriteBatch, Writer};
use crate::ConnId;

/// The core's flush task: writes every dirty connection's queued frames directly, in
/// passes; after a fan-out pass the next one is paced (see `pacing`).
pub(crate) async fn run_flusher<A: App>(core: Rc<Core<A>>) {
    let mut dirty = Vec::new();
    let mut batch = WriteBatch::new();
    let mut pacing = FlushPacing::new(Duration::from_micros(core.config.flush_pace_us));
    loop {
        core.ctx.next_dirty(&mut dirty).await;
        if let Some(wait) = pacing.wait_before_pass(Instant::now()) {
            monoio::time::sleep(wait).await;
            core.ctx.take_dirty(&mut dirty);
        }
        let sockets = dirty.len();
        let mut frames = 0;
        for id in dirty.drain(..) {
            frames += flush_now(&core, id, &mut batch);
        }
        pacing.after_pass(Instant::now(), sockets, frames, core.ctx.take_inputs());
    }
}

/// Writes a connection's queue now, closing the connection if that was all it waited
/// for. Returns the frames taken from the queue.
fn flush_now<A: App>(core: &Rc<Core<A>>, id: ConnId, batch: &mut WriteBatch) -> u64 {
    // `None`: closed since it was queued for flushing.
    let flushed = core.ctx.with_live_conn(id, |conn| {
        conn.flush_pending = false;
        let frames = flush_conn(core, id, conn, batch);
        (frames, conn.is_done())
    });
    let Some((frames, done)) = flushed else {
        return 0;
    };
    if done {
        close_conn(core, id);
    }
    frames
}

/// The socket of a blocked connection is writable (or failed): writes the rest of its
/// batch, then what was queued meanwhile; closes the connection if that was all it
/// waited for.
pub(crate) fn resume<A: App>(core: &Rc<Core<A>>, id: ConnId) {
    let done = core.ctx.with_live_conn(id, |conn| {
        let Writer::Blocked(mut rest) = std::mem::replace(&mut conn.writer, Writer::Ready) else {
            return conn.is_done();
        };
        match rest.write_now(conn.fd) {
            Ok(true) => {
                rest.clear();
                flush_conn(core, id, conn, &mut rest);
            }
            Ok(false) => conn.writer = Writer::Blocked(rest),
            Err(_) => {
                shutdown_socket(conn.fd);
                conn.writer_finished();
                watch(core, id, conn);
            }
        }
        conn.is_done()
    });
    if done == Some(true) {
        close_conn(core, id);
    }
}

/// Writes `conn`'s queued frames until they are all written or the socket would
/// block (the rest of the batch then waits in `Writer::Blocked`). Returns the frames
/// taken from the queue.
fn flush_conn<A: App>(core: &Core<A>, id: ConnId, conn: &mut Conn, batch: &mut WriteBatch) -> u64 {
    if !matches!(conn.writer, Writer::Ready) {
        return 0;
    }
    let mut frames = 0;
    loop {
        if conn.has_outbound() {
            core.ctx.stats().observe_queue(conn.queued_bytes());
        }
        conn.take_batch(&mut batch.frames, MAX_BATCH_FRAMES);
        if batch.frames.is_empty() {
            break;
        }
        frames += batch.frames.len() as u64;
        if let Some(tls) = conn.tls.as_mut() {
            if !crate::tls::encrypt_frames(tls, &mut batch.frames) {
                shutdown_socket(conn.fd);
            }
        }
        batch.build_iovecs();
        match batch.write_now(conn.fd) {
            Ok(true) => batch.clear(),
            Ok(false) => {
                conn.writer =
                    Writer::Blocked(Box::new(std::mem::replace(batch, WriteBatch::new())));
                break;
            }
            Err(_) => {
                batch.clear();
                shutdown_socket(conn.fd);
                conn.writer_finished();
                break;
            }
        }
    }
    watch(core, id, conn);
    frames
}

/// Makes the poller watch `conn` for what it waits for now: data while its read side
/// is open, room to write while a batch is blocked; a connection that waits for neither
/// (its read side ended, its frames go out directly) leaves the poller, which would
/// otherwise keep reporting a hang-up nobody acts on. An `epoll_ctl` only on a change.
pub(crate) fn watch<A: App>(core: &Core<A>, id: ConnId, conn: &mut Conn) {
    if matches!(conn.phase, ConnPhase::Handshake { .. }) {
        // Not registered yet: the handshake task owns the socket.
        return;
    }
    let mut interest = 0;
    if !conn.reader_done {
        interest |= READABLE;
    }
    if matches!(conn.writer, Writer::Blocked(_)) {
        interest |= WRITABLE;
    }
    if interest == conn.interest {
        return;
    }
    let changed = match (conn.interest, interest) {
        (_, 0) => core.poller.remove(conn.fd),
        (0, _) => core.poller.add(conn.fd, id, interest),
        _ => core.poller.modify(conn.fd, id, interest),
    };
    if changed.is_ok() {
        conn.interest = interest;
    }
}
