//! The server's logs: levelled events through `tracing`, filtered by `RUST_LOG`
//! (default `info`; e.g. `RUST_LOG=ringcast=debug` or `RUST_LOG=warn`), written to
//! stderr as text, or as one JSON object per line (`--log-json`, or
//! `RINGCAST_LOG_FORMAT=json`) for log shippers. The client and load commands print
//! to the terminal instead; they are tools, not the server.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// JSON when asked for by flag or by `RINGCAST_LOG_FORMAT=json`.
    pub fn choose(json_flag: bool) -> LogFormat {
        let from_env =
            std::env::var("RINGCAST_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
        if json_flag || from_env {
            LogFormat::Json
        } else {
            LogFormat::Text
        }
    }
}

/// Installs the process's log subscriber (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
