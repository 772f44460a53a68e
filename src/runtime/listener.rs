//! The listening sockets: one per core on the same address with SO_REUSEPORT, so the
//! kernel spreads connections over cores. Refuses an address another process already
//! listens on (with SO_REUSEPORT alone, a second server would silently share the port).

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Why the server could not listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "{0} is already in use: another process listens there (stop it or choose another --listen)"
    )]
    InUse(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
}

/// Binds `count` SO_REUSEPORT listeners on `addr` (port 0 picks one free port for all).
pub fn bind_listeners(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
) -> Result<Vec<TcpListener>, ListenError> {
    let io_err = |source| ListenError::Io { addr, source };
    // A probe bound without SO_REUSEPORT fails if anyone listens on the port, whatever
    // options they used; it also resolves port 0 to the port every core will share.
    let probe = new_socket(addr).map_err(io_err)?;
    probe.set_reuse_address(true).map_err(io_err)?;
    match probe.bind(&addr.into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(ListenError::InUse(addr)),
        Err(e) => return Err(io_err(e)),
        Ok(()) => {}
    }
    let bound = probe
        .local_addr()
        .map_err(io_err)?
        .as_socket()
        .expect("an inet socket has an inet address");
    drop(probe);
    (0..count)
        .map(|_| {
            let socket = new_socket(bound)?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&bound.into())?;
            socket.listen(backlog.min(i32::MAX as u32) as i32)?;
            Ok(socket.into())
        })
        .collect::<io::Result<Vec<_>>>()
        .map_err(|source| match source.kind() {
            io::ErrorKind::AddrInUse => ListenError::InUse(bound),
            _ => ListenError::Io {
                addr: bound,
                source,
            },
        })
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gives_every_core_the_same_port() {
        let listeners = bind_listeners("127.0.0.1:0".parse().unwrap(), 3, 128).unwrap();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0), "{ports:?}");
    }

    #[test]
    fn a_port_someone_listens_on_is_refused() {
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        assert!(matches!(bind_listeners(addr, 1, 128), Err(ListenError::InUse(a)) if a == addr));
        // Even when the other listener also uses SO_REUSEPORT.
        let ours = bind_listeners("127.0.0.1:0".parse().unwrap(), 1, 128).unwrap();
        let addr = ours[0].local_addr().unwrap();
        assert!(matches!(
            bind_listeners(addr, 1, 128),
            Err(ListenError::InUse(_))
        ));
    }
}
