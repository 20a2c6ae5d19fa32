#!/usr/bin/env bash
# Installs what is missing, builds the test build (ASan+UBSan) and runs every test.
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -L unit (ctest only)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset asan >/dev/null
cmake --build --preset asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The real llama-server some tests need: a Debian testing chroot, built once and cached outside
# the repo (docs/e2e.md). DROVER_E2E_LLAMA=0 skips it (those tests then say they skipped).
export DROVER_E2E_LLAMA=${DROVER_E2E_LLAMA:-1}
if [ "$DROVER_E2E_LLAMA" != 0 ]; then
    scripts/llama-chroot.sh build
fi
ctest --preset asan "$@"
# End to end: the official openai npm client, drover sim and a real llama-server (docs/e2e.md).
# Skipped only when ctest was given a filter (scripts/test.sh -L unit and the like).
if [ $# -eq 0 ]; then
    DROVER_BIN=build/asan/drover scripts/e2e.sh
fi
