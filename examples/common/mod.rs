//! What the baseline servers share: the listen address from the command line
//! (`--listen ADDR` or the first argument, default 127.0.0.1:9001) and a raised
//! open-file limit, so they can hold as many connections as `ringcast serve`.

use std::net::SocketAddr;

/// Raises the open-file limit, binds the address from the command line and says
/// which server (`name`) listens there, with its pid for the benchmark scripts.
pub async fn bind(name: &str) -> std::io::Result<tokio::net::TcpListener> {
    let addr = listen_addr();
    raise_fd_limit();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("{name} on ws://{addr}/ (pid {})", std::process::id());
    Ok(listener)
}

/// Where to listen, from `--listen ADDR`, `--listen=ADDR` or the first argument.
pub fn listen_addr() -> SocketAddr {
    let mut args = std::env::args().skip(1);
    let mut addr = None;
    while let Some(arg) = args.next() {
        let value = if arg == "--listen" {
            args.next()
        } else if let Some(value) = arg.strip_prefix("--listen=") {
            Some(value.to_string())
        } else if !arg.starts_with('-') && addr.is_none() {
            Some(arg)
        } else {
            exit_usage(&format!("unknown argument `{arg}`"));
        };
        addr = Some(value.unwrap_or_else(|| exit_usage("--listen needs an address")));
    }
    let addr = addr.unwrap_or_else(|| "127.0.0.1:9001".into());
    addr.parse()
        .unwrap_or_else(|_| exit_usage(&format!("`{addr}` is not an IP:PORT address")))
}

fn exit_usage(problem: &str) -> ! {
    let name = std::env::args().next().unwrap_or_default();
    eprintln!("{name}: {problem}\nusage: {name} [--listen] IP:PORT");
    std::process::exit(2)
}

/// Raises the soft open-file limit to the hard one.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only touch the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
