#!/bin/bash
# wss:// against ws:// with the load tool (issue 14): idle memory per connection at
# 10,000 (`connect`) and broadcast fan-out (`broadcast`, 1,000 connections, window 64,
# 64-byte messages), server on CPU 0 and the load tool on CPU 1.
#   benches/tls.sh [BIN] [connect|broadcast] [RUNS]
set -euo pipefail
BIN=${1:-target/release/ringcast}; SC=${2:-connect}; RUNS=${3:-2}
DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT
# CA:FALSE: webpki refuses a CA certificate used as the server's own.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$DIR/key.pem" -out "$DIR/cert.pem" -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
for run in $(seq "$RUNS"); do
  for MODE in ws wss; do
    P=$((9200 + RANDOM % 500)); TLS=(); CA=()
    if [ "$MODE" = wss ]; then
      TLS=(--tls-cert "$DIR/cert.pem" --tls-key "$DIR/key.pem"); CA=(--ca "$DIR/cert.pem")
    fi
    APP=broadcast; [ "$SC" = connect ] && APP=echo
    taskset -c 0 "$BIN" serve --app $APP --cores 1 --listen 127.0.0.1:$P "${TLS[@]}" 2>/dev/null &
    S=$!
    sleep 0.5
    if [ "$SC" = connect ]; then
      taskset -c 1 "$BIN" load connect $MODE://127.0.0.1:$P/ -c 10000 --sources 32 \
        --server-pid $S --hold 2 "${CA[@]}"
    else
      taskset -c 1 "$BIN" load broadcast $MODE://127.0.0.1:$P/ -c 1000 -k 1 -w 64 -s 64 -d 5 \
        --cpus 1 --server-pid $S "${CA[@]}"
    fi
    kill $S; wait $S 2>/dev/null || true
  done
done
