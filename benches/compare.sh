#!/usr/bin/env bash
# Compares ringcast with the baseline servers in examples/ (tokio-tungstenite,
# fastwebsockets), driving each with `ringcast load`.
#
#   benches/compare.sh                 # everything, 3 interleaved rounds
#   SCENARIOS="echo broadcast" RUNS=5 DURATION=10 benches/compare.sh
#   SCENARIOS="rooms rooms-big" benches/compare.sh
#
# Builds in release once, pins the server to SERVER_CPU and the load to LOAD_CPU
# (taskset, and each program's own --cpus), runs every scenario against every server
# RUNS times, interleaved (round 1 of all, then round 2, ...), each run bounded by
# `timeout`, and prints medians and the ratio of ringcast's rate per server
# CPU-second to each baseline's. Every server it starts is stopped by its PID.
#
# With UWS_SRC and USOCKETS_SRC pointing at uWebSockets' and uSockets' sources (not
# included here), benches/uws/build.sh builds a uWebSockets echo/broadcast/rooms server
# (-O3 -flto) that joins every scenario but rooms-big.
#
# Scenarios: echo (100 connections, 1 in flight), echo-p16 (16 in flight), echo-16k (10
# connections, 16 KiB messages, 1 in flight), broadcast (1,000 connections, 1
# publisher, window 64), broadcast-w32 and broadcast-w256 (the same with 32 and 256
# messages in flight), connect (CONNECT_N idle connections, echo app), connect-rooms
# (the same on the room app, welcome message included), rooms (the
# room protocol: 1,000 clients in 10 rooms, 10 publishers, window 64; also ringcast on
# 2 cores, SERVER_CPU and LOAD_CPU, so sharing a CPU with the load), rooms-big (one
# room of ROOMS_BIG_N members, 1 publisher, window 64: filling it costs n(n-1)/2
# member_joined notices, about 40 s for 10,000, outside the measured interval).
#
# Knobs (environment): SERVER_CPU (0), LOAD_CPU (1), RUNS (3), DURATION (5 s),
# SCENARIOS (all of the above), CONNECT_N (10000),
# ROOMS_BIG_N (10000), PORT (19400), CARGO_TARGET_DIR (target), KEEP (keep the raw
# JSON directory), ONLY (the servers to run, a regular expression on their names, e.g.
# "ringcast|uWebSockets"), BEFORE (a ringcast binary built from an earlier commit: it runs as
# `ringcast-before` in every scenario (the app each one needs), so x is this
# build's rate per server CPU-second over that one's, in the same interleaved run).
set -euo pipefail

cd "$(dirname "$0")/.."
source benches/lib.sh
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
SCENARIOS=${SCENARIOS:-"echo echo-p16 echo-16k broadcast broadcast-w32 broadcast-w256 connect connect-rooms rooms rooms-big"}
CONNECT_N=${CONNECT_N:-10000}
ROOMS_BIG_N=${ROOMS_BIG_N:-10000}
PORT=${PORT:-19400}
BIN=${CARGO_TARGET_DIR:-target}/release
RAW=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-compare.XXXXXX")

for tool in taskset timeout; do
    command -v "$tool" >/dev/null || { echo "compare.sh: needs $tool" >&2; exit 1; }
done

SERVER_PID=""
stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}
cleanup() {
    stop_server
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$RAW"; else echo "raw results in $RAW" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building (release) ..." >&2
cargo build --release --examples --bin ringcast >&2

# uWebSockets (echo, broadcast and rooms), from its public sources when given.
UWS_BIN=""
if [[ -n "${UWS_SRC:-}" && -n "${USOCKETS_SRC:-}" ]]; then
    UWS_BIN=$BIN/uws-server
    benches/uws/build.sh "$UWS_BIN" >&2
else
    echo "compare.sh: UWS_SRC and USOCKETS_SRC not set: skipping the uWebSockets baseline" >&2
fi

# The servers each scenario runs against: name, the CPUs the server is pinned to,
# then the command (without address). The first is the reference for the ratios.
# With BEFORE, the earlier build runs first in odd rounds and last in even ones, so
# neither build always gets the machine as the other left it.
servers_for() {
    if (( ${ROUND:-1} % 2 == 1 )); then before_for "$1"; fi
    servers_of_this_build "$1"
    if (( ${ROUND:-1} % 2 == 0 )); then before_for "$1"; fi
}

before_for() {
    [[ -n "${BEFORE:-}" ]] || return 0
    case "$1" in
        echo | echo-p16 | echo-16k | connect) echo "ringcast-before|$SERVER_CPU|$BEFORE serve --app echo --cpus $SERVER_CPU --listen" ;;
        broadcast | broadcast-w32 | broadcast-w256) echo "ringcast-before|$SERVER_CPU|$BEFORE serve --app broadcast --cpus $SERVER_CPU --listen" ;;
        rooms | rooms-big | connect-rooms) echo "ringcast-before|$SERVER_CPU|$BEFORE serve --app rooms --cpus $SERVER_CPU --listen" ;;
    esac
}

servers_of_this_build() {
    case "$1" in
        echo | echo-p16 | echo-16k | connect)
            echo "ringcast|$SERVER_CPU|$BIN/ringcast serve --app echo --cpus $SERVER_CPU --listen"
            echo "tokio-tungstenite|$SERVER_CPU|$BIN/examples/tokio_tungstenite_echo --listen"
            echo "fastwebsockets|$SERVER_CPU|$BIN/examples/fastwebsockets_echo --listen"
            [[ -z "$UWS_BIN" ]] || echo "uWebSockets|$SERVER_CPU|$UWS_BIN echo --listen"
            ;;
        broadcast | broadcast-w32 | broadcast-w256)
            echo "ringcast|$SERVER_CPU|$BIN/ringcast serve --app broadcast --cpus $SERVER_CPU --listen"
            echo "tokio-tungstenite|$SERVER_CPU|$BIN/examples/tokio_tungstenite_broadcast --listen"
            [[ -z "$UWS_BIN" ]] || echo "uWebSockets|$SERVER_CPU|$UWS_BIN broadcast --listen"
            ;;
        rooms)
            echo "ringcast|$SERVER_CPU|$BIN/ringcast serve --app rooms --cpus $SERVER_CPU --listen"
            echo "ringcast-2cores|$SERVER_CPU,$LOAD_CPU|$BIN/ringcast serve --app rooms --cpus $SERVER_CPU,$LOAD_CPU --listen"
            echo "tokio-tungstenite|$SERVER_CPU|$BIN/examples/tokio_tungstenite_rooms --listen"
            [[ -z "$UWS_BIN" ]] || echo "uWebSockets|$SERVER_CPU|$UWS_BIN rooms --listen"
            ;;
        connect-rooms)
            echo "ringcast|$SERVER_CPU|$BIN/ringcast serve --app rooms --cpus $SERVER_CPU --listen"
            [[ -z "$UWS_BIN" ]] || echo "uWebSockets|$SERVER_CPU|$UWS_BIN rooms --listen"
            ;;
        rooms-big)
            echo "ringcast|$SERVER_CPU|$BIN/ringcast serve --app rooms --cpus $SERVER_CPU --listen"
            echo "tokio-tungstenite|$SERVER_CPU|$BIN/examples/tokio_tungstenite_rooms --listen"
            ;;
        *) echo "compare.sh: unknown scenario $1" >&2; exit 1 ;;
    esac
}

# The load for each scenario.
load_args() {
    case "$1" in
        echo) echo "echo -c 100 -p 1 -s 32 -d $DURATION" ;;
        echo-p16) echo "echo -c 100 -p 16 -s 64 -d $DURATION" ;;
        echo-16k) echo "echo -c 10 -p 1 -s 16384 -d $DURATION" ;;
        broadcast) echo "broadcast -c 1000 -k 1 -w 64 -s 64 -d $DURATION" ;;
        broadcast-w32) echo "broadcast -c 1000 -k 1 -w 32 -s 64 -d $DURATION" ;;
        broadcast-w256) echo "broadcast -c 1000 -k 1 -w 256 -s 64 -d $DURATION" ;;
        connect | connect-rooms) echo "connect -c $CONNECT_N --hold 2" ;;
        rooms) echo "rooms -c 1000 -r 10 -k 10 -w 64 -s 64 -d $DURATION" ;;
        rooms-big) echo "rooms -c $ROOMS_BIG_N -r 1 -k 1 -w 64 -s 64 -d $DURATION --join-timeout 300" ;;
    esac
}

# Seconds a run may take beyond DURATION (connecting, joining, draining).
slack_for() {
    case "$1" in
        rooms-big) echo 420 ;;
        *) echo 120 ;;
    esac
}

# The servers ONLY (an extended regular expression on the name) lets through; all
# without it.
selected() {
    if [[ -n "${ONLY:-}" ]]; then grep -E "^(${ONLY})\|" || true; else cat; fi
}

wait_listening() {
    local port=$1
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# One run: starts the server, drives it, stops it; appends the JSON line to $RAW.
run_one() {
    local scenario=$1 name=$2 cpus=$3 cmd=$4 round=$5
    PORT=$((PORT + 1))
    local out="$RAW/$scenario.$name.$round.json"
    : >"$out"
    # shellcheck disable=SC2086 # $cmd is a command line
    taskset -c "$cpus" $cmd "127.0.0.1:$PORT" >"$RAW/$scenario.$name.$round.server.log" 2>&1 &
    SERVER_PID=$!
    if ! wait_listening "$PORT"; then
        echo "  $scenario $name: server did not start (see log below)" >&2
        cat "$RAW/$scenario.$name.$round.server.log" >&2
        stop_server
        return 0
    fi
    # shellcheck disable=SC2046 # load_args gives words
    if ! timeout $((DURATION + $(slack_for "$scenario"))) taskset -c "$LOAD_CPU" "$BIN/ringcast" load $(load_args "$scenario") \
        "ws://127.0.0.1:$PORT/" --cpus "$LOAD_CPU" --server-pid "$SERVER_PID" --json --quiet \
        >"$out" 2>"$RAW/$scenario.$name.$round.load.log"; then
        echo "  $scenario $name round $round: $(tail -n 1 "$RAW/$scenario.$name.$round.load.log")" >&2
    fi
    stop_server
    printf '  %-10s %-18s round %s: %s/s, %s per server CPU-second\n' "$scenario" "$name" "$round" \
        "$(field rate_per_s <"$out")" "$(field per_server_cpu_s <"$out")" >&2
}

# A number from a JSON line (empty if absent or null); `outer.key` for a key inside
# the object `outer` (e.g. latency.p50_us: fanout_latency has a p50_us too).
field() {
    case "$1" in
        *.*) sed -n "s/.*\"${1%%.*}\":{[^}]*\"${1#*.}\":\(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p" ;;
        *) sed -n "s/.*\"$1\":\(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p" ;;
    esac
}

# Median of the numbers on stdin; "-" if none.
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Median of one field over a server's runs of a scenario.
med() {
    local scenario=$1 name=$2 key=$3 f
    for f in "$RAW/$scenario.$name".*[0-9].json; do
        [[ -s "$f" ]] && field "$key" <"$f"
    done | median
}

fmt() { [[ "$1" == "-" ]] && echo "-" || printf "%.${2}f" "$1"; }

echo "machine: $(uname -sr), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2
echo "server on CPU $SERVER_CPU, load on CPU $LOAD_CPU, $RUNS rounds, ${DURATION}s per run" >&2
for round in $(seq "$RUNS"); do
    ROUND=$round
    echo "round $round" >&2
    for scenario in $SCENARIOS; do
        while IFS='|' read -r name cpus cmd; do
            run_one "$scenario" "$name" "$cpus" "$cmd" "$round"
        done < <(servers_for "$scenario" | selected)
    done
done

echo
echo "# ringcast vs baselines, $(date -u +%Y-%m-%d), $(uname -r), medians of $RUNS runs"
echo "# server pinned to CPU $SERVER_CPU, load to CPU $LOAD_CPU; x = ringcast's rate per server CPU-second / this server's"
echo "# load-CPU% near 100: the load tool, not the server, was the limit (compare per server CPU-second)"
echo "# rooms: p50/p99 per delivery; room-p50/p99 (us) until the room's last member had it; join-s: filling the rooms"
printf '%-10s %-18s %12s %14s %8s %8s %9s %9s %10s %10s %7s %9s %6s %6s\n' \
    scenario server rate/s per-srv-CPU-s srv-CPU% load-CPU% p50-us p99-us room-p50 room-p99 join-s RSS/conn x failed
for scenario in $SCENARIOS; do
    ref=$(med "$scenario" ringcast per_server_cpu_s)
    while IFS='|' read -r name _ _; do
        rate=$(med "$scenario" "$name" rate_per_s)
        per_cpu=$(med "$scenario" "$name" per_server_cpu_s)
        ratio="-"
        if [[ "$ref" != "-" && "$per_cpu" != "-" ]]; then
            ratio=$(awk -v a="$ref" -v b="$per_cpu" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
        fi
        failed=0
        for f in "$RAW/$scenario.$name".*[0-9].json; do
            if [[ ! -s "$f" ]] || ! grep -q '"problems":\[\]' "$f"; then failed=$((failed + 1)); fi
        done
        printf '%-10s %-18s %12s %14s %8s %8s %9s %9s %10s %10s %7s %9s %6s %6s\n' "$scenario" "$name" \
            "$(fmt "$rate" 0)" "$(fmt "$per_cpu" 0)" "$(fmt "$(med "$scenario" "$name" server_cpu_percent)" 0)" \
            "$(fmt "$(med "$scenario" "$name" load_cpu_percent)" 0)" \
            "$(fmt "$(med "$scenario" "$name" latency.p50_us)" 1)" "$(fmt "$(med "$scenario" "$name" latency.p99_us)" 1)" \
            "$(fmt "$(med "$scenario" "$name" fanout_latency.p50_us)" 0)" \
            "$(fmt "$(med "$scenario" "$name" fanout_latency.p99_us)" 0)" \
            "$(fmt "$(med "$scenario" "$name" join_s)" 1)" \
            "$(fmt "$(med "$scenario" "$name" server_rss_per_connection)" 0)" "$ratio" "$failed/$RUNS"
    done < <(servers_for "$scenario" | selected)
done
