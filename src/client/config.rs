//! Every knob of the client, its default and what it costs: timeouts of one connection
//! ([`ConnectOptions`]) and the reconnect policy ([`ReconnectPolicy`]). Validated once,
//! when a client starts. It does nothing by itself.

use std::time::Duration;

use super::error::ClientError;

/// Timeouts and limits of one connection.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectOptions {
    /// TCP connect, per resolved address. Default 10 s. Lower it to fail over faster
    /// when a host is down rather than refusing.
    pub connect_timeout: Duration,
    /// The upgrade response and then the `welcome` message, each. Default 10 s.
    pub handshake_timeout: Duration,
    /// One blocked write (the server stopped reading) before the connection is given
    /// up. Default 10 s.
    pub write_timeout: Duration,
    /// Silence from the server before we send a ping. Default 20 s: under the
    /// server's default 30 s ping interval and 75 s idle timeout, so a quiet client
    /// keeps its connection without the server's help.
    pub ping_after: Duration,
    /// Further silence after our ping before the connection counts as dead
    /// ([`super::Phase::Keepalive`]). Default 20 s. A dead peer is noticed within
    /// `ping_after + pong_timeout`.
    pub pong_timeout: Duration,
    /// Wait for the server's close frame and end of stream after ours. Default 5 s.
    pub close_timeout: Duration,
    /// Largest message accepted from the server; a larger one closes the connection
    /// with 1009. Default 16 MiB (the server accepts 1 MiB per message by default, and
    /// relays it with a few dozen bytes around it). Memory is only used as messages
    /// arrive.
    pub max_message_bytes: usize,
    /// wss:// only: PEM file of the certificates to trust (e.g. a self-signed server's
    /// own). Default `None`: the Mozilla roots bundled with webpki-roots.
    pub tls_ca: Option<std::path::PathBuf>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            ping_after: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(20),
            close_timeout: Duration::from_secs(5),
            max_message_bytes: 16 << 20,
            tls_ca: None,
        }
    }
}

impl ConnectOptions {
    pub fn validate(&self) -> Result<(), ClientError> {
        let all = [
            self.connect_timeout,
            self.handshake_timeout,
            self.write_timeout,
            self.ping_after,
            self.pong_timeout,
            self.close_timeout,
        ];
        if all.iter().any(Duration::is_zero) {
            return Err(ClientError::InvalidConfig(
                "every timeout must be above zero",
            ));
        }
        if self.max_message_bytes == 0 {
            return Err(ClientError::InvalidConfig(
                "max_message_bytes must be above zero",
            ));
        }
        Ok(())
    }
}

/// When to try again after a connection failed or was lost: exponential backoff with
/// full jitter. Attempt `n` (from 1) waits a uniformly random time between zero and
/// `min(max, base * factor^(n-1))`, so clients that lost the same server spread out
/// instead of returning together.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectPolicy {
    /// Ceiling of the first wait. Default 0.5 s.
    pub base: Duration,
    /// Growth of the ceiling per attempt, at least 1. Default 2.
    pub factor: f64,
    /// Largest ceiling. Default 30 s.
    pub max: Duration,
    /// A connection that stayed up this long resets the backoff: the next loss
    /// starts again from `base`. Default 30 s (the largest wait): a server that
    /// accepts and then drops at once is not hammered at `base`.
    pub reset_after: Duration,
    /// Give up after this many failed attempts in a row. Default `None`: never.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            base: Duration::from_millis(500),
            factor: 2.0,
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    pub fn validate(&self) -> Result<(), ClientError> {
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(ClientError::InvalidConfig(
                "backoff factor must be a finite number of at least 1",
            ));
        }
        if self.max < self.base {
            return Err(ClientError::InvalidConfig(
                "backoff maximum must be at least its base",
            ));
        }
        Ok(())
    }
}

/// Configuration of a [`super::Client`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientConfig {
    pub connect: ConnectOptions,
    /// `None`: do not reconnect; the client stops when its connection fails or ends.
    /// Default: [`ReconnectPolicy::default`].
    pub reconnect: Option<ReconnectPolicy>,
    /// Seed of the backoff jitter. Default `None`: seeded from the operating
    /// system's random source. Set it to replay a schedule (tests).
    pub jitter_seed: Option<u64>,
}

impl ClientConfig {
    /// The defaults, with reconnecting on.
    pub fn reconnecting() -> Self {
        ClientConfig {
            reconnect: Some(ReconnectPolicy::default()),
            ..ClientConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), ClientError> {
        self.connect.validate()?;
        if let Some(policy) = &self.reconnect {
            policy.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_reconnect_from_half_a_second_to_thirty() {
        let config = ClientConfig::reconnecting();
        config.validate().unwrap();
        let policy = config.reconnect.unwrap();
        assert_eq!(policy.base, Duration::from_millis(500));
        assert_eq!(policy.max, Duration::from_secs(30));
    }

    #[test]
    fn bad_knobs_are_refused() {
        let policy = ReconnectPolicy {
            factor: 0.5,
            ..ReconnectPolicy::default()
        };
        assert!(policy.validate().is_err());
        let policy = ReconnectPolicy {
            max: Duration::from_millis(10),
            ..ReconnectPolicy::default()
        };
        assert!(policy.validate().is_err());
        let options = ConnectOptions {
            pong_timeout: Duration::ZERO,
            ..ConnectOptions::default()
        };
        assert!(options.validate().is_err());
    }
}
