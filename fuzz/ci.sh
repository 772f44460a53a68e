#!/usr/bin/env bash
# CI's short fuzz pass (FUZZING.md): builds every cargo-fuzz target and runs each for
# FUZZ_SECONDS (default 15) from its seeds and whatever corpus earlier runs left.
# Needs nightly Rust; without it, says so and passes. A crash fails the pass and
# leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: nightly Rust not found; skipping the fuzz pass"
    exit 0
fi
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked

seconds=${FUZZ_SECONDS:-15}
cargo +nightly fuzz build
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    seeds=()
    [ -d "seeds/$target" ] && seeds=("seeds/$target")
    echo "fuzz: $target for ${seconds} s"
    cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1
done
