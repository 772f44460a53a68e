//! `ws://` URLs: the host to connect to, the port, and the request target for the
//! upgrade. It resolves nothing and opens nothing; `conn.rs` does.

use super::error::ClientError;

/// A parsed `ws://HOST[:PORT][/PATH][?QUERY]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsUrl {
    /// The host as written, without IPv6 brackets: a name or an IP literal.
    pub host: String,
    pub port: u16,
    /// The request target of the upgrade: path and query, at least `/`.
    pub path: String,
}

impl WsUrl {
    /// Parses `url`. `wss://` is refused with [`ClientError::TlsNotSupported`]: TLS has
    /// not landed yet.
    pub fn parse(url: &str) -> Result<WsUrl, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected ws://HOST[:PORT][/PATH]"))?;
        if scheme.eq_ignore_ascii_case("wss") {
            return Err(ClientError::TlsNotSupported);
        }
        if !scheme.eq_ignore_ascii_case("ws") {
            return Err(invalid("the scheme must be ws://"));
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
            port: port.unwrap_or(80),
            path,
        })
    }

    /// The `Host` header value (RFC 7230 §5.4): brackets for IPv6, the port unless 80.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Display for WsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ws://{}{}", self.host_header(), self.path)
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
    fn wss_is_refused_with_its_own_error() {
        assert!(matches!(
            WsUrl::parse("wss://example.com/"),
            Err(ClientError::TlsNotSupported)
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
