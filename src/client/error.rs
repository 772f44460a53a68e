//! What can go wrong for a client, one variant per cause, each saying what happened
//! and what to do about it. It decides nothing: the reconnect loop reads
//! [`ClientError::is_permanent`] to decide whether retrying can help.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::ws::handshake::UpgradeRejected;
use crate::ws::ProtocolError;

/// What the client was doing when a deadline passed or an I/O call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Handshake,
    Welcome,
    /// Waiting for anything from the server after a keepalive ping.
    Keepalive,
    Reading,
    Sending,
    Closing,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connecting => "connecting",
            Phase::Handshake => "waiting for the upgrade response",
            Phase::Welcome => "waiting for the welcome message",
            Phase::Keepalive => "waiting for the server to answer a ping",
            Phase::Reading => "reading from the server",
            Phase::Sending => "sending to the server",
            Phase::Closing => "waiting for the server to answer our close",
        })
    }
}

/// Why a connection could not be made, or ended.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid client configuration: {0}")]
    InvalidConfig(&'static str),
    #[error("TLS setup failed: {0}")]
    TlsSetup(String),
    #[error("cannot resolve host `{host}`: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("connection refused by {addr}: is the server running there?")]
    Refused { addr: SocketAddr },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("timed out after {after:?} {during}")]
    TimedOut { during: Phase, after: Duration },
    #[error("the server rejected the WebSocket upgrade with HTTP status {status}")]
    HandshakeRejected { status: u16 },
    #[error("the server's upgrade response is unusable: {0}")]
    BadHandshake(UpgradeRejected),
    #[error(
        "the server did not start with a welcome message (is it a room server?); it sent: {0}"
    )]
    NoWelcome(String),
    #[error(
        "the server closed the connection with code {code}{}",
        reason_suffix(reason)
    )]
    Closed { code: u16, reason: String },
    #[error("the server ended the connection without a close frame")]
    ConnectionLost,
    #[error("the server broke the WebSocket protocol, so we closed the connection: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("I/O error {during}: {source}")]
    Io { during: Phase, source: io::Error },
    #[error("the operating system's secure random number generator failed: {0}")]
    Random(getrandom::Error),
    #[error("the connection is closed: nothing more can be sent on it")]
    NotConnected,
    #[error("the client has stopped")]
    Stopped,
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

impl ClientError {
    /// Whether retrying the same URL cannot help (a bad URL, an unsupported scheme, a
    /// broken random number generator).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ClientError::InvalidUrl { .. }
                | ClientError::InvalidConfig(_)
                | ClientError::TlsSetup(_)
                | ClientError::Random(_)
        )
    }

    /// Maps an I/O error during `phase`: timeouts and resets get their own variants.
    pub(crate) fn io(during: Phase, after: Duration, source: io::Error) -> ClientError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                ClientError::TimedOut { during, after }
            }
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => ClientError::ConnectionLost,
            _ => ClientError::Io { during, source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause() {
        let closed = ClientError::Closed {
            code: 1001,
            reason: "shutting down".into(),
        };
        assert_eq!(
            closed.to_string(),
            "the server closed the connection with code 1001 (shutting down)"
        );
        let bare = ClientError::Closed {
            code: 1005,
            reason: String::new(),
        };
        assert!(bare.to_string().ends_with("code 1005"));
        let timeout = ClientError::io(
            Phase::Handshake,
            Duration::from_secs(2),
            io::ErrorKind::WouldBlock.into(),
        );
        assert_eq!(
            timeout.to_string(),
            "timed out after 2s waiting for the upgrade response"
        );
        assert!(matches!(
            ClientError::io(
                Phase::Reading,
                Duration::ZERO,
                io::ErrorKind::ConnectionReset.into()
            ),
            ClientError::ConnectionLost
        ));
        assert_eq!(
            ClientError::HandshakeRejected { status: 404 }.to_string(),
            "the server rejected the WebSocket upgrade with HTTP status 404"
        );
    }

    #[test]
    fn only_configuration_errors_are_permanent() {
        assert!(ClientError::TlsSetup("bad CA file".into()).is_permanent());
        assert!(!ClientError::ConnectionLost.is_permanent());
        assert!(!ClientError::HandshakeRejected { status: 503 }.is_permanent());
    }
}
