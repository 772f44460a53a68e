#!/usr/bin/env bash
# permessage-deflate on and off: one `ringcast load` run against `serve --app APP` with
# and without --deflate (the load tool offers it too), server pinned to CPU 0, load to
# CPU 1; prints the load tool's JSON line and the loopback bytes per delivery (rough:
# every process's loopback traffic in the run counts, TCP/IP headers and ACKs too).
#
#   RINGCAST=target/release/ringcast benches/deflate.sh broadcast "broadcast -c 1000 -k 1 -w 64 -s 512"
#   RINGCAST=target/release/ringcast benches/deflate.sh rooms "rooms -c 1000 -r 10 -k 10 -w 64 -s 64 --rate 100"
set -euo pipefail
app=$1
load=$2
RINGCAST=${RINGCAST:-target/release/ringcast}
PORT=${PORT:-19800}
DURATION=${DURATION:-5}
for flag in "" --deflate; do
    taskset -c 0 "$RINGCAST" serve --app "$app" --listen 127.0.0.1:$PORT --cores 1 $flag >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do curl -fs http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done
    before=$(cat /sys/class/net/lo/statistics/rx_bytes)
    # shellcheck disable=SC2086
    json=$(taskset -c 1 "$RINGCAST" load $load ws://127.0.0.1:$PORT/ -d "$DURATION" --cpus 1 \
        --server-pid $pid --json $flag 2>/dev/null | tail -1)
    after=$(cat /sys/class/net/lo/statistics/rx_bytes)
    kill -TERM $pid
    wait $pid || true
    delivered=$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["delivery"]["delivered"])')
    echo "${flag:-plain} $json"
    echo "${flag:-plain} loopback bytes per delivery: $(( (after - before) / (delivered > 0 ? delivered : 1) ))"
done
