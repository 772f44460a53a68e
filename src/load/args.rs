//! The command line of `ringcast load` and its validation into a [`Plan`]: every flag,
//! its default, and the checks that turn a bad invocation into a clear error before
//! any socket is opened. It does not run anything.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::target::{parse_target, Spread, Target, TlsClient};

/// Size of the accounting header in every broadcast message (and every rooms
/// `message` string): kind, publisher id, sequence number, send timestamp (see
/// `payload.rs`).
pub const BROADCAST_HEADER_LEN: usize = 41;

/// Highest `--rate` per publisher; a schedule finer than this is not a schedule.
const MAX_RATE: f64 = 10_000_000.0;

/// Longest run the tool agrees to: it must stop by itself.
const MAX_DURATION_S: f64 = 3600.0;

/// Most source addresses: 127.0.0.2 onwards, within 127.0.0.0/16.
const MAX_SOURCES: usize = 65_000;

/// File descriptors kept back for the runtime, stdio and /proc reads.
const FD_MARGIN: u64 = 64;

/// The workload to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// C connections, each keeping P messages of S bytes in flight; counts round trips.
    Echo,
    /// Against a server that relays every message to every connection (sender
    /// included): K publishers, exactly-once delivery to all C connections is checked.
    Broadcast,
    /// Against a room protocol server (PROTOCOL.md, `--app rooms`): C clients in R
    /// rooms, K publishers sending room messages; checks exactly-once, in-order
    /// delivery to every other member of the room.
    Rooms,
    /// Opens N idle WebSocket connections as fast as it can and holds them.
    Connect,
    /// Against a room protocol server: C worker threads run short-lived clients at
    /// --rate connections a second in all (join, talk, metadata, leave; then a clean
    /// close, a reset, a drop, or a half-open socket that never upgrades), sharing
    /// the first R rooms of a `rooms` run started with --guests; for --duration.
    Churn,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Echo => "echo",
            Scenario::Broadcast => "broadcast",
            Scenario::Rooms => "rooms",
            Scenario::Connect => "connect",
            Scenario::Churn => "churn",
        }
    }
}

/// Arguments of `ringcast load`.
#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The server, e.g. ws://127.0.0.1:8080/ (loopback addresses only). Give several,
    /// separated by spaces (the nodes of a cluster), to spread the connections over
    /// them round-robin: connection i goes to URL i % N (rooms: the members of each
    /// room go round-robin from the room's own starting URL, so every room spans the
    /// URLs).
    #[arg(value_name = "URL", required = true)]
    pub urls: Vec<String>,
    /// Connections to open.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub connections: usize,
    /// Seconds to measure (echo, broadcast), after all connections are up.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub duration: f64,
    /// Print one JSON line instead of the readable summary.
    #[arg(long)]
    pub json: bool,
    /// CPUs to run load threads on, one pinned thread each, e.g. `1` or `2,3` or `4-7`.
    /// Default: one thread, not pinned.
    #[arg(long, value_parser = parse_cpu_list)]
    pub cpus: Option<CpuList>,
    /// Message payload size in bytes (echo, broadcast), or length of the `message`
    /// string (rooms). Broadcast and rooms need at least 41.
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// Send binary messages instead of text.
    #[arg(long)]
    pub binary: bool,
    /// wss:// URLs: trust the certificates in this PEM file (e.g. the server's
    /// self-signed one) instead of the bundled Mozilla roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Messages in flight per connection (echo).
    #[arg(long, short = 'p', default_value_t = 1)]
    pub in_flight: usize,
    /// Connections that publish (broadcast, rooms); every connection receives.
    #[arg(long, short = 'k', default_value_t = 1)]
    pub publishers: usize,
    /// Messages a publisher may have sent but not yet received back itself (broadcast),
    /// or not yet delivered to every other member of its room (rooms).
    #[arg(long, short = 'w', default_value_t = 16)]
    pub window: usize,
    /// Rooms the connections are spread over, evenly (rooms); each needs 2 members or more.
    #[arg(long, short = 'r', default_value_t = 10)]
    pub rooms: usize,
    /// Messages per second per publisher on a fixed schedule (rooms), still within
    /// --window. Default: as fast as the window allows. Churn: connections a second
    /// in all (default 100).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Rooms: clients of other programs (`ringcast load churn`) may join, leave and
    /// talk in the rooms once they have filled; their notices are counted, not problems.
    #[arg(long)]
    pub guests: bool,
    /// Seconds every connection may take to join its room and see it full (rooms).
    /// A room of n members costs n(n-1)/2 member_joined notices.
    #[arg(long, default_value_t = 120.0)]
    pub join_timeout: f64,
    /// Spread connections over this many source addresses (127.0.0.2, .3, ...), binding
    /// each socket before connecting, to get past one address's ephemeral ports.
    /// Default: 32 for connect, the kernel's choice of 127.0.0.1 otherwise.
    #[arg(long)]
    pub sources: Option<usize>,
    /// Seconds to hold the connections open before measuring the server's memory (connect).
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    /// The server's process id: report its CPU time and (connect) memory per connection.
    /// With several URLs, the figures are that one process's.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Offer permessage-deflate (echo, broadcast, rooms): the server's compressed
    /// frames are inflated; what the clients send goes uncompressed.
    #[arg(long)]
    pub deflate: bool,
    /// Connections opened at once per load thread while connecting.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds a connection (TCP + upgrade) may take before the run fails.
    #[arg(long, default_value_t = 5.0)]
    pub connect_timeout: f64,
    /// Seconds to wait after the measured interval for messages still in flight.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Largest message accepted from the server, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_message: usize,
    /// No live progress line on stderr, even on a terminal.
    #[arg(long)]
    pub quiet: bool,
}

impl LoadArgs {
    /// Parses the words after `ringcast load`, e.g. `["echo", "ws://127.0.0.1:9001/", "-c", "10"]`
    /// (several URLs follow one another: `["echo", "ws://127.0.0.1:9001/", "ws://127.0.0.1:9002/"]`).
    pub fn parse_words<I, T>(words: I) -> Result<LoadArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        #[command(name = "ringcast load")]
        struct Words {
            #[command(flatten)]
            args: LoadArgs,
        }
        let words = std::iter::once(std::ffi::OsString::from("load"))
            .chain(words.into_iter().map(Into::into));
        <Words as clap::Parser>::try_parse_from(words).map(|w| w.args)
    }
}

/// A list of CPU numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Parses `1`, `0,2`, `4-7` and mixes of them.
pub fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{s}` in `{text}` is not a CPU number"))
        };
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (number(from)?, number(to)?);
                if from > to {
                    return Err(format!("CPU range `{part}` runs backwards"));
                }
                cpus.extend(from..=to);
            }
            None => cpus.push(number(part)?),
        }
    }
    let mut sorted = cpus.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != cpus.len() {
        return Err(format!("CPU list `{text}` names a CPU twice"));
    }
    Ok(CpuList(cpus))
}

/// A validated run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub scenario: Scenario,
    /// The URLs as given, in order.
    pub urls: Vec<String>,
    /// One per URL, in the same order.
    pub targets: Vec<Target>,
    /// Which target each connection goes to.
    pub spread: Spread,
    pub connections: usize,
    pub duration: Duration,
    pub json: bool,
    /// One entry per load thread: the CPU it is pinned to, if any.
    pub threads: Vec<Option<usize>>,
    pub size: usize,
    pub binary: bool,
    pub in_flight: usize,
    pub publishers: usize,
    pub window: usize,
    pub rooms: usize,
    /// Rooms: messages per second per publisher; `None`: closed loop on the window.
    pub rate: Option<f64>,
    /// Rooms: tolerate other clients in the rooms once filled (`--guests`).
    pub guests: bool,
    pub join_timeout: Duration,
    /// Source addresses to bind before connecting; empty: let the kernel pick.
    pub sources: Vec<IpAddr>,
    pub hold: Duration,
    pub server_pid: Option<u32>,
    pub concurrency: usize,
    pub connect_timeout: Duration,
    pub drain: Duration,
    pub max_message: usize,
    pub progress: bool,
}

fn seconds(name: &str, value: f64, min: f64) -> Result<Duration, String> {
    if !(value >= min && value <= MAX_DURATION_S) {
        return Err(format!(
            "--{name} must be between {min} and {MAX_DURATION_S} seconds, not {value}"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

impl Plan {
    /// Checks `args` against each other and the machine. `fd_limit`: open files allowed.
    /// Long because it is one list of checks, each with the message the user sees
    /// (scenario-specific ones are in `check_rooms` and `check_churn`).
    pub fn new(args: LoadArgs, fd_limit: u64) -> Result<Plan, String> {
        if args.urls.is_empty() {
            return Err("give at least one URL".into());
        }
        let tls = match args.urls.iter().any(|url| url.starts_with("wss://")) {
            true => Some(TlsClient(
                crate::tls::client::client_config(args.ca.as_deref()).map_err(|e| e.to_string())?,
            )),
            false => None,
        };
        let targets = args
            .urls
            .iter()
            .map(|url| {
                parse_target(url, tls.as_ref()).map(|target| Target {
                    deflate: args.deflate,
                    ..target
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if tls.is_some() && args.scenario == Scenario::Churn {
            return Err("churn does not speak wss:// yet: use ws://".into());
        }
        if args.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if args.connections as u64 + FD_MARGIN > fd_limit {
            return Err(format!(
                "{} connections need {} open files but the limit is {fd_limit}: raise `ulimit -n`",
                args.connections,
                args.connections as u64 + FD_MARGIN
            ));
        }
        let duration = seconds("duration", args.duration, 0.1)?;
        let hold = seconds("hold", args.hold, 0.0)?;
        let connect_timeout = seconds("connect-timeout", args.connect_timeout, 0.01)?;
        let drain = seconds("drain", args.drain, 0.0)?;
        let join_timeout = seconds("join-timeout", args.join_timeout, 0.01)?;
        if args.in_flight == 0 || args.window == 0 || args.concurrency == 0 {
            return Err("--in-flight, --window and --concurrency must be at least 1".into());
        }
        if matches!(args.scenario, Scenario::Broadcast | Scenario::Rooms) {
            if args.size < BROADCAST_HEADER_LEN {
                return Err(format!(
                    "--size must be at least {BROADCAST_HEADER_LEN} bytes for {}: every message \
                     carries its publisher, sequence number and send time",
                    args.scenario.name()
                ));
            }
            if args.publishers == 0 || args.publishers > args.connections {
                return Err(format!(
                    "--publishers must be between 1 and --connections ({}), not {}",
                    args.connections, args.publishers
                ));
            }
        }
        if args.scenario == Scenario::Rooms {
            check_rooms(&args)?;
        }
        if args.scenario == Scenario::Churn {
            check_churn(&args)?;
        }
        if args.size > args.max_message {
            return Err(format!(
                "--size {} is over --max-message {}",
                args.size, args.max_message
            ));
        }
        let threads = match &args.cpus {
            Some(CpuList(cpus)) if cpus.is_empty() => return Err("--cpus names no CPU".into()),
            Some(CpuList(cpus)) => cpus.iter().map(|&c| Some(c)).collect(),
            None => vec![None],
        };
        let source_count = args.sources.unwrap_or(match args.scenario {
            Scenario::Connect => 32,
            _ => 0,
        });
        let sources = source_addresses(&targets, source_count)?;
        let spread = match args.scenario {
            Scenario::Rooms => Spread::ByRoom { rooms: args.rooms },
            _ => Spread::RoundRobin,
        };
        check_every_url_used(&args, spread)?;
        Ok(Plan {
            scenario: args.scenario,
            urls: args.urls,
            targets,
            spread,
            connections: args.connections,
            duration,
            json: args.json,
            threads,
            size: args.size,
            binary: args.binary,
            in_flight: args.in_flight,
            publishers: args.publishers,
            window: args.window,
            rooms: args.rooms,
            rate: args.rate,
            guests: args.guests,
            join_timeout,
            sources,
            hold,
            server_pid: args.server_pid,
            concurrency: args.concurrency,
            connect_timeout,
            drain,
            max_message: args.max_message,
            progress: !args.quiet && !args.json,
        })
    }

    /// Where connection `index` (churn: client `index`) connects.
    pub fn target_for(&self, index: usize) -> &Target {
        &self.targets[self.spread.url_of(index, self.targets.len())]
    }

    /// How many of the connections go to each URL, in the order of `urls`.
    pub fn connections_per_url(&self) -> Vec<usize> {
        self.spread.counts(self.connections, self.targets.len())
    }

    /// The source address for connection `index`, if sources are spread.
    pub fn source_for(&self, index: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[index % self.sources.len()])
    }
}

/// The rooms scenario's own checks: every room has two members, a rate is a rate.
fn check_rooms(args: &LoadArgs) -> Result<(), String> {
    if args.rooms == 0 {
        return Err("--rooms must be at least 1".into());
    }
    if args.connections < 2 * args.rooms {
        return Err(format!(
            "{} connections in {} rooms leave a room with fewer than 2 members: a room message \
             needs someone to reach (use at least {} connections or fewer rooms)",
            args.connections,
            args.rooms,
            2 * args.rooms
        ));
    }
    if let Some(rate) = args.rate {
        if !(rate > 0.0 && rate <= MAX_RATE) {
            return Err(format!(
                "--rate must be above 0 and at most {MAX_RATE} messages per second, not {rate}"
            ));
        }
    }
    Ok(())
}

/// Most churn worker threads (each a blocking client at a time).
const MAX_CHURN_WORKERS: usize = 1024;

/// The churn scenario's checks: a bounded number of threads, a rate that is a rate.
fn check_churn(args: &LoadArgs) -> Result<(), String> {
    if args.connections > MAX_CHURN_WORKERS {
        return Err(format!(
            "churn runs one thread per --connections: at most {MAX_CHURN_WORKERS}, not {}",
            args.connections
        ));
    }
    if let Some(rate) = args.rate {
        if !(rate > 0.0 && rate <= MAX_RATE) {
            return Err(format!(
                "--rate must be above 0 and at most {MAX_RATE} connections per second, not {rate}"
            ));
        }
    }
    Ok(())
}

/// A URL that would get no connection is a mistake in the command line. Churn is
/// exempt: its `--connections` are worker threads, and its clients (numbered without
/// end) reach every URL in turn.
fn check_every_url_used(args: &LoadArgs, spread: Spread) -> Result<(), String> {
    if args.scenario == Scenario::Churn {
        return Ok(());
    }
    let counts = spread.counts(args.connections, args.urls.len());
    match counts.iter().position(|&n| n == 0) {
        Some(unused) => Err(format!(
            "{} connections over {} URLs leave {} with none: use more connections or \
             fewer URLs",
            args.connections,
            args.urls.len(),
            args.urls[unused]
        )),
        None => Ok(()),
    }
}

/// Source addresses to bind, of the servers' address family (all URLs must share it).
fn source_addresses(servers: &[Target], count: usize) -> Result<Vec<IpAddr>, String> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if count > MAX_SOURCES {
        return Err(format!("--sources must be at most {MAX_SOURCES}"));
    }
    let server = servers[0].addr.ip();
    if servers.iter().any(|t| t.addr.is_ipv4() != server.is_ipv4()) {
        return Err(
            "--sources binds one address family: the URLs must be all IPv4 or all [::1]".into(),
        );
    }
    match server {
        IpAddr::V4(_) => {
            let first = u32::from(Ipv4Addr::new(127, 0, 0, 2));
            Ok((0..count as u32)
                .map(|i| IpAddr::V4(Ipv4Addr::from(first + i)))
                .collect())
        }
        IpAddr::V6(_) if count == 1 => Ok(vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]),
        IpAddr::V6(_) => {
            Err("IPv6 has one loopback address: --sources must be 1 or 0 for [::1]".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(line: &str) -> Result<Plan, String> {
        let args = LoadArgs::parse_words(line.split_whitespace()).map_err(|e| e.to_string())?;
        Plan::new(args, 20_000)
    }

    #[test]
    fn defaults_give_one_unpinned_thread_and_no_source_binding() {
        let p = plan("echo ws://127.0.0.1:9001/chat").unwrap();
        assert_eq!(p.targets.len(), 1);
        assert_eq!(p.target_for(7), &p.targets[0]);
        assert_eq!(p.targets[0].addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(p.targets[0].path, "/chat");
        assert_eq!(p.targets[0].host, "127.0.0.1:9001");
        assert_eq!(p.connections_per_url(), [100]);
        assert_eq!(p.threads, vec![None]);
        assert_eq!((p.connections, p.in_flight, p.size), (100, 1, 64));
        assert!(p.sources.is_empty());
        assert_eq!(p.source_for(3), None);
    }

    #[test]
    fn connect_spreads_over_source_addresses_by_default() {
        let p = plan("connect ws://localhost:9001 -c 1000").unwrap();
        assert_eq!(p.sources.len(), 32);
        assert_eq!(p.source_for(0), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(p.source_for(33), Some("127.0.0.3".parse().unwrap()));
        let p = plan("connect ws://127.0.0.1:9001 --sources 300").unwrap();
        assert_eq!(p.sources[299], "127.0.1.45".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn cpu_lists_accept_ranges_and_commas() {
        assert_eq!(parse_cpu_list("1").unwrap().0, vec![1]);
        assert_eq!(parse_cpu_list("0,2-4").unwrap().0, vec![0, 2, 3, 4]);
        let p = plan("echo ws://127.0.0.1:1 --cpus 1,3").unwrap();
        assert_eq!(p.threads, vec![Some(1), Some(3)]);
    }

    #[test]
    fn bad_cpu_lists_are_refused() {
        assert!(parse_cpu_list("1-").is_err());
        assert!(parse_cpu_list("3-1").unwrap_err().contains("backwards"));
        assert!(parse_cpu_list("1,1").unwrap_err().contains("twice"));
        assert!(parse_cpu_list("x").is_err());
        assert!(plan("echo ws://127.0.0.1:1 --cpus a").is_err());
    }

    #[test]
    fn only_loopback_ws_and_wss_urls_are_accepted() {
        assert!(plan("echo ws://10.0.0.1:80/")
            .unwrap_err()
            .contains("not a loopback"));
        assert!(plan("echo wss://127.0.0.1:443/").is_ok());
        assert!(plan("churn wss://127.0.0.1:443/")
            .unwrap_err()
            .contains("wss"));
        assert!(plan("echo http://127.0.0.1/")
            .unwrap_err()
            .contains("scheme"));
        assert!(plan("echo 127.0.0.1:80").unwrap_err().contains("not a URL"));
        assert!(plan("echo ws://example.com/")
            .unwrap_err()
            .contains("not an IP"));
        assert!(plan("echo ws://127.0.0.1:99999/")
            .unwrap_err()
            .contains("bad port"));
        let v6 = plan("echo ws://[::1]:9001/x").unwrap();
        assert_eq!(v6.targets[0].addr, "[::1]:9001".parse().unwrap());
        assert_eq!(
            plan("echo ws://127.1.2.3").unwrap().targets[0].addr.port(),
            80
        );
    }

    #[test]
    fn several_urls_are_parsed_in_order_and_connections_go_round_robin() {
        let p = plan("echo ws://127.0.0.1:1/a ws://localhost:2/b ws://[::1]:3 -c 7 -p 2").unwrap();
        assert_eq!(
            p.urls,
            ["ws://127.0.0.1:1/a", "ws://localhost:2/b", "ws://[::1]:3"]
        );
        let ports: Vec<u16> = p.targets.iter().map(|t| t.addr.port()).collect();
        assert_eq!(ports, [1, 2, 3]);
        assert_eq!(p.in_flight, 2, "flags still parse after the URLs");
        let by_connection: Vec<&str> = (0..7).map(|i| p.target_for(i).path.as_str()).collect();
        assert_eq!(by_connection, ["/a", "/b", "/", "/a", "/b", "/", "/a"]);
        assert_eq!(p.connections_per_url(), [3, 2, 2]);
        for scenario in ["broadcast", "connect", "churn"] {
            let line = format!("{scenario} ws://127.0.0.1:1 ws://127.0.0.1:2");
            assert_eq!(
                plan(&line).unwrap().spread,
                Spread::RoundRobin,
                "{scenario}"
            );
        }
    }

    #[test]
    fn rooms_spread_each_room_over_the_urls() {
        let p = plan("rooms ws://127.0.0.1:1 ws://127.0.0.1:2 -c 40 -r 10").unwrap();
        assert_eq!(p.spread, Spread::ByRoom { rooms: 10 });
        // Room 0's members are connections 0, 10, 20, 30.
        let room_0: Vec<u16> = [0, 10, 20, 30]
            .iter()
            .map(|&i| p.target_for(i).addr.port())
            .collect();
        assert_eq!(room_0, [1, 2, 1, 2]);
        assert_eq!(p.connections_per_url(), [20, 20]);
    }

    #[test]
    fn a_bad_or_unused_url_among_several_is_refused() {
        let err = plan("echo ws://127.0.0.1:1 ws://10.0.0.1:2").unwrap_err();
        assert!(err.contains("10.0.0.1 is not a loopback"), "{err}");
        let err = plan("echo ws://127.0.0.1:1 ws://127.0.0.1:2 ws://127.0.0.1:3 -c 2").unwrap_err();
        assert!(err.contains("leave ws://127.0.0.1:3 with none"), "{err}");
        assert!(plan("churn ws://127.0.0.1:1 ws://127.0.0.1:2 -c 1").is_ok());
        let err = plan("connect ws://127.0.0.1:1 ws://[::1]:2").unwrap_err();
        assert!(err.contains("one address family"), "{err}");
        assert!(plan("connect ws://127.0.0.1:1 ws://[::1]:2 --sources 0").is_ok());
        let mut args = LoadArgs::parse_words(["echo", "ws://127.0.0.1:1"]).unwrap();
        args.urls.clear();
        assert!(Plan::new(args, 20_000)
            .unwrap_err()
            .contains("at least one URL"));
    }

    #[test]
    fn broadcast_needs_room_for_its_accounting_header() {
        let err = plan("broadcast ws://127.0.0.1:1 --size 40").unwrap_err();
        assert!(err.contains("at least 41"), "{err}");
        assert!(plan("broadcast ws://127.0.0.1:1 --size 41").is_ok());
        assert!(plan("echo ws://127.0.0.1:1 --size 0").is_ok());
    }

    #[test]
    fn publishers_must_be_connections() {
        assert!(plan("broadcast ws://127.0.0.1:1 -c 4 -k 5")
            .unwrap_err()
            .contains("--publishers"));
        assert!(plan("broadcast ws://127.0.0.1:1 -c 4 -k 0").is_err());
        assert!(plan("broadcast ws://127.0.0.1:1 -c 4 -k 4").is_ok());
    }

    #[test]
    fn runs_are_bounded_in_time_and_count() {
        assert!(plan("echo ws://127.0.0.1:1 -d 0")
            .unwrap_err()
            .contains("--duration"));
        assert!(plan("echo ws://127.0.0.1:1 -d 100000").is_err());
        assert!(plan("echo ws://127.0.0.1:1 -d nan").is_err());
        assert!(plan("echo ws://127.0.0.1:1 -c 0")
            .unwrap_err()
            .contains("--connections"));
        assert!(plan("echo ws://127.0.0.1:1 -p 0").is_err());
        let err = plan("connect ws://127.0.0.1:1 -c 19990").unwrap_err();
        assert!(err.contains("ulimit"), "{err}");
    }

    #[test]
    fn size_over_max_message_is_refused() {
        assert!(plan("echo ws://127.0.0.1:1 -s 2000 --max-message 1000").is_err());
    }

    #[test]
    fn ipv6_cannot_spread_sources() {
        assert!(plan("connect ws://[::1]:1").unwrap_err().contains("IPv6"));
        assert!(plan("connect ws://[::1]:1 --sources 1").is_ok());
    }

    #[test]
    fn unknown_scenarios_and_flags_are_refused_by_the_parser() {
        assert!(plan("chat ws://127.0.0.1:1").is_err());
        assert!(plan("echo ws://127.0.0.1:1 --bogus").is_err());
        assert!(plan("echo").is_err());
    }

    #[test]
    fn rooms_defaults_and_flags() {
        let p = plan("rooms ws://127.0.0.1:1 -c 1000 -r 10 -k 10 -w 32").unwrap();
        assert_eq!(
            (p.rooms, p.publishers, p.window, p.rate),
            (10, 10, 32, None)
        );
        assert_eq!(p.join_timeout, Duration::from_secs(120));
        let p = plan("rooms ws://127.0.0.1:1 --rate 250.5 --join-timeout 3").unwrap();
        assert_eq!((p.rooms, p.rate), (10, Some(250.5)));
        assert_eq!(p.join_timeout, Duration::from_secs(3));
    }

    #[test]
    fn churn_bounds_its_threads_and_rate() {
        let p = plan("churn ws://127.0.0.1:1 -c 8 -r 10 --rate 200").unwrap();
        assert_eq!((p.connections, p.rooms, p.rate), (8, 10, Some(200.0)));
        assert!(
            plan("churn ws://127.0.0.1:1 -r 0").is_ok(),
            "own rooms only"
        );
        assert!(plan("churn ws://127.0.0.1:1 -c 2000")
            .unwrap_err()
            .contains("one thread"));
        assert!(plan("churn ws://127.0.0.1:1 --rate 0").is_err());
        assert!(plan("rooms ws://127.0.0.1:1 --guests").unwrap().guests);
    }

    #[test]
    fn every_room_needs_two_members() {
        let err = plan("rooms ws://127.0.0.1:1 -c 19 -r 10").unwrap_err();
        assert!(err.contains("at least 20 connections"), "{err}");
        assert!(plan("rooms ws://127.0.0.1:1 -c 20 -r 10").is_ok());
        assert!(plan("rooms ws://127.0.0.1:1 -r 0")
            .unwrap_err()
            .contains("--rooms"));
    }

    #[test]
    fn rooms_rates_and_sizes_are_checked() {
        for bad in ["0", "-5", "nan", "inf", "1e9"] {
            let line = format!("rooms ws://127.0.0.1:1 --rate {bad}");
            assert!(plan(&line).is_err(), "{line}");
        }
        let err = plan("rooms ws://127.0.0.1:1 -s 40").unwrap_err();
        assert!(err.contains("at least 41 bytes for rooms"), "{err}");
        assert!(plan("rooms ws://127.0.0.1:1 -k 101")
            .unwrap_err()
            .contains("--publishers"));
        assert!(plan("rooms ws://127.0.0.1:1 --join-timeout 0").is_err());
    }
}
