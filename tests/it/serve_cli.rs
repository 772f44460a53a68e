//! `ringcast serve` as a process: it refuses an address another process listens on,
//! and SIGTERM shuts it down gracefully (close 1001, exit 0).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::TestClient;
use crate::WAIT;

fn serve(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringcast serve")
}

/// Waits for the process to exit within [`WAIT`]; kills it and fails otherwise.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for ringcast") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringcast serve did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

#[test]
fn serve_refuses_an_address_another_process_listens_on() {
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = other.local_addr().unwrap().to_string();
    let mut child = serve(&["--listen", &addr, "--cores", "1"]);
    let status = wait_exit(&mut child);
    assert!(!status.success(), "it must not share the port");
    let stderr = stderr_of(&mut child);
    assert!(stderr.contains("already in use"), "{stderr}");
}

#[test]
fn sigterm_closes_every_connection_with_1001_and_exits_0() {
    let addr: SocketAddr = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut child = serve(&[
        "--listen",
        &addr.to_string(),
        "--cores",
        "1",
        "--app",
        "echo",
    ]);
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "server did not start listening");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut client = TestClient::connect(addr);
    // SAFETY: sending a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    assert_eq!(client.expect_close(), 1001);
    client.send_close(1001, "");
    let status = wait_exit(&mut child);
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        stderr_of(&mut child)
    );
}
