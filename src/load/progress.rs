//! The live progress line on stderr (only when stderr is a terminal and neither
//! `--json` nor `--quiet` is given): phase, elapsed time, rate, connections open and dropped.

use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

/// Counts summed over the tool's threads at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub sent: u64,
    pub received: u64,
    pub dropped: u64,
    pub opened: u64,
}

/// The live status line, on stderr when it is a terminal.
pub struct Progress {
    enabled: bool,
    last: Option<(Instant, u64)>,
    last_print: Instant,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        Progress {
            enabled: enabled && std::io::stderr().is_terminal(),
            last: None,
            last_print: Instant::now(),
        }
    }

    /// Prints at most once a second: what is happening, the rate of `unit` (the
    /// scenario's count, or connections opened when `None`) since the last line,
    /// connections open and dropped.
    pub(super) fn tick(&mut self, t: Totals, label: &str, unit: Option<&str>, started: Instant) {
        if !self.enabled || self.last_print.elapsed() < Duration::from_secs(1) {
            return;
        }
        let now = Instant::now();
        let count = if unit.is_some() { t.received } else { t.opened };
        let rate = match self.last {
            Some((at, before)) => {
                count.saturating_sub(before) as f64 / now.duration_since(at).as_secs_f64()
            }
            None => count as f64 / started.elapsed().as_secs_f64(),
        };
        self.last = Some((now, count));
        self.last_print = now;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K{label} {:>5.1}s  {rate:>11.0} {}/s  open {}  dropped {}",
            started.elapsed().as_secs_f64(),
            unit.unwrap_or("connections"),
            t.opened - t.dropped,
            t.dropped,
        );
        let _ = err.flush();
    }

    pub fn finish(&mut self) {
        if self.enabled && self.last.is_some() {
            eprint!("\r\x1b[K");
            self.last = None;
        }
    }
}
