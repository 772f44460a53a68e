//! Where the load tool connects: `ws://` URLs on loopback parsed into [`Target`]s, and
//! which of several URLs (the nodes of a cluster) each connection goes to. It opens
//! nothing; `client.rs` and `churn/client.rs` do.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where to connect: the address, and what goes in the request line and Host header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    /// Offer permessage-deflate in the upgrade (`--deflate`).
    pub deflate: bool,
    /// `wss://`: the TLS client config (set by the plan from `--ca`), `None` for ws://.
    pub tls: Option<TlsClient>,
}

/// A shared rustls client config; equal when it is the same config.
#[derive(Clone, Debug)]
pub struct TlsClient(pub std::sync::Arc<rustls::ClientConfig>);

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TlsClient {}

/// Parses `ws://HOST[:PORT][/PATH]` (or `wss://`, given a TLS client config), where
/// HOST is a loopback address or `localhost`.
pub fn parse_target(url: &str, tls: Option<&TlsClient>) -> Result<Target, String> {
    let (rest, tls) = match url.split_once("://") {
        Some(("ws", rest)) => (rest, None),
        Some(("wss", rest)) => match tls {
            Some(tls) => (rest, Some(tls.clone())),
            None => return Err("wss:// needs a TLS client config".into()),
        },
        Some((scheme, _)) => {
            return Err(format!(
                "unsupported scheme `{scheme}://`: use ws:// or wss://"
            ))
        }
        None => return Err(format!("`{url}` is not a URL: use ws://127.0.0.1:PORT/")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or(format!("unclosed `[` in `{url}`"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("bad port `{p}` in `{url}`"))?,
        None if tls.is_some() => 443,
        None => 80,
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>()
            .map_err(|_| format!("`{host}` is not an IP address or localhost"))?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "{ip} is not a loopback address: the load tool only runs on loopback"
        ));
    }
    Ok(Target {
        addr: SocketAddr::new(ip, port),
        host: authority.to_string(),
        path: path.to_string(),
        deflate: false,
        tls,
    })
}

/// Which of `n` URLs connection `index` goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// Connection `i` goes to URL `i % n` (echo, broadcast, connect; churn client `i`).
    RoundRobin,
    /// Rooms: connection `i` is member `i / rooms` of room `i % rooms`, and goes to URL
    /// `(i / rooms + i % rooms) % n`: the members of each room go round-robin over the
    /// URLs from the room's own starting point, so a room of `n` members or more has
    /// one on every URL and a cluster's cross-node fan-out is what gets measured. Plain
    /// round-robin would put all of a room's members on one URL whenever `n` divides
    /// `rooms` (2 nodes, the default 10 rooms).
    ByRoom { rooms: usize },
}

impl Spread {
    /// The URL of connection `index` out of `urls` (at least 1).
    pub fn url_of(self, index: usize, urls: usize) -> usize {
        match self {
            Spread::RoundRobin => index % urls,
            Spread::ByRoom { rooms } => (index / rooms + index % rooms) % urls,
        }
    }

    /// How many of `connections` go to each of `urls`.
    pub fn counts(self, connections: usize, urls: usize) -> Vec<usize> {
        let mut counts = vec![0; urls];
        for index in 0..connections {
            counts[self.url_of(index, urls)] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_sends_connection_i_to_url_i_mod_n() {
        let urls: Vec<usize> = (0..7).map(|i| Spread::RoundRobin.url_of(i, 3)).collect();
        assert_eq!(urls, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(Spread::RoundRobin.counts(7, 3), [3, 2, 2]);
        assert_eq!(Spread::RoundRobin.counts(5, 1), [5]);
    }

    #[test]
    fn by_room_puts_members_of_every_room_on_every_url() {
        // 2 URLs, 10 rooms of 4: connection i is in room i % 10.
        let spread = Spread::ByRoom { rooms: 10 };
        for room in 0..10 {
            let urls: Vec<usize> = (0..4).map(|k| spread.url_of(k * 10 + room, 2)).collect();
            assert_eq!(urls.iter().filter(|&&u| u == 0).count(), 2, "room {room}");
            assert_eq!(urls.iter().filter(|&&u| u == 1).count(), 2, "room {room}");
        }
        assert_eq!(spread.counts(40, 2), [20, 20]);
        // Plain round-robin would have kept each of these rooms on one URL.
        let room_3: Vec<usize> = (0..4)
            .map(|k| Spread::RoundRobin.url_of(k * 10 + 3, 2))
            .collect();
        assert_eq!(room_3, [1, 1, 1, 1]);
    }

    #[test]
    fn by_room_with_fewer_rooms_than_urls_still_reaches_them_all() {
        let spread = Spread::ByRoom { rooms: 1 };
        assert_eq!(spread.counts(6, 3), [2, 2, 2]);
        let spread = Spread::ByRoom { rooms: 2 };
        assert_eq!(spread.counts(4, 4), [1, 2, 1, 0]);
        assert_eq!(spread.counts(8, 4), [2, 2, 2, 2]);
    }
}
