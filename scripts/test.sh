#!/usr/bin/env bash
# The test suite, on a fresh machine with only Rust installed: installs what the tests
# need first (cargo-nextest; redis-server, which the cluster tests start on free
# ports), then runs `cargo nextest run` with any arguments given (e.g. a filter).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
if ! command -v redis-server >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if command -v apt-get >/dev/null; then
        $sudo apt-get update && $sudo apt-get install -y redis-server
    else
        echo "scripts/test.sh: install redis-server (the cluster tests start real ones)" >&2
        exit 1
    fi
fi
exec cargo nextest run "$@"
