#!/usr/bin/env python3
"""The whole cost of an idle, upgraded WebSocket connection: the server's user-space
memory and the kernel's, per connection, at N connections (default 10,000).

    benches/idle_cost.py [-n N] [--hold S] [--port P] [--load BIN] -- SERVER_CMD...
    benches/idle_cost.py -- target/release/ringcast serve --app echo --cpus 0 --listen
    benches/idle_cost.py -- /tmp/uws-server echo --listen

The server command gets `127.0.0.1:PORT` appended (as in compare.sh). It runs pinned
to SERVER_CPU (0), `ringcast load connect -c N --sources 32 --hold S` to LOAD_CPU (1),
both with the open-files limit raised to what N needs (the hard limit, 20,000 here,
bounds N to about 19,900). Needs root (/proc/slabinfo). Everything it starts it stops
by PID.

Method. Three snapshots: A and B `--settle` seconds apart with the server idle (B - A
is the machine's drift, shown per cache so that other processes' noise is visible),
then C while the load holds its N connections: once TCP has 2N more sockets in use,
plus `--settle` seconds. (The server's open files are counted only after C: listing
/proc/PID/fd costs a proc inode and a dentry per file.) Per connection:
- user: the server's VmRSS (/proc/PID/status), C - B, over N;
- kernel: for each slab cache of /proc/slabinfo that holds connection state (TCP,
  tcp_bind_bucket, sock_inode_cache, dentry, filp, lsm_inode_cache, lsm_file_cache,
  eventpoll_epi, eventpoll_pwq, ep_head, io_kiocb, request_sock_TCP,
  skbuff_head_cache, every kmalloc-*), the change of active_objs * objsize, C - B,
  over N; plus the change of /proc/net/sockstat's TCP `mem` (pages charged to TCP
  buffers) times the page size. SLUB merges caches of one geometry: a merged cache is
  read once, under the name /proc/slabinfo shows, with the wanted names it also holds
  (from /sys/kernel/slab's aliases) beside it; its other tenants' allocations (e.g.
  anon_vma_chain's, by any process) are in its numbers too. Something on this machine
  walks /proc/PID/fd of every process every few seconds (a proc inode, a dentry and an
  LSM inode blob per fd listed): the proc_inode_cache growth is shown, and as many
  dentries and lsm_inode_cache blobs are taken out of the totals.
Both ends. The load tool's sockets are the client ends of the same loopback
connections, so every kernel figure is both ends' cost together; the load tool cannot
be measured alone (it needs a server to connect to). The caches that each end has
exactly one object of per connection (TCP, sock_inode_cache, dentry, filp, the LSM
blobs of that inode and file) and the TCP `mem` pages are split half and half: the
"server half". The rest cannot be attributed from these counters (bind buckets: only
the client binds a source port; io_kiocb: a ringcast server and the load tool each
keep a read in flight per connection; eventpoll_*: an epoll server's; kmalloc-*:
anyone's) and is reported as "other, either end". The server estimate is user +
server half; at most that plus all of "other".
"""
import argparse
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

PAIR = ["TCP", "sock_inode_cache", "dentry", "filp", "lsm_inode_cache", "lsm_file_cache"]
WANTED = PAIR + ["TCPv6", "request_sock_TCP", "tcp_bind_bucket", "tcp_bind2_bucket",
                 "eventpoll_epi", "eventpoll_pwq", "ep_head", "io_kiocb", "skbuff_head_cache"]
KMALLOC = re.compile(r"^kmalloc-")
PAGE = os.sysconf("SC_PAGE_SIZE")


def slabinfo():
    """name -> (active_objs, objsize)."""
    out = {}
    with open("/proc/slabinfo") as f:
        for line in f.readlines()[2:]:
            p = line.split()
            out[p[0]] = (int(p[1]), int(p[3]))
    return out


def merged_names():
    """For each name /proc/slabinfo shows: every cache name SLUB merged into it."""
    root, groups = "/sys/kernel/slab", {}
    for name in os.listdir(root):
        groups.setdefault(os.path.realpath(os.path.join(root, name)), []).append(name)
    return {n: g for g in groups.values() for n in g}


def sockstat():
    """TCP (inuse, mem pages)."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                p = line.split()
                return int(p[p.index("inuse") + 1]), int(p[p.index("mem") + 1])
    raise SystemExit("idle_cost: no TCP line in /proc/net/sockstat")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise SystemExit(f"idle_cost: no VmRSS for {pid}")


def snapshot(pid):
    return {"rss": rss_bytes(pid), "tcp": sockstat(), "slab": slabinfo()}


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10000, help="connections (10000)")
    ap.add_argument("--hold", type=float, default=6, help="seconds the load holds them (6)")
    ap.add_argument("--settle", type=float, default=1.5, help="seconds between snapshots (1.5)")
    ap.add_argument("--port", type=int, default=19700)
    ap.add_argument("--load", default="target/release/ringcast", help="the ringcast binary")
    ap.add_argument("server", nargs="+", help="server command; 127.0.0.1:PORT is appended")
    a = ap.parse_args()
    server_cpu, load_cpu = os.environ.get("SERVER_CPU", "0"), os.environ.get("LOAD_CPU", "1")
    if os.geteuid() != 0:
        raise SystemExit("idle_cost: needs root to read /proc/slabinfo")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.n + 100
    if hard != resource.RLIM_INFINITY and need > hard:
        raise SystemExit(f"idle_cost: {a.n} connections need {need} open files, hard limit {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))

    log = tempfile.NamedTemporaryFile(prefix="idle_cost.server.", suffix=".log", delete=False)
    cmd = ["taskset", "-c", server_cpu, *a.server, f"127.0.0.1:{a.port}"]
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    load = None
    try:
        for _ in range(200):
            if server.poll() is not None:
                raise SystemExit(f"idle_cost: the server exited (log: {log.name})")
            try:
                socket.create_connection(("127.0.0.1", a.port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"idle_cost: the server is not listening (log: {log.name})")
        pid = server.pid  # taskset execs the server: same PID
        time.sleep(a.settle)
        snap_a = snapshot(pid)
        time.sleep(a.settle)
        snap_b = snapshot(pid)
        url = f"ws://127.0.0.1:{a.port}/"
        load = subprocess.Popen(
            ["taskset", "-c", load_cpu, a.load, "load", "connect", url, "-c", str(a.n),
             "--sources", "32", "--hold", str(a.hold), "--server-pid", str(pid),
             "--cpus", load_cpu, "--json", "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        # Not /proc/PID/fd: listing it would make a proc inode and dentry per file.
        while sockstat()[0] < snap_b["tcp"][0] + 2 * a.n:
            if load.poll() is not None or time.time() > deadline:
                raise SystemExit("idle_cost: the connections did not all open: "
                                 + (load.stderr.read() if load.poll() is not None else "timeout"))
            time.sleep(0.05)
        time.sleep(a.settle)
        snap_c = snapshot(pid)
        if load.poll() is not None:
            raise SystemExit("idle_cost: the load let go before the snapshot: raise --hold")
        files = len(os.listdir(f"/proc/{pid}/fd"))  # after C: a check, not measured
        if files < a.n:
            raise SystemExit(f"idle_cost: the server holds {files} files, not {a.n} connections")
        out, err = load.communicate(timeout=a.hold + 60)
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        stop(server)
    report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    report_table(a, cmd, snap_a, snap_b, snap_c, report, err)
    os.unlink(log.name)


def report_table(a, cmd, snap_a, snap_b, snap_c, report, err):
    n = a.n
    merged = merged_names()
    rows, seen = [], set()
    names = WANTED + sorted(k for k in snap_c["slab"] if KMALLOC.match(k))
    for want in names:
        shown = next((m for m in merged.get(want, [want]) if m in snap_c["slab"]), None)
        if shown is None or shown in seen:
            continue
        seen.add(shown)
        held = sorted(set(merged.get(shown, [shown])) & set(WANTED) - {shown})
        rows.append((shown, held))

    def delta(snap0, snap1, name):
        (o0, size), (o1, _) = snap0["slab"].get(name, (0, 0)), snap1["slab"][name]
        return o1 - o0, (o1 - o0) * size, size

    print(f"# idle cost per upgraded connection, {n} connections; server: {' '.join(cmd)}")
    print(f"# {time.strftime('%Y-%m-%d')}, {os.uname().release}; kernel figures are both "
          f"ends (server + load tool); drift: the same cache's change over "
          f"{a.settle:.1f} s before the load, per connection")
    print(f"{'cache':<24} {'objsize':>7} {'objects':>9} {'bytes':>11} {'B/conn':>8} "
          f"{'drift':>7}  side")
    pair_b = other_b = 0
    for name, held in rows:
        objs, b, size = delta(snap_b, snap_c, name)
        drift = delta(snap_a, snap_b, name)[1] / n
        pair = name in PAIR
        if pair:
            pair_b += b
        else:
            other_b += b
        if not pair and abs(b) / n < 1 and name not in WANTED:
            continue  # a kmalloc cache that did not move: in the totals, not listed
        also = f"  (also holds {', '.join(held)})" if held else ""
        print(f"{name:<24} {size:>7} {objs:>+9} {b:>+11} {b / n:>8.1f} {drift:>7.1f}  "
              f"{'pair' if pair else 'other'}{also}")
    # Something on this machine lists /proc/PID/fd of every process every few seconds:
    # each listed fd costs a proc inode, its dentry and its LSM inode blob (1:1:1,
    # checked with socketpairs and nothing else). Not the connection's: taken out.
    walked = max(0, snap_c["slab"].get("proc_inode_cache", (0, 0))[0]
                 - snap_b["slab"].get("proc_inode_cache", (0, 0))[0])
    if walked:
        fix = walked * sum(snap_c["slab"][k][1] for k in ("dentry", "lsm_inode_cache")
                           if k in snap_c["slab"] and k in seen)
        pair_b -= fix
        print(f"{'- /proc/PID/fd walks':<24} {'':>7} {-walked:>+9} {-fix:>+11} {-fix / n:>8.1f} "
              f"{'':>7}  pair  (proc_inode_cache +{walked}: as many dentries and "
              f"lsm_inode_cache blobs are someone else's)")
    mem_b = (snap_c["tcp"][1] - snap_b["tcp"][1]) * PAGE
    pair_b += mem_b
    print(f"{'sockstat TCP mem (pages)':<24} {PAGE:>7} {snap_c['tcp'][1] - snap_b['tcp'][1]:>+9} "
          f"{mem_b:>+11} {mem_b / n:>8.1f} "
          f"{(snap_b['tcp'][1] - snap_a['tcp'][1]) * PAGE / n:>7.1f}  pair")
    others = sorted(
        ((k, (v[0] - snap_b["slab"].get(k, (0, 0))[0]) * v[1]) for k, v in snap_c["slab"].items()
         if k not in seen and k != "proc_inode_cache"), key=lambda kv: -abs(kv[1]))
    noted = [f"{k} {b / n:+.1f}" for k, b in others if abs(b) / n >= 16]
    if noted:
        print(f"# not counted (changed by 16 B/conn or more; other processes?): {', '.join(noted)}")
    user = snap_c["rss"] - snap_b["rss"]
    inuse = snap_c["tcp"][0] - snap_b["tcp"][0]
    kernel = pair_b + other_b
    print(f"TCP sockets in use: {inuse:+d} ({inuse / n:.2f} per connection: both ends)")
    print(f"load tool: {report.get('server_rss_per_connection', float('nan')):.0f} B/conn server "
          f"RSS by its own count; problems: {report.get('problems', err.strip()[-200:])}")
    print(f"{'user (server VmRSS)':<44} {user / n:>9.1f} B/conn")
    print(f"{'kernel, both ends':<44} {kernel / n:>9.1f} B/conn")
    print(f"{'  per-socket pair caches + TCP mem':<44} {pair_b / n:>9.1f}   "
          f"server half {pair_b / 2 / n:.1f}")
    print(f"{'  other, either end':<44} {other_b / n:>9.1f}")
    print(f"{'total, both ends (user + kernel)':<44} {(user + kernel) / n:>9.1f} B/conn")
    print(f"{'server estimate (user + server half)':<44} {(user + pair_b / 2) / n:>9.1f} B/conn"
          f" (at most {(user + pair_b / 2 + max(other_b, 0)) / n:.1f} with all of other)")


if __name__ == "__main__":
    main()
