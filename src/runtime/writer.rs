//! The write path. Frames queued on a connection are corked: the core's flush task runs
//! after every task already runnable has queued its frames, then sends each dirty
//! connection's frames in one non-blocking `writev(2)` (headers inline, payloads
//! shared, nothing copied; frames that sit end to end in memory, as a `FrameBuffer`
//! lays them out, share one iovec). One write per batch, not per frame, is what makes
//! fan-out fast: a loopback write costs ~3 µs whatever its size. Only a socket that would block
//! gets a writer task, which finishes through io_uring (or epoll) and ends when the
//! queue drains. Short writes advance by hand (monoio 0.2.4's `write_vectored_all`
//! corrupts data after a short write; see ARCHITECTURE.md).
//!
//! Why a direct syscall and not an io_uring op for the first attempt: on loopback the
//! kernel's TCP work is the same either way, and the direct write saves the task, the
//! op and its completion round trip (BENCHMARKS.md, echo).

use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::IoVecBuf;
use monoio::io::{AsyncWriteRent, OwnedWriteHalf};
use monoio::net::TcpStream;

use super::Core;
use crate::app::App;
use crate::conn::pacing::FlushPacing;
use crate::conn::{shutdown_socket, Conn, Writer};
use crate::ws::OutFrame;
use crate::ConnId;

/// Frames per write: each takes up to two iovecs, well under IOV_MAX.
const MAX_BATCH_FRAMES: usize = 256;
const IOV_MAX: usize = 1024;

/// Frames being written and the iovecs pointing into them. The iovecs point into
/// `frames`' heap buffer and the payloads, which stay put while the batch is owned
/// by the write operation.
pub(crate) struct WriteBatch {
    frames: Vec<OutFrame>,
    iovecs: Vec<libc::iovec>,
    /// First iovec not yet fully written.
    start: usize,
}

// SAFETY: `iovecs[start..]` are valid iovecs into `frames`, which is not modified
// between `build_iovecs` and the end of the write (the batch is moved into the op).
unsafe impl IoVecBuf for WriteBatch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs[self.start..].as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len() - self.start
    }
}

impl WriteBatch {
    pub(crate) fn new() -> Self {
        WriteBatch {
            frames: Vec::new(),
            iovecs: Vec::new(),
            start: 0,
        }
    }

    fn build_iovecs(&mut self) {
        self.iovecs.clear();
        self.start = 0;
        for frame in &self.frames {
            for part in [frame.header.as_slice(), &frame.payload[..]] {
                if part.is_empty() {
                    continue;
                }
                // Parts that touch (frames of one `FrameBuffer` chunk) share an iovec:
                // the kernel's per-iovec copy was 16% of the rooms server.
                if let Some(last) = self.iovecs.last_mut() {
                    if (last.iov_base as *const u8).wrapping_add(last.iov_len) == part.as_ptr() {
                        last.iov_len += part.len();
                        continue;
                    }
                }
                self.iovecs.push(libc::iovec {
                    iov_base: part.as_ptr() as *mut libc::c_void,
                    iov_len: part.len(),
                });
            }
        }
    }

    fn is_written(&self) -> bool {
        self.start == self.iovecs.len()
    }

    /// Skips `written` bytes after a (possibly short) write.
    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let iov = &mut self.iovecs[self.start];
            if written >= iov.iov_len {
                written -= iov.iov_len;
                self.start += 1;
            } else {
                // SAFETY: `written < iov_len`, so the new base stays inside the part.
                iov.iov_base =
                    unsafe { (iov.iov_base as *mut u8).add(written) } as *mut libc::c_void;
                iov.iov_len -= written;
                written = 0;
            }
        }
    }

    /// Writes with non-blocking `writev(2)` until done (`Ok(true)`) or the socket's
    /// buffer is full (`Ok(false)`).
    fn write_now(&mut self, fd: RawFd) -> io::Result<bool> {
        while !self.is_written() {
            let count = (self.iovecs.len() - self.start).min(IOV_MAX) as libc::c_int;
            // SAFETY: `iovecs[start..]` are valid iovecs into `frames` (see IoVecBuf).
            let written = unsafe { libc::writev(fd, self.iovecs[self.start..].as_ptr(), count) };
            if written < 0 {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::WouldBlock => return Ok(false),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(error),
                }
            }
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(written as usize);
        }
        Ok(true)
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.iovecs.clear();
        self.start = 0;
    }
}

/// Writes the whole batch, however many short writes it takes.
/// The iovecs must be built.
async fn write_all(
    wr: &mut OwnedWriteHalf<TcpStream>,
    mut batch: WriteBatch,
) -> (io::Result<()>, WriteBatch) {
    while !batch.is_written() {
        let (result, returned) = wr.writev(batch).await;
        batch = returned;
        match result {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), batch),
            Ok(n) => batch.advance(n),
            Err(e) => return (Err(e), batch),
        }
    }
    batch.clear();
    (Ok(()), batch)
}

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

/// Writes a connection's queue now; what would block goes to a writer task. Returns
/// the frames taken from the queue.
fn flush_now<A: App>(core: &Rc<Core<A>>, id: ConnId, batch: &mut WriteBatch) -> u64 {
    // `None`: closed since it was queued for flushing.
    core.ctx
        .with_live_conn(id, |conn| flush_conn(core, id, conn, batch))
        .unwrap_or(0)
}

/// [`flush_now`] on the connection's slab entry.
fn flush_conn<A: App>(
    core: &Rc<Core<A>>,
    id: ConnId,
    conn: &mut Conn,
    batch: &mut WriteBatch,
) -> u64 {
    conn.flush_pending = false;
    let Some(wr) = conn.take_idle_writer() else {
        return 0;
    };
    let mut frames = 0;
    loop {
        conn.take_batch(&mut batch.frames, MAX_BATCH_FRAMES);
        if batch.frames.is_empty() {
            conn.writer_stopped(Writer::Parked(wr));
            return frames;
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
                // Spawned, not run: it starts after this pass releases the slab.
                let rest = std::mem::replace(batch, WriteBatch::new());
                monoio::spawn(run_writer(core.clone(), id, wr, rest));
                return frames;
            }
            Err(_) => {
                batch.clear();
                shutdown_socket(conn.fd);
                conn.writer_stopped(Writer::Finished);
                return frames;
            }
        }
    }
}

/// Finishes `batch` (iovecs built, partly written) through the runtime, then writes
/// until the queue is empty, parks the write half in the slab and ends. After the
/// reader is done, or when a write fails, it shuts the socket (ending a read still in
/// flight) instead of parking.
pub(crate) async fn run_writer<A: App>(
    core: Rc<Core<A>>,
    id: ConnId,
    mut wr: OwnedWriteHalf<TcpStream>,
    mut batch: WriteBatch,
) {
    let fd = core.ctx.with_conn(id, |conn| conn.fd);
    loop {
        if !batch.is_written() {
            // Boxed while in flight: the task stays small.
            let (result, returned) = Box::pin(write_all(&mut wr, batch)).await;
            batch = returned;
            if result.is_err() {
                shutdown_socket(fd);
                core.ctx
                    .with_conn(id, |conn| conn.writer_stopped(Writer::Finished));
                return;
            }
        }
        let reader_done = core.ctx.with_conn(id, |conn| {
            conn.take_batch(&mut batch.frames, MAX_BATCH_FRAMES);
            if let Some(tls) = conn.tls.as_mut() {
                if !crate::tls::encrypt_frames(tls, &mut batch.frames) {
                    shutdown_socket(conn.fd);
                }
            }
            conn.reader_done
        });
        if batch.frames.is_empty() {
            let state = if reader_done {
                shutdown_socket(fd);
                Writer::Finished
            } else {
                Writer::Parked(wr)
            };
            core.ctx.with_conn(id, |conn| conn.writer_stopped(state));
            return;
        }
        batch.build_iovecs();
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::ws::Opcode;

    fn gather(batch: &WriteBatch) -> Vec<u8> {
        batch.iovecs[batch.start..]
            .iter()
            .flat_map(|iov| {
                // SAFETY: the iovecs point into `batch.frames`, alive for this call.
                unsafe { std::slice::from_raw_parts(iov.iov_base as *const u8, iov.iov_len) }
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn frames_that_touch_share_one_iovec() {
        let mut buffer = crate::ws::FrameBuffer::default();
        let mut batch = WriteBatch::new();
        for text in [&b"one"[..], b"two", b"three"] {
            batch
                .frames
                .push(OutFrame::preencoded(buffer.encode(Opcode::Text, text)));
        }
        batch
            .frames
            .push(OutFrame::new(Opcode::Text, Bytes::from_static(b"apart")));
        batch.build_iovecs();
        // One run of three frames, then the fourth's inline header and its payload.
        assert_eq!(batch.iovecs.len(), 3);
        assert_eq!(
            gather(&batch),
            b"\x81\x03one\x81\x03two\x81\x05three\x81\x05apart"
        );
        // Short writes step through a merged iovec like any other.
        let whole = gather(&batch);
        let mut written = 0;
        while !batch.is_written() {
            batch.advance(4.min(whole.len() - written));
            written += 4.min(whole.len() - written);
            assert_eq!(gather(&batch), &whole[written..]);
        }
    }

    #[test]
    fn advancing_through_short_writes_yields_the_remaining_bytes() {
        let mut batch = WriteBatch::new();
        batch
            .frames
            .push(OutFrame::new(Opcode::Text, Bytes::from_static(b"hello")));
        batch
            .frames
            .push(OutFrame::preencoded(Bytes::from_static(b"\x82\x03abc")));
        batch
            .frames
            .push(OutFrame::new(Opcode::Binary, Bytes::new()));
        batch.build_iovecs();
        let whole = gather(&batch);
        assert_eq!(whole, b"\x81\x05hello\x82\x03abc\x82\x00");
        for step in 1..whole.len() {
            let mut b = WriteBatch::new();
            b.frames = batch.frames.clone();
            b.build_iovecs();
            let mut written = 0;
            while !b.is_written() {
                let n = step.min(whole.len() - written);
                b.advance(n);
                written += n;
                assert_eq!(gather(&b), &whole[written..], "step {step} at {written}");
            }
        }
    }
}
