//! The link's Redis plumbing: the `redis://` URL, commands written straight into a
//! buffer (RESP arrays of bulk strings), and a blocking RESP3 connection for setting
//! up a session. Replies are decoded by the `redis-protocol` crate (sans-IO).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::BytesMut;
use redis_protocol::resp3::decode::complete::decode_bytes_mut;
use redis_protocol::resp3::types::BytesFrame;

use super::ClusterError;

/// Where Redis is: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl RedisUrl {
    pub fn parse(text: &str) -> Result<RedisUrl, ClusterError> {
        let bad = |why: &str| ClusterError::Url(format!("{text:?}: {why}"));
        let rest = match text.split_once("://") {
            Some(("redis", rest)) => rest,
            Some(("rediss", _)) => return Err(bad("TLS to Redis (rediss://) is not supported")),
            _ => return Err(bad("expected redis://HOST[:PORT][/DB]")),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (username, password) = match userinfo.map(|u| u.split_once(':')) {
            None => (None, None),
            Some(None) => (None, userinfo.map(String::from)),
            Some(Some((user, password))) => (
                (!user.is_empty()).then(|| user.to_string()),
                Some(password.to_string()),
            ),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || hostport.starts_with('[') => {
                let port = port.parse().map_err(|_| bad("bad port"))?;
                (host, port)
            }
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let db = match path.trim_end_matches('/') {
            "" => 0,
            db => db
                .parse()
                .map_err(|_| bad("the database must be a number"))?,
        };
        Ok(RedisUrl {
            host: host.to_string(),
            port,
            username,
            password,
            db,
        })
    }
}

/// Appends one command, each argument the concatenation of its parts (so a payload
/// made of a header and a frame is written without joining them first).
pub fn put_command(buf: &mut BytesMut, args: &[&[&[u8]]]) {
    buf.extend_from_slice(b"*");
    put_decimal(buf, args.len());
    buf.extend_from_slice(b"\r\n");
    for parts in args {
        buf.extend_from_slice(b"$");
        put_decimal(buf, parts.iter().map(|p| p.len()).sum());
        buf.extend_from_slice(b"\r\n");
        for part in *parts {
            buf.extend_from_slice(part);
        }
        buf.extend_from_slice(b"\r\n");
    }
}

/// A command whose arguments are each one slice.
pub fn put_simple(buf: &mut BytesMut, args: &[&[u8]]) {
    let parts: Vec<[&[u8]; 1]> = args.iter().map(|a| [*a]).collect();
    let args: Vec<&[&[u8]]> = parts.iter().map(|p| &p[..]).collect();
    put_command(buf, &args);
}

pub fn put_decimal(buf: &mut BytesMut, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

/// Decodes one whole frame from the front of `buf`, if there is one.
pub fn decode(buf: &mut BytesMut) -> Result<Option<BytesFrame>, ClusterError> {
    match decode_bytes_mut(buf) {
        Ok(Some((frame, _, _))) => Ok(Some(frame)),
        Ok(None) => Ok(None),
        Err(e) => Err(ClusterError::Protocol(e.to_string())),
    }
}

/// A frame's error text, if it is an error.
pub fn error_text(frame: &BytesFrame) -> Option<String> {
    match frame {
        BytesFrame::SimpleError { data, .. } => Some(data.to_string()),
        BytesFrame::BlobError { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
        _ => None,
    }
}

/// A blocking RESP3 connection, for a session's set-up; the link then splits the
/// socket between a writer and a reader thread.
pub struct RespConn {
    pub stream: TcpStream,
    pub read_buf: BytesMut,
}

impl RespConn {
    /// Connects (within `timeout`), switches to RESP3 (authenticating if the URL has
    /// a password) and selects the database.
    pub fn connect(url: &RedisUrl, timeout: Duration) -> Result<RespConn, ClusterError> {
        let unreachable = |e: std::io::Error| ClusterError::Unreachable {
            addr: format!("{}:{}", url.host, url.port),
            reason: e.to_string(),
        };
        let addrs = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(unreachable)?;
        let mut last = std::io::Error::other("the host has no address");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or(last).map_err(unreachable)?;
        stream.set_nodelay(true).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(unreachable)?;
        let mut conn = RespConn {
            stream,
            read_buf: BytesMut::with_capacity(64 * 1024),
        };
        let user = url.username.as_deref().unwrap_or("default");
        match &url.password {
            Some(password) => conn.call(&[
                b"HELLO",
                b"3",
                b"AUTH",
                user.as_bytes(),
                password.as_bytes(),
            ])?,
            None => conn.call(&[b"HELLO", b"3"])?,
        };
        if url.db != 0 {
            conn.call(&[b"SELECT", url.db.to_string().as_bytes()])?;
        }
        Ok(conn)
    }

    /// Sends one command and waits for its reply; a Redis error is an error.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<BytesFrame, ClusterError> {
        let mut buf = BytesMut::new();
        put_simple(&mut buf, args);
        self.stream.write_all(&buf).map_err(ClusterError::Io)?;
        loop {
            let frame = self.read_frame()?;
            if matches!(frame, BytesFrame::Push { .. }) {
                continue; // a subscription confirmation, not this reply
            }
            return match error_text(&frame) {
                Some(text) => Err(ClusterError::Redis(text)),
                None => Ok(frame),
            };
        }
    }

    fn read_frame(&mut self) -> Result<BytesFrame, ClusterError> {
        loop {
            if let Some(frame) = decode(&mut self.read_buf)? {
                return Ok(frame);
            }
            self.read_buf.reserve(16 * 1024);
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).map_err(ClusterError::Io)?;
            if n == 0 {
                return Err(ClusterError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.read_buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_credentials_and_database() {
        let url = RedisUrl::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.db),
            ("127.0.0.1", 6380, 2)
        );
        assert_eq!((url.username, url.password), (None, None));
        let url = RedisUrl::parse("redis://:s3cret@redis.internal").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.db),
            ("redis.internal", 6379, 0)
        );
        assert_eq!(url.password.as_deref(), Some("s3cret"));
        let url = RedisUrl::parse("redis://app:pw@[::1]:7000/").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 7000));
        assert_eq!(url.username.as_deref(), Some("app"));
        for bad in [
            "127.0.0.1:6379",
            "http://x",
            "rediss://x",
            "redis://x:port",
            "redis://x/db",
            "redis://",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings_made_of_parts() {
        let mut buf = BytesMut::new();
        put_command(&mut buf, &[&[b"PUBLISH"], &[b"ch"], &[b"M n\n", b"frame"]]);
        assert_eq!(
            &buf[..],
            b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$9\r\nM n\nframe\r\n"
        );
        let mut buf = BytesMut::new();
        put_decimal(&mut buf, 0);
        put_decimal(&mut buf, 1234567);
        assert_eq!(&buf[..], b"01234567");
    }
}
