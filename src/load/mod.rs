//! `ringcast load`: the load generator. It drives a WebSocket server on loopback with
//! the project's own codec in the client role, from pinned monoio runtimes, for a
//! bounded time, and reports rates, latency percentiles, CPU used on both sides and
//! correctness (loss, duplicates, drops). It never talks to anything off the machine.
//!
//! Layout:
//! - `args`: the command line and its validation into a `Plan`.
//! - `target`: the URLs, and which one each connection goes to when there are several.
//! - `driver`: load threads, the shared phase, counters, bounded waits.
//! - `client`: one connection: connect, upgrade, frame reader, outbox and writer.
//! - `echo`, `broadcast`, `rooms`, `connect`: the scenarios (`rooms` has its own
//!   bookkeeping and wire modules).
//! - `churn`: short-lived clients on blocking sockets, the background of a soak test.
//! - `payload`: what the tool writes inside messages to account for them.
//! - `accounting`, `histogram`: exactly-once bookkeeping and latency percentiles.
//! - `measure`, `sys`: /proc figures of the server, and the tool's own syscalls.
//! - `report`: the summary and the JSON line.

mod accounting;
mod args;
mod broadcast;
mod checks;
mod churn;
mod client;
mod connect;
mod driver;
mod echo;
mod error;
mod histogram;
mod measure;
mod open;
mod payload;
mod progress;
mod report;
mod rooms;
mod sys;
mod target;
mod tls;

pub use accounting::Tally;
pub use args::{LoadArgs, Scenario};
pub use churn::ChurnCounts;
pub use error::RunError;
pub use histogram::Percentiles;
pub use report::Report;
pub use rooms::RoomChecks;

/// How a load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("the run found problems: {}", .0.join("; "))]
    Problems(Vec<String>),
}

/// Runs `ringcast load`: prints the summary (or the JSON line with `--json`) and fails
/// if the run could not be made or found loss, duplicates, mismatches or drops.
pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let json = args.json;
    let report = run_report(args)?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.summary());
    }
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Problems(report.problems).into())
    }
}

/// Makes a run and returns its report without printing it (for tests and tools).
/// `Err` only when the run could not be made; what it found is in `Report::problems`.
pub fn run_report(args: LoadArgs) -> Result<Report, LoadError> {
    let fd_limit = sys::raise_fd_limit();
    let plan = args::Plan::new(args, fd_limit).map_err(LoadError::Usage)?;
    if let Some(pid) = plan.server_pid {
        measure::process_cpu_time(pid).map_err(RunError::from)?;
    }
    let scenario = plan.scenario;
    let shared = driver::Shared::new(plan);
    match scenario {
        Scenario::Echo => echo::run(shared),
        Scenario::Broadcast => broadcast::run(shared),
        Scenario::Rooms => rooms::run(shared),
        Scenario::Connect => connect::run(shared),
        Scenario::Churn => churn::run(shared.plan.clone()),
    }
    .map_err(LoadError::Run)
}
