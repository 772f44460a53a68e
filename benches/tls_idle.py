#!/usr/bin/env python3
"""Idle memory per connection, wss:// against ws:// (issue 14).

Starts `ringcast serve --app echo --cores 1` (pinned to CPU 0, TLS when --tls), opens N
upgraded connections from this script (asyncio; Python's ssl for wss), waits, and
prints the server's RSS growth per connection. The load tool (`ringcast load connect`)
does not speak wss:// yet, so both modes are measured here the same way.

    python3 benches/tls_idle.py --bin target/release/ringcast -n 10000          # ws://
    python3 benches/tls_idle.py --bin target/release/ringcast -n 10000 --tls    # wss://
"""
import argparse, asyncio, os, resource, ssl, subprocess, sys, tempfile, time

REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024


def make_cert(dir):
    cert, key = os.path.join(dir, "cert.pem"), os.path.join(dir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


async def open_one(port, ctx, held):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(REQUEST)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    held.append((reader, writer))


async def run(args, port, ctx, pid):
    held = []
    sem = asyncio.Semaphore(args.concurrency)

    async def guarded():
        async with sem:
            await open_one(port, ctx, held)

    await asyncio.gather(*(guarded() for _ in range(100)))
    await asyncio.sleep(1)
    base = rss(pid)
    await asyncio.gather(*(guarded() for _ in range(args.n - 100)))
    await asyncio.sleep(args.hold)
    after = rss(pid)
    per = (after - base) / (args.n - 100)
    kind = "ws"
    if ctx:
        kind = "wss " + held[0][1].get_extra_info("ssl_object").cipher()[0]
    print(f"{kind}: {len(held)} idle connections, server RSS "
          f"{base / 1e6:.1f} MB -> {after / 1e6:.1f} MB: {per:.0f} B per connection")
    for _, w in held:
        w.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default="target/release/ringcast")
    p.add_argument("-n", type=int, default=10000)
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--hold", type=float, default=2.0)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight")
    p.add_argument("--tls12-cipher", help="offer only TLS 1.2 with this OpenSSL cipher name")
    args = p.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    with tempfile.TemporaryDirectory() as dir:
        cmd = ["taskset", "-c", "0", args.bin, "serve", "--app", "echo", "--cores", "1",
               "--listen", f"127.0.0.1:{args.port}"]
        ctx = None
        if args.tls:
            cert, key = make_cert(dir)
            cmd += ["--tls-cert", cert, "--tls-key", key]
            ctx = ssl.create_default_context(cafile=cert)
            if args.tls12_cipher:
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
                ctx.set_ciphers(args.tls12_cipher)
        server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            asyncio.run(run(args, args.port, ctx, server.pid))
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    sys.exit(main())
