//! The `ringcast` command: `serve` runs the server, `load` the load generator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ringcast::app::{BroadcastApp, EchoApp};
use ringcast::config::{parse_cpu_list, AppKind, Config, ServerConfig};
use ringcast::logging::{self, LogFormat};
use ringcast::rooms::RoomsApp;
use ringcast::runtime::{self, ServerHandle};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "ringcast",
    version,
    about = "Thread-per-core io_uring WebSocket server for real-time rooms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run the load generator against a server.
    Load(ringcast::load::LoadArgs),
    /// Chat with a room server from the terminal (or a script, with --json).
    Client(ringcast::client::cli::ClientArgs),
}

/// Flags override the config file, which overrides the defaults.
#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// TOML config file (see tuning/ringcast.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Run on the first N CPUs [default: all].
    #[arg(long, conflicts_with = "cpus")]
    cores: Option<usize>,
    /// CPUs to run and pin core threads on, e.g. "0,2-3" or "all".
    #[arg(long)]
    cpus: Option<String>,
    /// Application [default: rooms].
    #[arg(long, value_enum)]
    app: Option<AppKind>,
    /// Largest message a client may send, in bytes; larger closes with 1009 [default: 1048576].
    #[arg(long)]
    max_message: Option<usize>,
    /// Bytes queued for a client before it is reset as a slow consumer [default: 4194304].
    #[arg(long)]
    max_outbound: Option<usize>,
    /// Rooms app: messages per second one client may send; over it gets the error
    /// "Rate limit exceeded" [default: 0, no limit].
    #[arg(long)]
    rate_limit: Option<u32>,
    /// A browser origin allowed to connect, e.g. https://chat.example.com; repeat for
    /// more. Replaces the config file's `allowed_origins` [default: any origin].
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// PEM certificate chain: serve wss:// (TLS on every core); reloaded on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Connections one IP address may hold; more get HTTP 429 [default: 0, no limit].
    #[arg(long, value_name = "N")]
    max_conns_per_ip: Option<usize>,
    /// Connections the server holds in all; more get HTTP 503 [default: 0, no limit].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it [default: off].
    #[arg(long)]
    deflate: bool,
    /// Rooms app: rooms one client may be in; more get "Too many rooms" [default: 100].
    #[arg(long, value_name = "N")]
    max_rooms_per_client: Option<usize>,
    /// SO_SNDBUF of accepted sockets, in bytes [default: the kernel's].
    #[arg(long, value_name = "BYTES")]
    send_buffer: Option<usize>,
    /// SO_RCVBUF of accepted sockets, in bytes [default: the kernel's].
    #[arg(long, value_name = "BYTES")]
    recv_buffer: Option<usize>,
    /// Do not serve the server's own page at GET / (answer 426 as for any non-upgrade).
    #[arg(long)]
    no_page: bool,
    /// Log one JSON object per line (for log shippers) instead of text; also
    /// RINGCAST_LOG_FORMAT=json. Levels and filters: RUST_LOG (default info).
    #[arg(long)]
    log_json: bool,
    /// Rooms app: messages kept per room for clients that recover after a reconnect
    /// (0: none; offsets are still given) [default: 64].
    #[arg(long, value_name = "N")]
    history_size: Option<usize>,
    /// Run as a node of a cluster sharing rooms through this Redis (rooms app), e.g.
    /// redis://127.0.0.1:6379/0. Refuses to start if Redis cannot be reached.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// This node's name in a cluster (1 to 32 of [A-Za-z0-9-]); each start runs as
    /// ID-<n>, n counted in Redis [default: random per start].
    #[arg(long, value_name = "ID", requires = "redis")]
    node_id: Option<String>,
    /// Require every upgrade to carry a JWT (?token= or Authorization: Bearer) signed
    /// with this HS256 secret; others get HTTP 401. Visible in `ps`: prefer the
    /// config file's `jwt_secret` on shared hosts.
    #[arg(long, value_name = "SECRET", conflicts_with = "jwt_public_key")]
    jwt_secret: Option<String>,
    /// Require every upgrade to carry a JWT signed with the key of this PEM public key
    /// file (RSA: RS256, P-256 EC: ES256, Ed25519: EdDSA); others get HTTP 401.
    #[arg(long, value_name = "FILE")]
    jwt_public_key: Option<PathBuf>,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(cpus) = &self.cpus {
            config.cpus = parse_cpu_list(cpus)?;
            config.cores = None;
        }
        if let Some(cores) = self.cores {
            config.cores = Some(cores);
        }
        if let Some(app) = self.app {
            config.app = app;
        }
        if let Some(max) = self.max_message {
            config.max_message_bytes = max;
        }
        if let Some(max) = self.max_outbound {
            config.max_outbound_bytes = max;
        }
        if let Some(rate) = self.rate_limit {
            config.rate_limit_per_s = rate;
        }
        if let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) {
            config.tls_cert = Some(cert);
            config.tls_key = Some(key);
        }
        if !self.allow_origins.is_empty() {
            config.allowed_origins = self.allow_origins;
        }
        if let Some(max) = self.max_conns_per_ip {
            config.max_conns_per_ip = max;
        }
        if let Some(max) = self.max_connections {
            config.max_connections = max;
        }
        if self.deflate {
            config.deflate = true;
        }
        if let Some(max) = self.max_rooms_per_client {
            config.max_rooms_per_client = max;
        }
        if let Some(bytes) = self.send_buffer {
            config.send_buffer_bytes = Some(bytes);
        }
        if let Some(bytes) = self.recv_buffer {
            config.recv_buffer_bytes = Some(bytes);
        }
        if self.no_page {
            config.page = false;
        }
        if let Some(size) = self.history_size {
            config.history_size = size;
        }
        if let Some(url) = self.redis {
            config.cluster.redis_url = Some(url);
        }
        if let Some(id) = self.node_id {
            config.cluster.node_id = Some(id);
        }
        if let Some(secret) = self.jwt_secret {
            config.jwt_secret = Some(ringcast::auth::Secret(secret));
            config.jwt_public_key = None;
        }
        if let Some(path) = self.jwt_public_key {
            config.jwt_public_key = Some(path);
            config.jwt_secret = None;
        }
        Ok(config.resolve()?)
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let app = config.app;
    let cpus = config.cpus().to_vec();
    // Installed before listening: a signal that finds the port open is handled.
    let tls = config.tls().cloned();
    // SIGHUP reloads the certificate (without TLS there is nothing to reload, and it
    // is logged and ignored, so `systemctl reload` never stops a server).
    let wanted = [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ];
    let mut signals =
        signal_hook::iterator::Signals::new(wanted).context("installing signal handlers")?;
    let cluster = config.cluster.redis_url.clone();
    let jwt = config.jwt().map(|verifier| verifier.algorithm());
    let server: ServerHandle = match app {
        _ if cluster.is_some() => ringcast::cluster::start_node(config)?,
        AppKind::Echo => runtime::start(config, |_| EchoApp)?,
        AppKind::Broadcast => runtime::start(config, |_| BroadcastApp::default())?,
        AppKind::Rooms => runtime::start(config, RoomsApp::configured)?,
    };
    for (core, (driver, cpu)) in server.drivers().iter().zip(&cpus).enumerate() {
        tracing::info!("core {core} on CPU {cpu}: {driver:?} driver");
    }
    tracing::info!(
        "serving {app:?} on {}://{} with {} core(s)",
        if tls.is_some() { "wss" } else { "ws" },
        server.local_addr(),
        cpus.len()
    );
    if let Some(url) = cluster {
        tracing::info!("cluster node over Redis at {url}");
    }
    if let Some(algorithm) = jwt {
        eprintln!("ringcast: every upgrade needs a JWT signed with {algorithm:?}");
    }
    let trigger = server.shutdown_trigger();
    std::thread::Builder::new()
        .name("ringcast-signals".into())
        .spawn(move || {
            let mut stops = 0;
            for signal in signals.forever() {
                if signal == signal_hook::consts::SIGHUP {
                    if tls.is_none() {
                        tracing::info!("SIGHUP: nothing to reload (no TLS certificate)");
                    }
                    if let Some(tls) = &tls {
                        match tls.reload() {
                            Ok(()) => tracing::info!("TLS certificate reloaded"),
                            Err(error) => tracing::error!(
                                "TLS reload failed, keeping the old certificate: {error}"
                            ),
                        }
                    }
                    continue;
                }
                stops += 1;
                if stops == 1 {
                    tracing::info!(
                        "shutting down: closing connections with 1001 (signal again to exit now)"
                    );
                    trigger();
                } else {
                    tracing::warn!("second signal, exiting now");
                    std::process::exit(1);
                }
            }
        })?;
    server.join()?;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (result, server) = match cli.command {
        Command::Serve(args) => {
            logging::init(LogFormat::choose(args.log_json));
            (serve(args), true)
        }
        Command::Load(args) => (ringcast::load::run(args), false),
        Command::Client(args) => return ringcast::client::cli::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if server => {
            tracing::error!("ringcast: error: {}", error_report(&error));
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("ringcast: error: {}", error_report(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once. Error types that name their source in
/// their own message (`cannot read config file F: <the OS error>`) would otherwise
/// show it twice under `{:#}`; causes that only `context` adds are still shown.
fn error_report(error: &anyhow::Error) -> String {
    let mut report = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !report.contains(&cause) {
            report.push_str(": ");
            report.push_str(&cause);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read config file x.toml: {source}")]
    struct NamesItsSource {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let os = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let error = anyhow::Error::new(NamesItsSource { source: os });
        assert_eq!(
            error_report(&error),
            "cannot read config file x.toml: No such file"
        );
    }

    #[test]
    fn causes_added_as_context_are_all_said() {
        let os = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let error = anyhow::Error::new(os)
            .context("reading rooms.json")
            .context("starting");
        assert_eq!(
            error_report(&error),
            "starting: reading rooms.json: No such file"
        );
    }
}
