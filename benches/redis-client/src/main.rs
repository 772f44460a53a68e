//! The two Redis clients ringcast's cluster link could use, measured against a
//! redis-server this program starts on a free port (README.md here):
//! (a) the `redis` crate's async client on a tokio current_thread runtime, and
//! (b) the ringcast way: blocking std I/O, commands encoded straight into a buffer,
//!     replies decoded by `redis-protocol` (RESP3, zero-copy `Bytes` payloads).
//! Receive path, send path (msgs/s, CPU-seconds per million messages), and whether a
//! script's reply and the message it publishes reach the application in Redis's order.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::thread::JoinHandleExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use redis_protocol::resp3::decode::complete::decode_bytes_mut;
use redis_protocol::resp3::types::BytesFrame;

const BATCH: usize = 256;
const RUNS: usize = 3;
const WARMUP: Duration = Duration::from_millis(500);
const WINDOW: Duration = Duration::from_secs(2);
const ORDER_N: u64 = 10_000;
const CH: &[u8] = b"bench";
const SCRIPT: &str = "redis.call('PUBLISH', KEYS[1], ARGV[1]) return 1";

#[derive(Clone, Copy, PartialEq)]
enum Client {
    RedisCrate,
    Ringcast,
}

/// A redis-server of our own, killed when dropped.
struct Redis(Child);

impl Redis {
    fn start() -> (Redis, u16) {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let redis = Redis(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
        (redis, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- the ringcast way: RESP written into a buffer, redis-protocol decoding ----

/// An array of bulk strings, as src/cluster/resp.rs writes it.
fn put_command(buf: &mut BytesMut, args: &[&[u8]]) {
    put_header(buf, b'*', args.len());
    for arg in args {
        put_header(buf, b'$', arg.len());
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

fn put_header(buf: &mut BytesMut, kind: u8, mut n: usize) {
    let (mut digits, mut at) = ([0u8; 20], 20);
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&[kind]);
    buf.extend_from_slice(&digits[at..]);
    buf.extend_from_slice(b"\r\n");
}

/// The next whole frame, reading as needed (as link.rs does: a chunk, then the buffer).
fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut, chunk: &mut [u8]) -> Option<BytesFrame> {
    loop {
        if let Some((frame, _, _)) = decode_bytes_mut(buf).expect("valid RESP3") {
            return Some(frame);
        }
        match stream.read(chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A RESP3 connection (HELLO 3 answered).
fn connect_resp3(port: u16) -> (TcpStream, BytesMut, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut buf, mut chunk) = (BytesMut::with_capacity(64 * 1024), vec![0u8; 64 * 1024]);
    let mut cmd = BytesMut::new();
    put_command(&mut cmd, &[b"HELLO", b"3"]);
    stream.write_all(&cmd).unwrap();
    read_frame(&mut stream, &mut buf, &mut chunk).expect("HELLO answered");
    (stream, buf, chunk)
}

/// A pub/sub message's payload (zero copy), if the frame is one.
fn message_payload(frame: BytesFrame) -> Option<Bytes> {
    let BytesFrame::Push { mut data, .. } = frame else {
        return None;
    };
    match (data.len(), data.first()) {
        (3, Some(BytesFrame::BlobString { data: kind, .. })) if &kind[..] == b"message" => {}
        _ => return None,
    }
    match data.pop() {
        Some(BytesFrame::BlobString { data, .. }) => Some(data),
        _ => None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn redis_client(port: u16) -> redis::Client {
    redis::Client::open(format!("redis://127.0.0.1:{port}/?protocol=resp3")).unwrap()
}

// ---- CPU accounting ----

fn process_cpu() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn thread_cpu(thread: libc::pthread_t) -> Duration {
    let mut clock: libc::clockid_t = 0;
    assert_eq!(
        unsafe { libc::pthread_getcpuclockid(thread, &mut clock) },
        0
    );
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Messages counted per second over WINDOW (after WARMUP), and CPU-seconds per
/// million of this process less the `load` thread (the publisher), if any.
fn measure(count: &AtomicU64, load: Option<libc::pthread_t>) -> (f64, f64) {
    thread::sleep(WARMUP);
    let cpu = || process_cpu() - load.map_or(Duration::ZERO, thread_cpu);
    let (c0, cpu0, t0) = (count.load(Relaxed), cpu(), Instant::now());
    thread::sleep(WINDOW);
    let (c1, cpu1, t1) = (count.load(Relaxed), cpu(), Instant::now());
    let n = (c1 - c0).max(1) as f64;
    (
        n / (t1 - t0).as_secs_f64(),
        (cpu1 - cpu0).as_secs_f64() / n * 1e6,
    )
}

/// How far the load may run ahead of what was received, in messages (~4 MiB).
fn window(size: usize) -> u64 {
    ((4 << 20) / size).max(4096) as u64
}

// ---- 1. receive path ----

/// Pipelines pre-encoded PUBLISH batches (CLIENT REPLY OFF: no replies to drain),
/// at most `window` ahead of the subscriber; at the end an empty "stop" message.
fn publisher(port: u16, size: usize, received: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (payload, mut batch) = (vec![b'x'; size], BytesMut::new());
    put_command(&mut batch, &[b"CLIENT", b"REPLY", b"OFF"]);
    stream.write_all(&batch).unwrap();
    batch.clear();
    for _ in 0..BATCH {
        put_command(&mut batch, &[b"PUBLISH", CH, &payload]);
    }
    let mut sent = 0u64;
    while !stop.load(Relaxed) {
        if sent - received.load(Relaxed) > window(size) {
            thread::sleep(Duration::from_micros(50));
            continue;
        }
        stream.write_all(&batch).unwrap();
        sent += BATCH as u64;
    }
    batch.clear();
    put_command(&mut batch, &[b"PUBLISH", CH, b""]);
    stream.write_all(&batch).unwrap();
}

fn subscriber(client: Client, port: u16, received: Arc<AtomicU64>, ready: mpsc::Sender<()>) {
    match client {
        Client::RedisCrate => runtime().block_on(async {
            let mut pubsub = redis_client(port).get_async_pubsub().await.unwrap();
            pubsub.subscribe(CH).await.unwrap();
            ready.send(()).unwrap();
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                // No way to take the payload out of a Msg: a Bytes to share is a copy.
                let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
                if payload.is_empty() {
                    break;
                }
                received.fetch_add(1, Relaxed);
                black_box(payload);
            }
        }),
        Client::Ringcast => {
            let (mut stream, mut buf, mut chunk) = connect_resp3(port);
            let mut cmd = BytesMut::new();
            put_command(&mut cmd, &[b"SUBSCRIBE", CH]);
            stream.write_all(&cmd).unwrap();
            read_frame(&mut stream, &mut buf, &mut chunk).expect("subscribed");
            ready.send(()).unwrap();
            while let Some(frame) = read_frame(&mut stream, &mut buf, &mut chunk) {
                let Some(payload) = message_payload(frame) else {
                    continue;
                };
                if payload.is_empty() {
                    break;
                }
                received.fetch_add(1, Relaxed);
                black_box(payload);
            }
        }
    }
}

fn receive(client: Client, port: u16, size: usize) -> (f64, f64) {
    let (received, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (ready, subscribed) = mpsc::channel();
    let r = received.clone();
    let sub = thread::spawn(move || subscriber(client, port, r, ready));
    subscribed.recv().unwrap();
    let (r, s) = (received.clone(), stop.clone());
    let publisher = thread::spawn(move || publisher(port, size, r, s));
    let result = measure(&received, Some(publisher.as_pthread_t()));
    stop.store(true, Relaxed);
    publisher.join().unwrap();
    sub.join().unwrap();
    result
}

// ---- 2. send path ----

fn send(client: Client, port: u16, size: usize) -> (f64, f64) {
    let (replied, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (r, s) = (replied.clone(), stop.clone());
    let sender = thread::spawn(move || {
        let payload = vec![b'x'; size];
        match client {
            Client::RedisCrate => runtime().block_on(async {
                let mut con = redis_client(port)
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                while !s.load(Relaxed) {
                    let mut pipe = redis::pipe();
                    for _ in 0..BATCH {
                        pipe.cmd("PUBLISH").arg(CH).arg(&payload[..]);
                    }
                    let counts: Vec<i64> = pipe.query_async(&mut con).await.unwrap();
                    r.fetch_add(black_box(counts).len() as u64, Relaxed);
                }
            }),
            Client::Ringcast => {
                let (stream, mut buf, mut chunk) = connect_resp3(port);
                let (mut reader, r2) = (stream.try_clone().unwrap(), r.clone());
                let reader = thread::spawn(move || {
                    while let Some(frame) = read_frame(&mut reader, &mut buf, &mut chunk) {
                        if let BytesFrame::Number { data, .. } = frame {
                            black_box(data);
                            r2.fetch_add(1, Relaxed);
                        }
                    }
                });
                let (mut writer, mut out, mut sent) =
                    (stream, BytesMut::with_capacity(1 << 20), 0u64);
                while !s.load(Relaxed) {
                    if sent - r.load(Relaxed) > window(size) {
                        thread::sleep(Duration::from_micros(50));
                        continue;
                    }
                    out.clear();
                    for _ in 0..BATCH {
                        put_command(&mut out, &[b"PUBLISH", CH, &payload]);
                    }
                    writer.write_all(&out).unwrap();
                    sent += BATCH as u64;
                }
                writer.shutdown(Shutdown::Write).unwrap();
                reader.join().unwrap();
            }
        }
    });
    let result = measure(&replied, None);
    stop.store(true, Relaxed);
    sender.join().unwrap();
    result
}

// ---- 3. ordering: a script's reply vs the message it publishes ----

/// (message seen first, reply seen first) over ORDER_N scripts.
fn ordering(client: Client, port: u16) -> (u64, u64) {
    let (mut message_first, mut reply_first) = (0, 0);
    match client {
        // Two connections (multiplexed + pubsub); each seen by a task of its own,
        // stamped from one counter when the application gets it.
        Client::RedisCrate => runtime().block_on(async {
            let client = redis_client(port);
            let mut con = client.get_multiplexed_async_connection().await.unwrap();
            let mut pubsub = client.get_async_pubsub().await.unwrap();
            pubsub.subscribe("order").await.unwrap();
            let stamp = Arc::new(AtomicU64::new(0));
            let (msg_tx, mut msg_rx) = tokio::sync::mpsc::unbounded_channel();
            let (reply_tx, mut reply_rx) = tokio::sync::mpsc::unbounded_channel();
            let (next_tx, mut next_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
            let st = stamp.clone();
            tokio::spawn(async move {
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let i: u64 = msg.get_payload().unwrap();
                    let _ = msg_tx.send((i, st.fetch_add(1, Relaxed)));
                }
            });
            let st = stamp.clone();
            tokio::spawn(async move {
                for i in 0..ORDER_N {
                    let mut eval = redis::cmd("EVAL");
                    eval.arg(SCRIPT).arg(1).arg("order").arg(i);
                    let one: i64 = eval.query_async(&mut con).await.unwrap();
                    assert_eq!(one, 1);
                    reply_tx.send((i, st.fetch_add(1, Relaxed))).unwrap();
                    if next_rx.recv().await.is_none() {
                        break;
                    }
                }
            });
            for i in 0..ORDER_N {
                let (j, reply) = reply_rx.recv().await.unwrap();
                let (k, message) = msg_rx.recv().await.unwrap();
                assert_eq!((j, k), (i, i));
                if message < reply {
                    message_first += 1
                } else {
                    reply_first += 1
                }
                next_tx.send(()).unwrap();
            }
        }),
        // One RESP3 connection: subscribed, running the script.
        Client::Ringcast => {
            let (mut stream, mut buf, mut chunk) = connect_resp3(port);
            let mut cmd = BytesMut::new();
            put_command(&mut cmd, &[b"SUBSCRIBE", b"order"]);
            stream.write_all(&cmd).unwrap();
            read_frame(&mut stream, &mut buf, &mut chunk).expect("subscribed");
            for i in 0..ORDER_N {
                cmd.clear();
                let arg = i.to_string();
                put_command(
                    &mut cmd,
                    &[b"EVAL", SCRIPT.as_bytes(), b"1", b"order", arg.as_bytes()],
                );
                stream.write_all(&cmd).unwrap();
                let (mut message, mut reply) = (false, false);
                while !(message && reply) {
                    match read_frame(&mut stream, &mut buf, &mut chunk).expect("answered") {
                        BytesFrame::Number { data: 1, .. } => {
                            reply_first += u64::from(!message);
                            reply = true;
                        }
                        frame => {
                            let payload = message_payload(frame).expect("the message");
                            assert_eq!(&payload[..], arg.as_bytes());
                            message_first += u64::from(!reply);
                            message = true;
                        }
                    }
                }
            }
        }
    }
    (message_first, reply_first)
}

/// Control for (a): the same two connections, no client library, one edge-triggered
/// epoll (as under tokio), which lists sockets in the order they became readable. After each EVAL:
/// (message's socket listed first, reply's socket listed first).
fn ordering_raw(port: u16) -> (u64, u64) {
    use std::os::fd::AsRawFd;
    let (mut sub, mut sbuf, mut schunk) = connect_resp3(port);
    let (mut con, mut cbuf, mut cchunk) = connect_resp3(port);
    let mut cmd = BytesMut::new();
    put_command(&mut cmd, &[b"SUBSCRIBE", b"order"]);
    sub.write_all(&cmd).unwrap();
    read_frame(&mut sub, &mut sbuf, &mut schunk).expect("subscribed");
    let epoll = unsafe { libc::epoll_create1(0) };
    assert!(epoll >= 0);
    for (fd, token) in [(sub.as_raw_fd(), 0), (con.as_raw_fd(), 1)] {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: token,
        };
        assert_eq!(
            unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) },
            0
        );
    }
    let mut counts = (0, 0);
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
    for i in 0..ORDER_N {
        cmd.clear();
        let arg = i.to_string();
        put_command(
            &mut cmd,
            &[b"EVAL", SCRIPT.as_bytes(), b"1", b"order", arg.as_bytes()],
        );
        con.write_all(&cmd).unwrap();
        assert!(unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 2, 5000) } > 0);
        match events[0].u64 {
            0 => counts.0 += 1,
            _ => counts.1 += 1,
        }
        let message = read_frame(&mut sub, &mut sbuf, &mut schunk).and_then(message_payload);
        assert_eq!(message.as_deref(), Some(arg.as_bytes()));
        let reply = read_frame(&mut con, &mut cbuf, &mut cchunk);
        assert!(matches!(reply, Some(BytesFrame::Number { data: 1, .. })));
    }
    unsafe { libc::close(epoll) };
    counts
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (_redis, port) = Redis::start();
    let name = |c| {
        if c == Client::RedisCrate {
            "(a) redis crate"
        } else {
            "(b) ringcast way"
        }
    };
    // `-- --ordering`: only the ordering check.
    let throughput = !std::env::args().any(|a| a == "--ordering");
    let mut cases = Vec::new();
    for path in ["receive", "send"].into_iter().filter(|_| throughput) {
        for size in [64, 1024] {
            for client in [Client::RedisCrate, Client::Ringcast] {
                cases.push((path, size, client, Vec::new()));
            }
        }
    }
    for run in (1..=RUNS).filter(|_| throughput) {
        for (path, size, client, results) in cases.iter_mut() {
            let r = match *path {
                "receive" => receive(*client, port, *size),
                _ => send(*client, port, *size),
            };
            eprintln!(
                "run {run}: {path} {size} B {}: {:.0} msgs/s, {:.3} CPU-s/M",
                name(*client),
                r.0,
                r.1
            );
            results.push(r);
        }
    }
    println!(
        "\nmedians of {RUNS} runs ({} s each), ratio = this / (b) same path and size",
        WINDOW.as_secs()
    );
    println!(
        "| path | payload | variant | msgs/s | CPU-s per million | msgs/s ratio | CPU ratio |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    for pair in cases.chunks(2) {
        let m = |c: &(&str, usize, Client, Vec<(f64, f64)>)| {
            (
                median(c.3.iter().map(|r| r.0).collect()),
                median(c.3.iter().map(|r| r.1).collect()),
            )
        };
        let base = m(&pair[1]);
        for case in pair {
            let (rate, cpu) = m(case);
            println!(
                "| {} | {} B | {} | {:.0} | {:.3} | {:.2} | {:.2} |",
                case.0,
                case.1,
                name(case.2),
                rate,
                cpu,
                rate / base.0,
                cpu / base.1
            );
        }
    }
    println!("\nordering, {ORDER_N} EVALs that PUBLISH then return 1:");
    for client in [Client::RedisCrate, Client::Ringcast] {
        let (message_first, reply_first) = ordering(client, port);
        println!(
            "  {}: message seen first {message_first}, reply seen first {reply_first}",
            name(client)
        );
    }
    let (message, reply) = ordering_raw(port);
    println!(
        "  (c) two raw sockets, one epoll: message's listed first {message}, reply's first {reply}"
    );
}
