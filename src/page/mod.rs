//! The server's own page at `GET /`: a room client (join and leave rooms, room,
//! private and broadcast messages, a nickname, reconnects with backoff and history
//! recovery) and a live panel of the server's cores from `/metrics`. Embedded at
//! build time (no CDN, no build step); `page = false` (`--no-page`) turns it off.
//! Relayed text is only ever set as `textContent`; every answer carries a strict
//! `Content-Security-Policy` (scripts and styles from this server only, no inline
//! code, connections to this origin only) and `X-Content-Type-Options: nosniff`.

/// One of the page's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asset {
    Index,
    Script,
    Style,
    Icon,
}

impl Asset {
    /// The asset a request path names, if any (`/` and `/index.html` are the page).
    pub fn for_path(path: &str) -> Option<Asset> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        match path {
            "/" | "/index.html" => Some(Asset::Index),
            "/app.js" => Some(Asset::Script),
            "/app.css" => Some(Asset::Style),
            "/favicon.svg" | "/favicon.ico" => Some(Asset::Icon),
            _ => None,
        }
    }

    fn body_and_type(self) -> (&'static str, &'static str) {
        match self {
            Asset::Index => (include_str!("index.html"), "text/html; charset=utf-8"),
            Asset::Script => (include_str!("app.js"), "text/javascript; charset=utf-8"),
            Asset::Style => (include_str!("app.css"), "text/css; charset=utf-8"),
            Asset::Icon => (include_str!("favicon.svg"), "image/svg+xml"),
        }
    }
}

/// What the page may load and connect to: this origin only, nothing inline.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The whole HTTP answer for `asset` (then the connection closes).
pub fn response(asset: Asset) -> Vec<u8> {
    let (body, kind) = asset.body_and_type();
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Content-Security-Policy: {CONTENT_SECURITY_POLICY}\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_pages_files_and_nothing_else() {
        assert_eq!(Asset::for_path("/"), Some(Asset::Index));
        assert_eq!(Asset::for_path("/?room=x"), Some(Asset::Index));
        assert_eq!(Asset::for_path("/app.js"), Some(Asset::Script));
        assert_eq!(Asset::for_path("/app.css"), Some(Asset::Style));
        for other in ["/chat", "/app.js/", "/../etc/passwd", "/APP.JS", ""] {
            assert_eq!(Asset::for_path(other), None, "{other}");
        }
    }

    #[test]
    fn every_answer_is_complete_and_carries_the_security_headers() {
        for asset in [Asset::Index, Asset::Script, Asset::Style, Asset::Icon] {
            let text = String::from_utf8(response(asset)).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
            assert!(head.contains(&format!("Content-Length: {}", body.len())));
            assert!(head.contains("X-Content-Type-Options: nosniff"));
            assert!(
                head.contains("Content-Security-Policy: default-src 'none'; script-src 'self';")
            );
        }
    }

    #[test]
    fn the_page_never_writes_relayed_text_as_html() {
        let (script, _) = Asset::Script.body_and_type();
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!script.contains(sink), "app.js uses {sink}");
        }
        let (index, _) = Asset::Index.body_and_type();
        for test_id in [
            "room-input",
            "join-button",
            "message-input",
            "send-button",
            "messages",
        ] {
            assert!(
                index.contains(&format!("data-testid=\"{test_id}\"")),
                "{test_id}"
            );
        }
        assert!(
            !index.contains("<script>"),
            "no inline script (the CSP forbids it)"
        );
    }
}
