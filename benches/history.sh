#!/usr/bin/env bash
# Room history's cost: the same `ringcast load rooms` against the rooms app with history
# on (history_size 64, the default) and off (0), and, with BEFORE, a build from before
# history existed; interleaved rounds, server pinned to SERVER_CPU, load to LOAD_CPU.
#
#   benches/history.sh
#   BEFORE=/tmp/ringcast-before CORES="1 2" RUNS=3 DURATION=5 benches/history.sh
#
# Knobs (environment): RUNS (3), DURATION (5 s), CORES ("1": server cores, each run on
# CPUs 0..n-1 when n > 1, sharing the load's CPU), SERVER_CPU (0), LOAD_CPU (1),
# LOAD ("rooms -c 1000 -r 10 -k 10 -w 64 -s 64"), PORT (19700), BEFORE (an earlier
# ringcast binary), CARGO_TARGET_DIR (target), KEEP (keep the raw directory), RINGCAST
# (a ringcast binary to use instead of building one).
# Prints per setup: deliveries/s, deliveries per server CPU-second, p50/p99, lost/dup.
set -euo pipefail

cd "$(dirname "$0")/.."
source benches/lib.sh
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
CORES=${CORES:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
LOAD=${LOAD:-"rooms -c 1000 -r 10 -k 10 -w 64 -s 64"}
PORT=${PORT:-19700}
BUILT=${CARGO_TARGET_DIR:-target}/release/ringcast
RINGCAST=${RINGCAST:-$BUILT}
RAW=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-history.XXXXXX")

SERVER_PID=""
cleanup() {
    [[ -z "$SERVER_PID" ]] || stop_pid "$SERVER_PID"
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$RAW"; else echo "raw results in $RAW" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ "$RINGCAST" == "$BUILT" ]]; then
    echo "building (release) ..." >&2
    cargo build --release --bin ringcast >&2
fi

# name|binary|extra serve flags
setups() {
    [[ -z "${BEFORE:-}" ]] || echo "before|$BEFORE|"
    echo "history-off|$RINGCAST|--history-size 0"
    echo "history-on|$RINGCAST|--history-size 64"
}

run_one() {
    local name=$1 binary=$2 flags=$3 cores=$4 round=$5 cpus
    cpus=$SERVER_CPU
    ((cores == 1)) || cpus="0-$((cores - 1))"
    PORT=$((PORT + 1))
    # shellcheck disable=SC2086 # flags are words
    taskset -c "$cpus" "$binary" serve --app rooms --cpus "$cpus" --listen "127.0.0.1:$PORT" $flags \
        >"$RAW/server.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$PORT" || true
    # shellcheck disable=SC2086 # LOAD is words
    timeout $((DURATION + 120)) taskset -c "$LOAD_CPU" "$RINGCAST" load $LOAD -d "$DURATION" \
        "ws://127.0.0.1:$PORT/" --cpus "$LOAD_CPU" --server-pid "$SERVER_PID" --json --quiet \
        >"$RAW/$name.$cores.$round.json" 2>"$RAW/$name.$cores.$round.log" ||
        echo "  $name cores $cores round $round failed: $(tail -n 1 "$RAW/$name.$cores.$round.log")" >&2
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}

echo "machine: $(uname -sr), $(nproc) CPUs; $RUNS rounds of ${DURATION}s; load: $LOAD" >&2
for round in $(seq "$RUNS"); do
    for cores in $CORES; do
        while IFS='|' read -r name binary flags; do
            echo "round $round: $name on $cores core(s)" >&2
            run_one "$name" "$binary" "$flags" "$cores" "$round"
        done < <(setups)
    done
done

echo
echo "# room history on and off, $(date -u +%Y-%m-%d), $(uname -r): load $LOAD, medians of $RUNS runs"
printf '%-12s %5s %12s %14s %9s %9s %6s %6s %7s\n' setup cores deliveries/s per-srv-CPU-s p50-us p99-us lost dup failed
for cores in $CORES; do
    while IFS='|' read -r name _ _; do
        python3 - "$RAW" "$name" "$cores" "$RUNS" <<'PY'
import json, statistics, sys
raw, name, cores, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows, failed = [], 0
for r in range(1, runs + 1):
    try:
        d = json.load(open(f"{raw}/{name}.{cores}.{r}.json"))
    except Exception:
        failed += 1
        continue
    if d.get("problems"):
        failed += 1
    rows.append(d)
def med(get):
    vals = [v for v in (get(d) for d in rows) if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else float("nan")
print("%-12s %5s %12.0f %14.0f %9.1f %9.1f %6.0f %6.0f %7s" % (
    name, cores, med(lambda d: d["rate_per_s"]), med(lambda d: d.get("per_server_cpu_s")),
    med(lambda d: d["latency"]["p50_us"]), med(lambda d: d["latency"]["p99_us"]),
    med(lambda d: d["delivery"]["lost"]), med(lambda d: d["delivery"]["duplicates"]),
    f"{failed}/{runs}"))
PY
    done < <(setups)
done
