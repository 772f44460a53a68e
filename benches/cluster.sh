#!/usr/bin/env bash
# Cluster throughput: the same `ringcast load rooms` against a stand-alone server, one
# cluster node and NODES cluster nodes over one redis-server, interleaved, with each
# process's CPU time read from /proc before and after the measured interval.
#
#   benches/cluster.sh
#   NODES=3 RUNS=3 DURATION=10 NODE_CPUS="0 0 0" REDIS_CPU=1 LOAD_CPU=1 benches/cluster.sh
#
# Knobs (environment): NODES (3), RUNS (3), DURATION (5 s), NODE_CPUS (the CPU of
# node i, default all on SERVER_CPU), SERVER_CPU (0), REDIS_CPU (1), LOAD_CPU (1),
# LOAD ("rooms -c 1000 -r 10 -k 10 -w 64 -s 64"), PORT (19600), REDIS_PORT (19599),
# CARGO_TARGET_DIR (target), KEEP (keep the raw directory), RINGCAST (a ringcast
# binary to use instead of building one), REDIS_SERVER (the redis-server command,
# e.g. a bundled copy run through its own loader: "ld.so --library-path DIR DIR/redis-server").
#
# Needs redis-server (Debian package redis-server). Every process it starts is stopped
# by its PID. Prints, per setup: deliveries/s, p50/p99 latency, lost and duplicated
# (the load tool's checks), CPU-seconds per second of the nodes and of Redis, and
# deliveries per CPU-second of nodes plus Redis.
set -euo pipefail

cd "$(dirname "$0")/.."
source benches/lib.sh
NODES=${NODES:-3}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
SERVER_CPU=${SERVER_CPU:-0}
REDIS_CPU=${REDIS_CPU:-1}
LOAD_CPU=${LOAD_CPU:-1}
NODE_CPUS=${NODE_CPUS:-$(for _ in $(seq "$NODES"); do printf '%s ' "$SERVER_CPU"; done)}
LOAD=${LOAD:-"rooms -c 1000 -r 10 -k 10 -w 64 -s 64"}
PORT=${PORT:-19600}
REDIS_PORT=${REDIS_PORT:-19599}
RINGCAST=${RINGCAST:-${CARGO_TARGET_DIR:-target}/release/ringcast}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
RAW=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-cluster.XXXXXX")
read -r -a NODE_CPU <<<"$NODE_CPUS"
read -r -a REDIS_CMD <<<"$REDIS_SERVER"

command -v "${REDIS_CMD[0]}" >/dev/null || { echo "cluster.sh: needs redis-server (apt-get install redis-server)" >&2; exit 1; }

PIDS=()
stop_all() { # newest first: the nodes say goodbye to Redis before it stops
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
    PIDS=()
}
cleanup() {
    stop_all
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$RAW"; else echo "raw results in $RAW" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ "$RINGCAST" == "${CARGO_TARGET_DIR:-target}/release/ringcast" ]]; then
    echo "building (release) ..." >&2
    cargo build --release --bin ringcast >&2
fi

# CPU seconds (user + system) a process has used.
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "cluster.sh: nothing listening on $1" >&2
    return 1
}

# One run of setup $1 (standalone | nodes-1 | nodes-N): starts Redis and the nodes,
# runs the load over every node's URL, prints one result line into $RAW.
run_one() {
    local setup=$1 round=$2 count urls=() node_pids=() redis_pid=""
    case "$setup" in
        standalone) count=1 ;;
        nodes-*) count=${setup#nodes-} ;;
    esac
    if [[ "$setup" != standalone ]]; then
        taskset -c "$REDIS_CPU" "${REDIS_CMD[@]}" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
            --appendonly no >"$RAW/redis.log" 2>&1 &
        redis_pid=$!
        PIDS+=("$redis_pid")
        wait_port "$REDIS_PORT"
    fi
    for i in $(seq 0 $((count - 1))); do
        local port=$((PORT + i)) cpu=${NODE_CPU[$i]:-$SERVER_CPU} cluster=()
        [[ -n "$redis_pid" ]] && cluster=(--redis "redis://127.0.0.1:$REDIS_PORT/0")
        taskset -c "$cpu" "$RINGCAST" serve --app rooms --cpus "$cpu" \
            --listen "127.0.0.1:$port" "${cluster[@]}" >"$RAW/node$i.log" 2>&1 &
        node_pids+=($!)
        PIDS+=($!)
        urls+=("ws://127.0.0.1:$port/")
    done
    for i in $(seq 0 $((count - 1))); do wait_port $((PORT + i)); done
    local out="$RAW/$setup.$round.json" before_nodes=0 before_redis=0 start end
    # shellcheck disable=SC2086 # LOAD is words
    timeout $((DURATION + 120)) taskset -c "$LOAD_CPU" "$RINGCAST" load $LOAD -d "$DURATION" \
        "${urls[@]}" --cpus "$LOAD_CPU" --json --quiet >"$out" 2>"$RAW/$setup.$round.log" &
    local load=$!
    # CPU is sampled over a window inside the load's measured interval: from 1.5 s
    # after the start (connecting and joining 1,000 clients takes about 0.1 s) to
    # 0.5 s before its end (DURATION must be at least 3).
    sleep 1.5
    for pid in "${node_pids[@]}"; do before_nodes=$(awk -v a="$before_nodes" -v b="$(cpu_s "$pid")" 'BEGIN { print a + b }'); done
    [[ -n "$redis_pid" ]] && before_redis=$(cpu_s "$redis_pid")
    start=$(date +%s.%N)
    sleep "$(awk -v d="$DURATION" 'BEGIN { print d - 2 }')"
    local after_nodes=0 after_redis=0
    for pid in "${node_pids[@]}"; do after_nodes=$(awk -v a="$after_nodes" -v b="$(cpu_s "$pid")" 'BEGIN { print a + b }'); done
    [[ -n "$redis_pid" ]] && after_redis=$(cpu_s "$redis_pid")
    end=$(date +%s.%N)
    wait "$load" || echo "  $setup round $round: load failed: $(tail -n 1 "$RAW/$setup.$round.log")" >&2
    awk -v n0="$before_nodes" -v n1="$after_nodes" -v r0="$before_redis" -v r1="$after_redis" \
        -v t0="$start" -v t1="$end" 'BEGIN { t = t1 - t0; printf "%.3f %.3f\n", (n1 - n0) / t, (r1 - r0) / t }' \
        >"$RAW/$setup.$round.cpu"
    stop_all
}

field() { # field FILE KEY: a number from the load tool's JSON
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); k=sys.argv[2].split(".")
for p in k: d=d.get(p, {}) if isinstance(d, dict) else {}
print(d if isinstance(d,(int,float)) else "-")' "$1" "$2" 2>/dev/null || echo -
}

setups=(standalone nodes-1 "nodes-$NODES")
echo "machine: $(uname -sr), $(nproc) CPUs; nodes on CPUs ${NODE_CPU[*]}, Redis on $REDIS_CPU, load on $LOAD_CPU; $RUNS rounds of ${DURATION}s" >&2
for round in $(seq "$RUNS"); do
    for setup in "${setups[@]}"; do
        echo "round $round: $setup" >&2
        run_one "$setup" "$round"
    done
done

echo
echo "# ringcast cluster, $(date -u +%Y-%m-%d), $(uname -r): load $LOAD, medians of $RUNS runs"
echo "# node-CPU and redis-CPU: CPU-seconds per second (all nodes summed); per-CPU-s: deliveries per CPU-second of nodes + Redis"
printf '%-12s %12s %9s %9s %6s %6s %9s %10s %11s %7s\n' setup deliveries/s p50-us p99-us lost dup node-CPU redis-CPU per-CPU-s failed
for setup in "${setups[@]}"; do
    rows=()
    failed=0
    for round in $(seq "$RUNS"); do
        f="$RAW/$setup.$round.json"
        if [[ ! -s "$f" ]] || ! grep -q '"problems":\[\]' "$f"; then failed=$((failed + 1)); fi
        read -r ncpu rcpu <"$RAW/$setup.$round.cpu"
        rows+=("$(field "$f" rate_per_s) $(field "$f" latency.p50_us) $(field "$f" latency.p99_us) $(field "$f" delivery.lost) $(field "$f" delivery.duplicates) $ncpu $rcpu")
    done
    printf '%s\n' "${rows[@]}" | python3 -c '
import sys, statistics
rows = [l.split() for l in sys.stdin if l.strip()]
def med(i):
    vals = [float(r[i]) for r in rows if r[i] != "-"]
    return statistics.median(vals) if vals else float("nan")
rate, ncpu, rcpu = med(0), med(5), med(6)
per = rate / (ncpu + rcpu) if ncpu + rcpu > 0 else float("nan")
print("%-12s %12.0f %9.1f %9.1f %6.0f %6.0f %9.2f %10.2f %11.0f %7s" % (sys.argv[1], rate, med(1), med(2), med(3), med(4), ncpu, rcpu, per, sys.argv[2]))
' "$setup" "$failed/$RUNS"
done
