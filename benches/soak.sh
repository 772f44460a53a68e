#!/usr/bin/env bash
# Soak: rooms traffic with churn. A steady `ringcast load rooms` run (members and
# publishers that stay, every delivery checked exactly once and in order) beside
# `ringcast load churn` (short-lived clients connecting, joining the same rooms and
# their own, talking, setting metadata, leaving, then closing cleanly, resetting,
# dropping, or never finishing the upgrade), against one server core, for DURATION
# seconds. Samples the server's resident memory and /metrics every SAMPLE seconds.
#
#   benches/soak.sh                      # 600 s, the full soak
#   DURATION=30 benches/soak.sh          # a quick check
#
# Timeline: server up; steady run starts and fills its rooms; churn starts once
# every steady member is connected and runs until 20 s before the steady run ends
# (so /metrics can show the steady connections alone again); the steady run then
# drains and closes.
#
# Verdict (exit 1 if any fails): the steady run clean (0 lost, 0 duplicated, 0
# reordered, no protocol problem, no drop); churn clients all served (none refused,
# timed out or answered with an error); RSS at the last sample with churn running
# under MAX_GROWTH % above the first sample WARMUP seconds into the churn; the server alive; /metrics
# after churn shows the steady connections open, and at the end 0 open, 0 protocol
# errors, 0 slow consumers.
#
# Knobs (environment): DURATION (600 s), WARMUP (60 s; DURATION/5 for runs under
# 300 s), SAMPLE (10 s), SERVER_CPU (0), LOAD_CPU (1), PORT (19600), STEADY_C (1000
# members), STEADY_ROOMS (10), STEADY_PUBS (10), STEADY_RATE (200 messages/s per
# publisher), CHURN_WORKERS (16), CHURN_RATE (200 connections/s), MAX_GROWTH (5),
# BUILD (1: `cargo build --release --bin ringcast` first; 0: use the binary as it
# is), CARGO_TARGET_DIR (target), OUT (result directory; default a new one in /tmp).
# Every process it starts is stopped by its PID; each run is bounded by `timeout`.
set -euo pipefail

cd "$(dirname "$0")/.."
source benches/lib.sh
DURATION=${DURATION:-600}
if ((DURATION >= 300)); then WARMUP=${WARMUP:-60}; else WARMUP=${WARMUP:-$((DURATION / 5))}; fi
SAMPLE=${SAMPLE:-10}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-19600}
STEADY_C=${STEADY_C:-1000}
STEADY_ROOMS=${STEADY_ROOMS:-10}
STEADY_PUBS=${STEADY_PUBS:-10}
STEADY_RATE=${STEADY_RATE:-200}
CHURN_WORKERS=${CHURN_WORKERS:-16}
CHURN_RATE=${CHURN_RATE:-200}
MAX_GROWTH=${MAX_GROWTH:-5}
BUILD=${BUILD:-1}
BIN=${CARGO_TARGET_DIR:-target}/release/ringcast
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/ringcast-soak.XXXXXX")}
CHURN_S=$((DURATION - 20))
((CHURN_S >= 5)) || { echo "soak.sh: DURATION must be at least 25 s" >&2; exit 2; }
mkdir -p "$OUT"

for tool in taskset timeout curl awk; do
    command -v "$tool" >/dev/null || { echo "soak.sh: needs $tool" >&2; exit 2; }
done

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ "$BUILD" == 1 ]]; then
    echo "building (release) ..." >&2
    cargo build --release --bin ringcast >&2
fi

URL="ws://127.0.0.1:$PORT/"
taskset -c "$SERVER_CPU" "$BIN" serve --app rooms --cpus "$SERVER_CPU" \
    --listen "127.0.0.1:$PORT" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
    sleep 0.1
done
T0=$(date +%s.%N)

# One line of /metrics summed over cores: open accepted opened closed rejected
# protocol_errors slow_consumers ("- - - - - - -" if /metrics did not answer).
metrics() {
    { curl -s --max-time 2 "http://127.0.0.1:$PORT/metrics" || true; } | awk '
        /^ringcast_connections_open\{/ {o += $2}
        /^ringcast_connections_accepted_total\{/ {a += $2}
        /^ringcast_connections_opened_total\{/ {op += $2}
        /^ringcast_connections_closed_total\{/ {c += $2}
        /^ringcast_handshakes_rejected_total/ {r += $2}
        /^ringcast_protocol_errors_total/ {p += $2}
        /^ringcast_slow_consumers_total/ {s += $2; n++}
        END { if (n) print o, a, op, c, r, p, s; else print "- - - - - - -" }'
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo -; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat" 2>/dev/null || echo -; }
elapsed() { awk -v t0="$T0" -v now="$(date +%s.%N)" 'BEGIN {printf "%.1f", now - t0}'; }

echo "soak: server PID $SERVER_PID on CPU $SERVER_CPU, load on CPU $LOAD_CPU, ${DURATION} s, results in $OUT" >&2
LIMIT=$((DURATION + 180))
timeout "$LIMIT" taskset -c "$LOAD_CPU" "$BIN" load rooms "$URL" -c "$STEADY_C" \
    -r "$STEADY_ROOMS" -k "$STEADY_PUBS" -w 64 -s 64 --rate "$STEADY_RATE" -d "$DURATION" \
    --guests --cpus "$LOAD_CPU" --server-pid "$SERVER_PID" --json --quiet \
    >"$OUT/steady.json" 2>"$OUT/steady.err" &
STEADY_PID=$!
PIDS+=("$STEADY_PID")

# Churn joins the steady rooms only once they are full: wait for every member.
for _ in $(seq 600); do
    read -r open _ <<<"$(metrics)"
    [[ "$open" != - && "$open" -ge "$STEADY_C" ]] && break
    kill -0 "$STEADY_PID" 2>/dev/null || break
    sleep 0.1
done
sleep 2
echo "soak: steady members up at $(elapsed) s; churn for ${CHURN_S} s" >&2
timeout $((CHURN_S + 60)) taskset -c "$LOAD_CPU" "$BIN" load churn "$URL" \
    -c "$CHURN_WORKERS" -r "$STEADY_ROOMS" --rate "$CHURN_RATE" -d "$CHURN_S" \
    --cpus "$LOAD_CPU" --server-pid "$SERVER_PID" --json --quiet \
    >"$OUT/churn.json" 2>"$OUT/churn.err" &
CHURN_PID=$!
PIDS+=("$CHURN_PID")
CHURN_START=$(elapsed)

echo "t_s,phase,rss_kb,server_cpu_ticks,open,accepted,opened,closed,rejected,protocol_errors,slow_consumers" >"$OUT/samples.csv"
sample() {
    local phase=$1 m
    m=$(metrics)
    echo "$(elapsed),$phase,$(rss_kb),$(cpu_ticks),${m// /,}" >>"$OUT/samples.csv"
}
CHURN_DONE=""
next=0
while kill -0 "$STEADY_PID" 2>/dev/null; do
    if [[ -z "$CHURN_DONE" ]] && ! kill -0 "$CHURN_PID" 2>/dev/null; then
        CHURN_DONE=$(elapsed)
        sleep 2 # let the server finish closing the last churn connections
        sample after-churn
    fi
    now=$(elapsed)
    if awk -v n="$now" -v d="$next" 'BEGIN {exit !(n >= d)}'; then
        if [[ -z "$CHURN_DONE" ]]; then sample churn; else sample steady; fi
        next=$(awk -v n="$next" -v s="$SAMPLE" 'BEGIN {print n + s}')
    fi
    sleep 0.5
done
STEADY_RC=0
wait "$STEADY_PID" || STEADY_RC=$?
CHURN_RC=0
wait "$CHURN_PID" || CHURN_RC=$?
sleep 1
sample end
SERVER_ALIVE=yes
kill -0 "$SERVER_PID" 2>/dev/null || SERVER_ALIVE=no

# The verdict, from the two JSON reports and the samples.
python3 - "$OUT" "$WARMUP" "$MAX_GROWTH" "$STEADY_C" "$STEADY_RC" "$CHURN_RC" "$SERVER_ALIVE" \
    "$CHURN_START" <<'EOF' | tee "$OUT/summary.txt"
import csv, json, sys
out, warmup, max_growth, steady_c = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
steady_rc, churn_rc, alive, churn_start = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], float(sys.argv[8])
fail = []

def load(name):
    try:
        return json.load(open(f"{out}/{name}.json"))
    except Exception as e:
        fail.append(f"{name}: no report ({e}); see {out}/{name}.err")
        return {}

steady, churn = load("steady"), load("churn")
rows = list(csv.DictReader(open(f"{out}/samples.csv")))
num = lambda v: None if v in ("-", "", None) else float(v)

d = steady.get("delivery") or {}
checks = steady.get("room_checks") or {}
print(f"steady: {steady.get('connections')} members in {steady.get('rooms')} rooms, "
      f"{steady.get('publishers')} publishers at {steady.get('rate')} msg/s: "
      f"{steady.get('count', 0):,} deliveries in {steady.get('seconds', 0):.0f} s = "
      f"{steady.get('rate_per_s', 0):,.0f}/s, p99 {(steady.get('latency') or {}).get('p99_us', 0) / 1000:.1f} ms; "
      f"server CPU {steady.get('server_cpu_percent') or 0:.0f}%, load CPU {steady.get('load_cpu_percent', 0):.0f}% "
      f"(steady) + {churn.get('load_cpu_percent', 0):.0f}% (churn)")
print(f"steady: lost {d.get('lost')}, duplicated {d.get('duplicates')}, reordered {d.get('reordered')} "
      f"of {d.get('expected', 0):,} owed; guest notices {checks.get('guest_notices', 0):,}; "
      f"dropped {steady.get('dropped')}; problems {steady.get('problems')}")
if steady_rc != 0 or steady.get("problems") or d.get("lost") != 0 or d.get("duplicates") != 0 \
        or d.get("reordered") != 0:
    fail.append(f"steady run not clean (exit {steady_rc})")

c = churn.get("churn") or {}
print(f"churn: {c.get('attempts', 0):,} clients in {churn.get('seconds', 0):.0f} s = "
      f"{churn.get('rate_per_s', 0):.0f}/s: {c.get('upgraded', 0):,} upgraded "
      f"({c.get('clean_closes', 0):,} closed cleanly, {c.get('resets', 0):,} reset, "
      f"{c.get('vanished', 0):,} dropped), {c.get('half_open', 0):,} half-open; "
      f"{c.get('joins', 0):,} joins, {c.get('leaves', 0):,} leaves, "
      f"{c.get('messages', 0):,} room messages, {c.get('metadata', 0):,} metadata; "
      f"{c.get('failures')} failed" + (f" (first: {c['first_failure']})" if c.get("first_failure") else ""))
if churn_rc != 0 or churn.get("problems"):
    fail.append(f"churn run not clean (exit {churn_rc}): {churn.get('problems')}")

churning = [r for r in rows if r["phase"] == "churn" and num(r["rss_kb"])]
warm = next((r for r in churning if float(r["t_s"]) - churn_start >= warmup), None)
if warm is None or churning[-1] is warm:
    fail.append("too few samples after warm-up to judge memory")
else:
    w, e = num(warm["rss_kb"]), num(churning[-1]["rss_kb"])
    after = [num(r["rss_kb"]) for r in churning if float(r["t_s"]) >= float(warm["t_s"])]
    growth = (e - w) / w * 100
    print(f"RSS: {w:,.0f} kB at {float(warm['t_s']):.0f} s (warm-up), {e:,.0f} kB at "
          f"{float(churning[-1]['t_s']):.0f} s (last sample with churn): {growth:+.2f}%; "
          f"min/max after warm-up {min(after):,.0f}/{max(after):,.0f} kB")
    if growth >= max_growth:
        fail.append(f"RSS grew {growth:.2f}% after warm-up (limit {max_growth}%)")

def show(label, r):
    print(f"/metrics {label} (t {r['t_s']} s, RSS {r['rss_kb']} kB): open {r['open']}, accepted "
          f"{r['accepted']}, opened {r['opened']}, closed {r['closed']}, handshakes rejected "
          f"{r['rejected']}, protocol errors {r['protocol_errors']}, slow consumers {r['slow_consumers']}")
after_churn = next((r for r in rows if r["phase"] == "after-churn"), None)
if after_churn is None:
    fail.append("no sample after churn ended")
else:
    show("after churn", after_churn)
    if num(after_churn["open"]) != steady_c:
        fail.append(f"after churn {after_churn['open']} connections open, not the {steady_c} steady ones")
end = rows[-1]
show("at the end", end)
if num(end["open"]) != 0 or num(end["protocol_errors"]) != 0 or num(end["slow_consumers"]) != 0:
    fail.append("/metrics at the end: open, protocol errors or slow consumers not 0")
if alive != "yes":
    fail.append("the server died")
print("verdict: " + ("PASS" if not fail else "FAIL: " + "; ".join(fail)))
sys.exit(1 if fail else 0)
EOF
