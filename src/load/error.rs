//! Why a load run could not be made, typed (what a run *found*, loss or duplicates, is
//! the report's `problems`, not an error).

use std::time::Duration;

use super::client::ConnectError;
use super::measure::ProcError;

/// A load run that could not be made or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start a load thread: {0}")]
    Spawn(std::io::Error),
    #[error("cannot pin a load thread to CPU {cpu}: {source}")]
    Pin { cpu: usize, source: std::io::Error },
    #[error("cannot start a monoio runtime: {0}")]
    Runtime(std::io::Error),
    /// Reading the server's (or the tool's) figures from /proc failed.
    #[error(transparent)]
    Measure(#[from] ProcError),
    /// A connection failed where every connection must succeed.
    #[error("connection {index}: {source}")]
    Connection { index: usize, source: ConnectError },
    #[error("only {opened} of {wanted} connections opened in time")]
    NotOpened { opened: u64, wanted: usize },
    #[error(
        "rooms did not fill within {timeout:?} (--join-timeout): of {connections} connections, \
         {welcomed} got a welcome, {joined} got room_joined, {full} saw their room full; is the \
         server speaking the room protocol (--app rooms)?"
    )]
    RoomsNotFilled {
        timeout: Duration,
        connections: usize,
        welcomed: usize,
        joined: usize,
        full: usize,
    },
    #[error(
        "only {synced} of {connections} connections received the sync message within \
         {timeout:?}: does the server relay every message to every connection (--app broadcast)?"
    )]
    NotSynced {
        synced: usize,
        connections: usize,
        timeout: Duration,
    },
    /// The connect scenario opened nothing; the first connection's failure, if any.
    #[error("no connection opened{}", .first_failure.as_ref().map(|f| format!(" (first: {f})")).unwrap_or_default())]
    NoConnection { first_failure: Option<String> },
    #[error("load threads did not finish within {0:?} after the run")]
    NotStopped(Duration),
    #[error("a load thread panicked")]
    Panicked,
    /// Another thread stopped the run (its error is the one reported).
    #[error("the run was aborted")]
    Aborted,
}
