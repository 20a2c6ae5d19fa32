#!/usr/bin/env bash
# End-to-end tests: the official openai npm client against drover serve over drover sim, and
# over a real llama.cpp llama-server from a cached Debian testing chroot (docs/e2e.md).
#
# Usage: scripts/e2e.sh [node --test args…]
#   DROVER_BIN=path          drover binary to test (default build/asan/drover, built if missing
#                            or when DROVER_BIN is unset)
#   DROVER_E2E_LLAMA=0       do not build the llama.cpp chroot (its test is then skipped);
#                            otherwise a chroot that cannot be built fails the run
#   DROVER_LLAMA_CHROOT=dir  where the chroot is cached (default /var/cache/drover/llama-chroot)
# Exits non-zero when any test fails; prints node's test summary.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo "=== e2e: $* ($(( $(date +%s) - start ))s)" >&2; }

if [ -z "${DROVER_BIN:-}" ]; then
    step "build (asan)"
    scripts/deps.sh
    cmake --preset asan >/dev/null
    cmake --build --preset asan
fi
export DROVER_BIN=${DROVER_BIN:-build/asan/drover}
[ -x "$DROVER_BIN" ] || { echo "e2e: no drover binary at $DROVER_BIN" >&2; exit 1; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then scripts/deps.sh nodejs npm; fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { echo "e2e: needs Node 20 or newer, have $(node --version)" >&2; exit 1; }

# The llama.cpp chroot: built once, cached outside the repo. It is part of the test suite:
# failing to build it fails the run. DROVER_E2E_LLAMA=0 skips it explicitly (the test then
# reports itself skipped, with the reason).
export DROVER_E2E_LLAMA=${DROVER_E2E_LLAMA:-1}
if [ "$DROVER_E2E_LLAMA" != 0 ]; then
    step "llama.cpp chroot"
    [ "$(id -u)" = 0 ] || { echo "e2e: building the llama.cpp chroot needs root (or set DROVER_E2E_LLAMA=0)" >&2; exit 1; }
    scripts/llama-chroot.sh build
fi

step "npm (tests/e2e)"
# npm ci when the lock file is newer than what is installed; otherwise nothing to do.
if [ ! -f tests/e2e/node_modules/.package-lock.json ] ||
   [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.package-lock.json ]; then
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi

step "node --test"
# One file at a time: each starts its own processes and the machine has 2 cores. Every
# process runs in a temp dir of its own and every gateway has its own store (tests/e2e/lib.mjs);
# a store file that appears in the repo is a leak and fails the run.
leaks_before=$(ls drover.db* 2>/dev/null || true)
status=0
node --test --test-concurrency=1 --test-reporter=spec "$@" tests/e2e/*.test.mjs || status=$?
leaks_after=$(ls drover.db* 2>/dev/null || true)
if [ "$leaks_after" != "$leaks_before" ]; then
    echo "e2e: a test wrote a store into the repo: $leaks_after" >&2
    [ "$status" != 0 ] || status=1
fi
step "done (exit $status)"
exit "$status"
