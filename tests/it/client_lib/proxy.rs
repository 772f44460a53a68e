//! A TCP proxy for the client tests: it stands between a client and a server so a
//! test can cut the client off while the server stays up, hold its reconnect attempts
//! until the test is ready, and point them at another server.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::WAIT;

/// A TCP proxy in front of a server, to cut a client off while the server stays up:
/// [`Proxy::cut`] ends every connection through it (the client sees its connection
/// lost, the server sees the client leave) and holds new ones, accepted but not
/// forwarded, until [`Proxy::open`].
pub(crate) struct Proxy {
    addr: SocketAddr,
    shared: Arc<(Mutex<ProxyState>, Condvar)>,
}

struct ProxyState {
    upstream: SocketAddr,
    open: bool,
    stopped: bool,
    /// Both ends of every forwarded connection, to cut them.
    streams: Vec<TcpStream>,
}

impl Proxy {
    pub(crate) fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new((
            Mutex::new(ProxyState {
                upstream,
                open: true,
                stopped: false,
                streams: Vec::new(),
            }),
            Condvar::new(),
        ));
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if lock(&accepting.0).stopped {
                    return;
                }
                let shared = Arc::clone(&accepting);
                std::thread::spawn(move || forward(client, &shared));
            }
        });
        Proxy { addr, shared }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn cut(&self) {
        let mut state = lock(&self.shared.0);
        state.open = false;
        for stream in state.streams.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn set_upstream(&self, upstream: SocketAddr) {
        lock(&self.shared.0).upstream = upstream;
    }

    /// Forwards again, starting with the connections held meanwhile.
    pub(crate) fn open(&self) {
        lock(&self.shared.0).open = true;
        self.shared.1.notify_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        let mut state = lock(&self.shared.0);
        state.stopped = true;
        state.open = true;
        drop(state);
        self.shared.1.notify_all();
        // Wakes the accepting thread so it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn lock(state: &Mutex<ProxyState>) -> MutexGuard<'_, ProxyState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits until the proxy is open, then copies both ways until either end stops.
fn forward(client: TcpStream, shared: &(Mutex<ProxyState>, Condvar)) {
    let deadline = Instant::now() + WAIT * 4;
    let mut state = lock(&shared.0);
    while !state.open {
        let left = deadline.saturating_duration_since(Instant::now());
        state = shared.1.wait_timeout(state, left).unwrap().0;
        if left.is_zero() || state.stopped {
            return;
        }
    }
    if state.stopped {
        return;
    }
    let Ok(server) = TcpStream::connect(state.upstream) else {
        return;
    };
    let clones = (client.try_clone(), server.try_clone());
    let (Ok(client_out), Ok(server_in)) = clones else {
        return;
    };
    state.streams.extend(client.try_clone());
    state.streams.extend(server.try_clone());
    drop(state);
    std::thread::spawn(move || pipe(client, server_in));
    pipe(server, client_out);
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
