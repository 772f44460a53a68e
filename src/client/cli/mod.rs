//! `ringcast client URL...`: an interactive (or `--json`, scripted) client on stdin and
//! stdout, over the reconnecting [`Client`]. Received messages go to stdout, one per
//! line; what the client is doing (connected, reconnecting, what a rejoin recovered)
//! goes to stderr.
//! Parsing lines and formatting output are in `line.rs` and `output.rs`.

mod line;
mod output;

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use serde_json::{Map, Value};

pub use line::{parse_line, parse_meta, Line, LineError, HELP};
pub use output::{format_line, json_line, readable_line};

use super::{Client, ClientConfig, ClientError, ClientHandle, Event, ReconnectPolicy, StopReason};

/// Exit code: `/quit`, the end of stdin, or SIGINT/SIGTERM (Ctrl-C); the connection
/// was closed cleanly (close frame 1000 sent, the server's answer awaited).
pub const EXIT_OK: u8 = 0;
/// Exit code: stdout could not be written, or the client ended unexpectedly.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: the command line is wrong (also clap's code for a bad flag): a bad
/// URL, an unreadable `--ca` file, a `--meta` that is not KEY=VALUE.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: with `--no-reconnect`, the server could not be reached or refused the
/// upgrade.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: with `--no-reconnect`, the connection was up and then lost.
pub const EXIT_LOST: u8 = 4;

/// Arguments of `ringcast client`.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = "\
Each stdin line is a message to the first joined room (a broadcast when in no room), \
or a command: /join ROOM, /leave ROOM, /rooms, /msg CLIENT_ID TEXT, /meta KEY=VALUE, \
/quit, /help. Received messages print one per line: TIME(UTC) KIND ROOM SENDER TEXT.

Ctrl-C (SIGINT) or SIGTERM closes the connection cleanly, like /quit; a second one exits at once (130).

Several URLs (the nodes of a cluster): the first is tried first, and each reconnect \
attempt goes to the next one in turn, so the client fails over when its node dies: \
ringcast client ws://10.0.0.1:8080/ ws://10.0.0.2:8080/ --room lobby

Exit codes: 0 on /quit, end of input or Ctrl-C; 2 for a bad command line (URL, --ca, --meta); \
3 when the server cannot be reached and --no-reconnect is set; 4 when the connection \
is lost and --no-reconnect is set; 1 for anything else.")]
pub struct ClientArgs {
    /// The server, e.g. ws://127.0.0.1:8080/ or wss://chat.example.com/. Give
    /// several, separated by spaces, to fail over between them.
    #[arg(value_name = "URL", required = true)]
    pub urls: Vec<String>,
    /// Join ROOM once connected, and again after every reconnect, recovering the
    /// messages missed meanwhile where the server keeps history (repeatable).
    #[arg(long = "room", value_name = "ROOM")]
    pub rooms: Vec<String>,
    /// Set a metadata key once connected, and again after every reconnect
    /// (repeatable; values are strings).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
    /// Read raw JSON lines from stdin and print every received message as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Exit (3 or 4) when the connection fails or ends, instead of reconnecting (one
    /// attempt, at the first URL).
    #[arg(long)]
    pub no_reconnect: bool,
    /// wss:// only: trust the certificates in this PEM file (e.g. a self-signed
    /// server's) instead of the bundled Mozilla roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
}

/// Runs the client until `/quit`, the end of stdin, or (with `--no-reconnect`) the
/// end of the connection. Returns the documented exit code.
pub fn run(args: ClientArgs) -> ExitCode {
    if let Some(ca) = &args.ca {
        if let Err(error) = crate::tls::client::client_config(Some(ca)) {
            eprintln!("ringcast: error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let mut config = ClientConfig {
        reconnect: (!args.no_reconnect).then(ReconnectPolicy::default),
        ..ClientConfig::default()
    };
    config.connect.tls_ca = args.ca.clone();
    let client = match Client::start_any(&args.urls, config) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("ringcast: {error}");
            let usage = matches!(
                error,
                ClientError::InvalidUrl { .. }
                    | ClientError::TlsSetup(_)
                    | ClientError::InvalidConfig(_)
            );
            return ExitCode::from(if usage { EXIT_USAGE } else { EXIT_ERROR });
        }
    };
    let (handle, events) = client.into_parts();
    let mut rooms = Vec::new();
    for room in &args.rooms {
        if !rooms.contains(room) {
            let _ = handle.join_room(room.as_str());
            rooms.push(room.clone());
        }
    }
    if !args.meta.is_empty() {
        let metadata: Map<String, Value> = args
            .meta
            .iter()
            .map(|(key, value)| (key.clone(), Value::String(value.clone())))
            .collect();
        let _ = handle.set_metadata(metadata);
    }
    if let Err(error) = close_on_signal(handle.clone()) {
        eprintln!("ringcast: cannot handle Ctrl-C: {error}");
        return ExitCode::from(EXIT_ERROR);
    }
    let json = args.json;
    let spawned = std::thread::Builder::new()
        .name("ringcast-client-stdin".into())
        .spawn(move || read_input(&handle, json, rooms));
    if let Err(error) = spawned {
        eprintln!("ringcast: cannot start the input thread: {error}");
        return ExitCode::from(EXIT_ERROR);
    }
    ExitCode::from(print_events(json, events.iter()))
}

/// The first SIGINT or SIGTERM closes the client cleanly (as `/quit` does: the event
/// loop then ends with exit code 0); a second exits at once with 130.
fn close_on_signal(handle: ClientHandle) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("ringcast-client-signals".into())
        .spawn(move || {
            let mut received = signals.forever();
            if received.next().is_some() {
                eprintln!("ringcast: closing (Ctrl-C again to exit at once)");
                handle.close();
            }
            if received.next().is_some() {
                std::process::exit(130);
            }
        })?;
    Ok(())
}

/// Acts on stdin lines until `/quit` or the end of input, then closes the client.
fn read_input(handle: &ClientHandle, json: bool, mut rooms: Vec<String>) {
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if json {
            if !line.trim().is_empty() && handle.send_text(line).is_err() {
                return;
            }
            continue;
        }
        let line = match parse_line(&line) {
            Ok(line) => line,
            Err(error) => {
                eprintln!("ringcast: {error}");
                continue;
            }
        };
        let sent = match line {
            Line::Say(text) => match rooms.first() {
                Some(room) => handle.room_message(room.as_str(), text),
                None => handle.broadcast(text),
            },
            Line::Join(room) => {
                if !rooms.contains(&room) {
                    rooms.push(room.clone());
                }
                handle.join_room(room)
            }
            Line::Leave(room) => {
                rooms.retain(|r| *r != room);
                handle.leave_room(room)
            }
            Line::Rooms => {
                let list = if rooms.is_empty() {
                    "(none)".to_string()
                } else {
                    rooms.join(", ")
                };
                println!("{}", format_line(SystemTime::now(), "rooms", "", "", &list));
                Ok(())
            }
            Line::Msg { to, text } => handle.private_message(to, text),
            Line::Meta { key, value } => {
                handle.set_metadata(Map::from_iter([(key, Value::String(value))]))
            }
            Line::Help => {
                eprintln!("{HELP}");
                Ok(())
            }
            Line::Empty => Ok(()),
            Line::Quit => break,
        };
        if sent.is_err() {
            return;
        }
    }
    handle.close();
}

/// After a reconnect, what a room's recovery brought back.
fn recovered_line(room: &str, missed: u64) -> String {
    match missed {
        0 => format!("rejoined {room}, no messages missed"),
        1 => format!("recovered 1 missed message in {room}"),
        n => format!("recovered {n} missed messages in {room}"),
    }
}

fn messages(n: u64) -> String {
    match n {
        1 => "1 message".to_string(),
        n => format!("{n} messages"),
    }
}

/// Prints events until the client stops; returns the exit code.
fn print_events(json: bool, events: impl Iterator<Item = Event>) -> u8 {
    let mut connected_once = false;
    let stdout = io::stdout();
    for event in events {
        match event {
            Event::Message(received) => {
                let line = if json {
                    json_line(&received)
                } else {
                    readable_line(&received, SystemTime::now())
                };
                let mut out = stdout.lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return EXIT_ERROR;
                }
            }
            Event::Connected {
                url,
                client_id,
                reconnected,
            } => {
                connected_once = true;
                let again = if reconnected { "re" } else { "" };
                eprintln!("ringcast: {again}connected to {url} as {client_id}");
            }
            Event::ConnectFailed { url, error } => {
                eprintln!("ringcast: cannot connect to {url}: {error}")
            }
            Event::Disconnected { reason } => eprintln!("ringcast: disconnected: {reason}"),
            Event::Reconnecting { attempt, delay } => eprintln!(
                "ringcast: reconnecting in {:.2} s (attempt {attempt})",
                delay.as_secs_f64()
            ),
            Event::NotSent { text } => eprintln!("ringcast: not connected, not sent: {text}"),
            Event::Recovered { room, missed } => {
                eprintln!("ringcast: {}", recovered_line(&room, missed))
            }
            Event::HistoryLost { room } => {
                eprintln!("ringcast: {room}: history lost, some messages were missed")
            }
            Event::Gap {
                room,
                missing,
                offset,
            } => eprintln!(
                "ringcast: {room}: {} missing before message {offset}",
                messages(missing)
            ),
            Event::DuplicateDropped { room, offset } => {
                eprintln!("ringcast: {room}: message {offset} came twice, dropped the copy")
            }
            Event::Stopped(StopReason::Closed) => return EXIT_OK,
            Event::Stopped(StopReason::GaveUp) if connected_once => return EXIT_LOST,
            Event::Stopped(StopReason::GaveUp) => return EXIT_UNREACHABLE,
        }
    }
    EXIT_ERROR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_lines_count_what_came_back() {
        assert_eq!(
            recovered_line("lobby", 3),
            "recovered 3 missed messages in lobby"
        );
        assert_eq!(
            recovered_line("lobby", 1),
            "recovered 1 missed message in lobby"
        );
        assert_eq!(
            recovered_line("lobby", 0),
            "rejoined lobby, no messages missed"
        );
    }
}
