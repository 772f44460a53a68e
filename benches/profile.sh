#!/usr/bin/env bash
# Where a server's cycles go under one load scenario: runs the server pinned to
# SERVER_CPU, the load (`ringcast load`) pinned to LOAD_CPU, records the server with
# `perf record` during the measured interval, and prints the top symbols (self time,
# kernel and user) and the user/kernel split. Everything it starts it stops by PID.
#
#   benches/profile.sh SCENARIO SERVER_CMD...      # the server command without address
#   benches/profile.sh echo target/release/ringcast serve --app echo --cpus 0 --listen
#   benches/profile.sh broadcast-w32 /tmp/uws-server broadcast --listen
#
# Scenarios (as in compare.sh): echo (100 connections, 32 B, 1 in flight), echo-16k (10
# connections, 16 KiB), broadcast-w32 / broadcast-w256 (1,000 connections, 1
# publisher, 64 B, window 32 / 256), rooms (1,000 clients, 10 rooms, 10 publishers).
# Knobs: SERVER_CPU (0), LOAD_CPU (1), DURATION (5 s), PORT (19700), TOP (25 symbols),
# KEEP (keep perf.data and print where),
# LOAD (the ringcast binary driving the load: target/release/ringcast).
set -euo pipefail

cd "$(dirname "$0")/.."
source benches/lib.sh
[[ $# -ge 2 ]] || { sed -n '2,14p' "$0" >&2; exit 2; }
SCENARIO=$1
shift
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
DURATION=${DURATION:-5}
PORT=${PORT:-19700}
TOP=${TOP:-25}
LOAD=${LOAD:-target/release/ringcast}
command -v perf >/dev/null || { echo "profile.sh: needs perf" >&2; exit 1; }

case "$SCENARIO" in
    echo) ARGS="echo -c 100 -p 1 -s 32" ;;
    echo-16k) ARGS="echo -c 10 -p 1 -s 16384" ;;
    broadcast-w32) ARGS="broadcast -c 1000 -k 1 -w 32 -s 64" ;;
    broadcast-w256) ARGS="broadcast -c 1000 -k 1 -w 256 -s 64" ;;
    rooms) ARGS="rooms -c 1000 -r 10 -k 10 -w 64 -s 64" ;;
    *) echo "profile.sh: unknown scenario $SCENARIO" >&2; exit 2 ;;
esac

OUT=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-profile.XXXXXX")
SERVER_PID=""
PERF_PID=""
cleanup() {
    [[ -z "$PERF_PID" ]] || stop_pid "$PERF_PID"
    [[ -z "$SERVER_PID" ]] || stop_pid "$SERVER_PID"
    if [[ -n "${KEEP:-}" ]]; then echo "perf data in $OUT" >&2; else rm -rf "$OUT"; fi
}
trap cleanup EXIT

taskset -c "$SERVER_CPU" "$@" "127.0.0.1:$PORT" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
wait_port "$PORT" || true
# shellcheck disable=SC2086 # $ARGS is words
timeout $((DURATION + 120)) taskset -c "$LOAD_CPU" "$LOAD" load $ARGS -d "$DURATION" \
    "ws://127.0.0.1:$PORT/" --cpus "$LOAD_CPU" --server-pid "$SERVER_PID" --quiet --json \
    >"$OUT/load.json" 2>"$OUT/load.log" &
LOAD_PID=$!
# The load connects (and joins) first: record the last DURATION - 1 seconds.
sleep 2
perf record -F 1999 -g -p "$SERVER_PID" -o "$OUT/perf.data" -- sleep $((DURATION - 1)) \
    >/dev/null 2>"$OUT/perf.log" &
PERF_PID=$!
wait "$PERF_PID" || true
PERF_PID=""
wait "$LOAD_PID" || { echo "profile.sh: the load failed: $(tail -n 2 "$OUT/load.log")" >&2; }
echo "# $SCENARIO: $* ($(sed -n 's/.*"per_server_cpu_s":\([0-9.]*\).*/\1/p' "$OUT/load.json") per server CPU-second)"
perf report -i "$OUT/perf.data" --no-children -g none --sort dso 2>/dev/null | grep -v '^#' | grep -v '^$' | head -6
echo
perf report -i "$OUT/perf.data" --no-children -g none --sort symbol 2>/dev/null | grep -v '^#' | grep -v '^$' \
    | grep -v '^ *|' | grep -v '^ *-' | head -"$TOP"
