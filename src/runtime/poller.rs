//! A core's readiness for its upgraded connections: one epoll instance per core, which
//! the core's reader waits on through the runtime (an io_uring poll of the epoll
//! descriptor, or the epoll fallback driver), then asks for up to a batch of ready
//! sockets without blocking.
//!
//! Why readiness and not one io_uring read per connection: a read in flight holds its
//! buffer and the task awaiting it for as long as the connection is idle, which was
//! most of an idle connection's memory (BENCHMARKS.md, idle memory). With readiness a
//! connection costs nothing while silent, and the core reads every ready socket into
//! one buffer of its own. io_uring's provided-buffer rings with multishot receive would
//! do the same without a `read(2)` per wake-up, but need access to the ring, which
//! monoio does not give.
//!
//! Sockets are watched level-triggered: a socket not read to the end (one read per
//! wake-up, at most `read_buffer_bytes`) is reported again, so no connection starves
//! another, and a reader that pauses (the outbox is congested) loses nothing. The
//! reader waits through the runtime before every pass, so the core's timers and other
//! tasks run between passes even when sockets are always ready.
//! Tokens are a connection's slot and generation: an event for a connection closed
//! since it was reported names a generation no longer there and is ignored.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use monoio::net::unix::UnixDatagram;

use crate::ConnId;

/// Watch for data (and the peer's close or an error, which epoll always reports).
pub(crate) const READABLE: u32 = libc::EPOLLIN as u32;
/// Watch for room in the send buffer.
pub(crate) const WRITABLE: u32 = libc::EPOLLOUT as u32;

/// One core's epoll instance, and the runtime's handle on its descriptor.
pub(crate) struct Poller {
    /// Owns the epoll descriptor; the runtime waits on it for readability.
    waiter: UnixDatagram,
}

/// A ready socket: which connection, and what it is ready for (`EPOLLIN`, `EPOLLOUT`,
/// `EPOLLHUP`, `EPOLLERR`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) events: u32,
}

impl Poller {
    /// A new epoll instance, registered with the current runtime. Call on the core's
    /// thread, inside its runtime.
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: plain syscall; the descriptor returned is owned below.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `epfd` is a fresh descriptor owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(epfd) };
        // monoio waits on any descriptor through its datagram socket type (a poll op
        // under io_uring, a registration under the epoll driver); nothing else of the
        // type is used.
        let waiter = UnixDatagram::from_std(std::os::unix::net::UnixDatagram::from(owned))?;
        Ok(Poller { waiter })
    }

    fn epfd(&self) -> RawFd {
        self.waiter.as_raw_fd()
    }

    /// Starts watching `fd` for `interest` on behalf of `conn`.
    pub(crate) fn add(&self, fd: RawFd, conn: ConnId, interest: u32) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, conn, interest)
    }

    /// Changes what `fd` is watched for (not 0: epoll would still report hang-ups).
    pub(crate) fn modify(&self, fd: RawFd, conn: ConnId, interest: u32) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, conn, interest)
    }

    /// Stops watching `fd` (closing it does too).
    pub(crate) fn remove(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL since Linux 2.6.9.
        if unsafe { libc::epoll_ctl(self.epfd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) }
            < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn control(&self, op: libc::c_int, fd: RawFd, conn: ConnId, interest: u32) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: interest,
            u64: token(conn),
        };
        // SAFETY: `event` is a live local; the descriptors are checked by the kernel.
        if unsafe { libc::epoll_ctl(self.epfd(), op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Moves the sockets ready now (up to `events`' capacity) into `out`, without waiting.
    pub(crate) fn ready_now(
        &self,
        events: &mut Vec<libc::epoll_event>,
        out: &mut Vec<Ready>,
    ) -> io::Result<()> {
        events.clear();
        let capacity = events.capacity().max(1);
        events.reserve(capacity);
        // SAFETY: the kernel writes at most `capacity` events into the spare capacity,
        // and `set_len` covers only the ones it wrote.
        let n = unsafe {
            libc::epoll_wait(self.epfd(), events.as_mut_ptr(), capacity as libc::c_int, 0)
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::Interrupted => Ok(()),
                _ => Err(error),
            };
        }
        // SAFETY: the first `n` events were written by the kernel.
        unsafe { events.set_len(n as usize) };
        out.extend(events.iter().map(|event| {
            let token = event.u64;
            Ready {
                slot: (token >> 32) as u32,
                generation: token as u32,
                events: event.events,
            }
        }));
        Ok(())
    }

    /// Waits until some watched socket is ready (at once if one is).
    pub(crate) async fn wait(&self) -> io::Result<()> {
        self.waiter.readable(false).await
    }
}

fn token(conn: ConnId) -> u64 {
    (u64::from(conn.slot) << 32) | u64::from(conn.generation)
}
