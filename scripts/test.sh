#!/usr/bin/env bash
# Installs what is missing, builds the test build (ASan+UBSan) and runs the tests.
#
# Usage: scripts/test.sh                 everything: the llama.cpp chroot (built once, cached),
#                                        unit + integration tests under ctest, then the e2e
#        scripts/test.sh CTEST-ARGS…     only the ctest tests the filter selects; no chroot
#                                        build and no e2e. For example:
#          scripts/test.sh -L unit                    every unit test (no root needed)
#          scripts/test.sh -L integration             every integration test
#          scripts/test.sh -R unit.test_router        tests whose name matches a regex
#          scripts/test.sh -R 'integration.test_ops$' -V
#        scripts/test.sh --list          the test names (ctest -N), nothing run
#
# A filtered run leaves DROVER_E2E_LLAMA at 0 unless you set it: a test that needs the real
# llama-server then skips with its reason when the chroot is not built (and runs when it is).
# DROVER_E2E_LLAMA=0 with no filter skips the chroot in a full run too (docs/e2e.md).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
-h | --help)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

scripts/deps.sh
cmake --preset asan >/dev/null
cmake --build --preset asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if [ "${1:-}" = --list ]; then
    exec ctest --preset asan -N
fi

if [ $# -gt 0 ]; then
    # A filter: only what ctest selects. Nothing is built for tests that were not asked for.
    export DROVER_E2E_LLAMA=${DROVER_E2E_LLAMA:-0}
    if [ "$DROVER_E2E_LLAMA" != 0 ]; then scripts/llama-chroot.sh build; fi
    exec ctest --preset asan "$@"
fi

# The real llama-server some tests need: a Debian testing chroot, built once and cached outside
# the repo (docs/e2e.md). DROVER_E2E_LLAMA=0 skips it (those tests then say they skipped).
export DROVER_E2E_LLAMA=${DROVER_E2E_LLAMA:-1}
if [ "$DROVER_E2E_LLAMA" != 0 ]; then
    scripts/llama-chroot.sh build
fi
ctest --preset asan
# End to end: the official openai npm client, drover sim and a real llama-server (docs/e2e.md).
# Every e2e gateway gets its own temporary store and free ports (tests/e2e/lib.mjs).
DROVER_BIN=build/asan/drover scripts/e2e.sh
