//! `ringcast serve --redis` as a process, for nodes that must die (SIGKILL) or freeze
//! (SIGSTOP).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::serve_cli::serve;
use crate::WAIT;

/// A `ringcast serve --redis` process with one core on a free port, killed on drop.
pub struct NodeProcess {
    child: Child,
    pub addr: SocketAddr,
    config: PathBuf,
}

impl NodeProcess {
    /// Starts one with `config` as its config file, once it listens.
    pub fn start(redis_url: &str, config_toml: &str) -> NodeProcess {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let config =
            std::env::temp_dir().join(format!("ringcast-it-node-{}-{n}.toml", std::process::id()));
        std::fs::write(&config, config_toml).expect("write the config");
        let path = config.to_str().expect("a UTF-8 temp path");
        let mut child = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--cores",
            "1",
            "--redis",
            redis_url,
            "--config",
            path,
        ]);
        // Its stderr names the address; the rest is kept for failure messages.
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (lines, addrs) = mpsc::channel();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let addr = line
                    .split_once("on ws://")
                    .and_then(|(_, rest)| rest.split(' ').next()?.parse::<SocketAddr>().ok());
                kept.lock().unwrap().push_str(&(line + "\n"));
                if let Some(addr) = addr {
                    let _ = lines.send(addr);
                }
            }
        });
        match addrs.recv_timeout(WAIT) {
            Ok(addr) => NodeProcess {
                child,
                addr,
                config,
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ringcast serve --redis did not start: {}",
                    log.lock().unwrap()
                );
            }
        }
    }

    /// SIGKILL: no goodbye to Redis, no closing handshakes.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGSTOP: its sockets stay open, nothing on them is answered.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`NodeProcess::freeze`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal}): {}", std::io::Error::last_os_error());
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}
