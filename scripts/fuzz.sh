#!/usr/bin/env bash
# Builds the libFuzzer targets (clang) and runs each for SECONDS (default 20), starting from
# the seed corpus in tests/fuzz/corpus/<target>/. Any crash fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-20}
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
shopt -s nullglob
ran=0
for bin in build/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    work=$(mktemp -d)
    seeds=tests/fuzz/corpus/$name
    [ -d "$seeds" ] || seeds=""
    echo "fuzz: $name for ${SECONDS_EACH}s"
    "$bin" -max_total_time="$SECONDS_EACH" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=0 -artifact_prefix="$work/" "$work" $seeds 2>&1 | tail -3
    rm -rf "$work"
    ran=$((ran + 1))
done
echo "fuzz: $ran targets ran"
