//! A connection's frames on their way out: the iovecs of one `writev(2)` over a batch
//! of queued frames (headers inline, payloads shared, nothing copied; frames that sit
//! end to end in memory, as a `FrameBuffer` lays them out, share one iovec), and the
//! non-blocking write that sends them, short writes advanced by hand. The core's flush
//! path (`runtime/writer.rs`) decides when; a batch the socket would not take waits in
//! the connection's entry (`Writer::Blocked`) until the socket is writable.

use std::io;
use std::os::fd::RawFd;

use crate::ws::OutFrame;

/// Frames per write: each takes up to two iovecs, well under IOV_MAX.
pub(crate) const MAX_BATCH_FRAMES: usize = 256;
const IOV_MAX: usize = 1024;

/// Frames being written and the iovecs pointing into them. The iovecs point into
/// `frames`' heap buffer and the payloads, which stay put until the batch is cleared
/// (a `Vec`'s heap buffer does not move when the batch itself is moved or boxed).
#[derive(Debug)]
pub struct WriteBatch {
    pub(crate) frames: Vec<OutFrame>,
    iovecs: Vec<libc::iovec>,
    /// First iovec not yet fully written.
    start: usize,
}

impl WriteBatch {
    pub(crate) fn new() -> Self {
        WriteBatch {
            frames: Vec::new(),
            iovecs: Vec::new(),
            start: 0,
        }
    }

    pub(crate) fn build_iovecs(&mut self) {
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

    pub(crate) fn is_written(&self) -> bool {
        self.start == self.iovecs.len()
    }

    /// Skips `written` bytes after a (possibly short) write.
    pub(crate) fn advance(&mut self, mut written: usize) {
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

    /// Writes with non-blocking `sendmsg(2)` until done (`Ok(true)`) or the socket's
    /// buffer is full (`Ok(false)`). `sendmsg` rather than `writev`: the same socket
    /// path without the VFS layer's checks on every call (BENCHMARKS.md, profiles).
    pub(crate) fn write_now(&mut self, fd: RawFd) -> io::Result<bool> {
        while !self.is_written() {
            let count = (self.iovecs.len() - self.start).min(IOV_MAX);
            // SAFETY: zeroed is a valid msghdr (no address, no control data).
            let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
            message.msg_iov = self.iovecs[self.start..].as_ptr() as *mut libc::iovec;
            message.msg_iovlen = count as _;
            // SAFETY: `iovecs[start..start + count]` are valid iovecs into `frames` (see
            // the type); the kernel only reads them. MSG_NOSIGNAL: a reset peer is an
            // error here, not SIGPIPE.
            // `syscall` rather than libc's `sendmsg`: the wrapper is a cancellation point
            // that brackets every call with two calls of its own (1% of an echo server).
            let written = unsafe {
                libc::syscall(
                    libc::SYS_sendmsg,
                    fd,
                    &message as *const libc::msghdr,
                    libc::MSG_NOSIGNAL,
                )
            } as isize;
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

    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.iovecs.clear();
        self.start = 0;
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
