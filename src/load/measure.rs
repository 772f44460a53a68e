//! What the load tool reads about a server process from /proc: CPU time (stat) and
//! resident memory (status). Parsers are separate from the reads so they can be
//! tested on text. Its own CPU time and other system calls are in `sys.rs`.

use std::io;
use std::time::Duration;

/// Errors reading a server process's figures.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("no process {0} (--server-pid): is the server running?")]
    NoSuchProcess(u32),
    #[error("cannot read /proc/{pid}/{file}: {source}")]
    Read {
        pid: u32,
        file: &'static str,
        source: io::Error,
    },
    #[error("unexpected format in /proc/{pid}/{file}")]
    Format { pid: u32, file: &'static str },
}

fn read_proc(pid: u32, file: &'static str) -> Result<String, ProcError> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            ProcError::NoSuchProcess(pid)
        } else {
            ProcError::Read { pid, file, source }
        }
    })
}

/// CPU time (user + system) process `pid` has used so far, all threads.
pub fn process_cpu_time(pid: u32) -> Result<Duration, ProcError> {
    let stat = read_proc(pid, "stat")?;
    let ticks = parse_stat_ticks(&stat).ok_or(ProcError::Format { pid, file: "stat" })?;
    let hz = super::sys::clock_ticks_per_second();
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// utime + stime in clock ticks, from the text of /proc/PID/stat. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after the last ')'.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    // After the name come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of process `pid`, in bytes.
pub fn process_rss(pid: u32) -> Result<u64, ProcError> {
    let status = read_proc(pid, "status")?;
    parse_vm_rss(&status).ok_or(ProcError::Format {
        pid,
        file: "status",
    })
}

/// The `VmRSS:` line of /proc/PID/status, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_ascii_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_a_command_name_with_spaces_and_parens() {
        let stat = "4242 (my (odd) srv) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 3 0 \
                    100 123456789 900 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
    }

    #[test]
    fn stat_ticks_of_garbage_is_none() {
        assert_eq!(parse_stat_ticks("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat_ticks("no parens at all"), None);
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tringcast\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(5120 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn own_process_figures_are_readable() {
        let pid = std::process::id();
        assert!(process_rss(pid).unwrap() > 0);
        process_cpu_time(pid).unwrap();
        assert!(matches!(
            process_cpu_time(u32::MAX),
            Err(ProcError::NoSuchProcess(_))
        ));
    }
}
