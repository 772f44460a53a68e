//! `ws://` URLs: the host to connect to, the port, and the request target for the
//! upgrade; and the order in which a client with several URLs tries them. It resolves
//! nothing and opens nothing; `conn.rs` does.

use super::error::ClientError;

/// A parsed `ws://HOST[:PORT][/PATH][?QUERY]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsUrl {
    /// The host as written, without IPv6 brackets: a name or an IP literal.
    pub host: String,
    pub port: u16,
    /// The request target of the upgrade: path and query, at least `/`.
    pub path: String,
    /// `wss://`: TLS to the server (default port 443).
    pub tls: bool,
}

impl WsUrl {
    /// Parses `url`: `ws://` or `wss://` (TLS).
    pub fn parse(url: &str) -> Result<WsUrl, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected ws://HOST[:PORT][/PATH]"))?;
        let tls = scheme.eq_ignore_ascii_case("wss");
        if !tls && !scheme.eq_ignore_ascii_case("ws") {
            return Err(invalid("the scheme must be ws:// or wss://"));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        // A fragment is never sent (RFC 6455 §3).
        let target = target.split('#').next().unwrap_or_default();
        let path = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        if authority.contains('@') {
            return Err(invalid("user information in the URL is not supported"));
        }
        let (host, port) = split_host_port(authority).map_err(invalid)?;
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        Ok(WsUrl {
            host: host.to_string(),
            port: port.unwrap_or(if tls { 443 } else { 80 }),
            path,
            tls,
        })
    }

    /// The `Host` header value (RFC 7230 §5.4): brackets for IPv6, the port unless 80.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Display for WsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}

/// The URLs of a client with several (the nodes of a cluster), taken in turn: the
/// first for the first attempt, then the next one for each later attempt, wrapping
/// around, so a client whose node died tries another node next.
#[derive(Clone, Debug)]
pub(super) struct Rotation {
    urls: Vec<WsUrl>,
    /// Index of the URL the next attempt uses.
    next: usize,
}

impl Rotation {
    /// Parses every URL up front: the first bad one is the error (naming it). An empty
    /// list is [`ClientError::InvalidConfig`].
    pub fn parse<I, S>(urls: I) -> Result<Rotation, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let urls = urls
            .into_iter()
            .map(|url| WsUrl::parse(url.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(ClientError::InvalidConfig("no URL to connect to"));
        }
        Ok(Rotation { urls, next: 0 })
    }

    /// The URL for this attempt; the following attempt gets the one after it.
    pub fn next_url(&mut self) -> &WsUrl {
        let index = self.next;
        self.next = (index + 1) % self.urls.len();
        &self.urls[index]
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed [ in the host")?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or("junk after ]")?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return Err("an IPv6 address must be in brackets"),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or("the port must be a number from 1 to 65535")?,
        ),
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> WsUrl {
        WsUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn host_port_and_path_are_taken_apart() {
        let url = parse("ws://127.0.0.1:9001/chat?x=1#frag");
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("127.0.0.1", 9001, "/chat?x=1")
        );
        assert_eq!(url.host_header(), "127.0.0.1:9001");
        assert_eq!(url.to_string(), "ws://127.0.0.1:9001/chat?x=1");
    }

    #[test]
    fn defaults_are_port_80_and_path_slash() {
        let url = parse("WS://example.com");
        assert_eq!((url.port, url.path.as_str()), (80, "/"));
        assert_eq!(url.host_header(), "example.com");
        assert_eq!(parse("ws://h?q").path, "/?q");
    }

    #[test]
    fn ipv6_literals_need_brackets() {
        let url = parse("ws://[::1]:8080/");
        assert_eq!((url.host.as_str(), url.port), ("::1", 8080));
        assert_eq!(url.host_header(), "[::1]:8080");
        assert_eq!(parse("ws://[::1]").host_header(), "[::1]");
        assert!(WsUrl::parse("ws://::1:80/").is_err());
    }

    #[test]
    fn wss_means_tls_on_port_443_by_default() {
        let url = parse("wss://example.com/chat");
        assert!(url.tls);
        assert_eq!(
            (url.port, url.host_header()),
            (443, "example.com".to_string())
        );
        assert_eq!(url.to_string(), "wss://example.com/chat");
        let url = parse("WSS://example.com:8443");
        assert_eq!(url.host_header(), "example.com:8443");
        assert!(!parse("ws://example.com/").tls);
    }

    fn order(rotation: &mut Rotation, attempts: usize) -> Vec<String> {
        (0..attempts)
            .map(|_| rotation.next_url().to_string())
            .collect()
    }

    #[test]
    fn several_urls_are_tried_in_turn_starting_with_the_first() {
        let mut rotation = Rotation::parse(["ws://a:1/", "ws://b:2/", "ws://c:3/"]).unwrap();
        assert_eq!(
            order(&mut rotation, 7),
            [
                "ws://a:1/",
                "ws://b:2/",
                "ws://c:3/",
                "ws://a:1/",
                "ws://b:2/",
                "ws://c:3/",
                "ws://a:1/"
            ]
        );
        let mut one = Rotation::parse(vec![String::from("ws://only:9/")]).unwrap();
        assert_eq!(order(&mut one, 3), ["ws://only:9/"; 3]);
    }

    #[test]
    fn a_bad_url_in_a_list_is_named_and_an_empty_list_refused() {
        match Rotation::parse(["ws://a:1/", "ws://b:port/", "http://c/"]) {
            Err(ClientError::InvalidUrl { url, .. }) => assert_eq!(url, "ws://b:port/"),
            other => panic!("{other:?}"),
        }
        assert!(Rotation::parse(["ws://a:1/", "wss://b/"]).is_ok());
        assert!(matches!(
            Rotation::parse(Vec::<&str>::new()),
            Err(ClientError::InvalidConfig(_))
        ));
    }

    #[test]
    fn malformed_urls_say_what_is_wrong() {
        for url in [
            "127.0.0.1:80",
            "http://x/",
            "ws://",
            "ws://:80",
            "ws://h:0",
            "ws://h:99999",
            "ws://h:port",
            "ws://u@h/",
            "ws://[::1",
        ] {
            match WsUrl::parse(url) {
                Err(ClientError::InvalidUrl { reason, .. }) => assert!(!reason.is_empty()),
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
