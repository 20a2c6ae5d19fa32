#!/usr/bin/env bash
# The dashboard's browser tests (tests/ui, docs/dashboard.md): Debian's chromium driven by
# puppeteer-core from tests/ui/package-lock.json (npm ci; no browser is ever downloaded).
# ctest runs this as ui.dashboard (label ui). Exits 77 (ctest: skipped) with the reason when
# chromium is not installed and cannot be.
#   DROVER_BIN=path             the drover binary (default build/asan/drover)
#   DROVER_UI_ARTIFACTS=dir     where screenshots go (default: a new temp dir, printed)
#   CHROMIUM=path               the browser (default /usr/bin/chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
export DROVER_BIN=${DROVER_BIN:-build/asan/drover}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
    scripts/deps.sh >/dev/null 2>&1 || true
fi
if [ ! -x "$CHROMIUM" ]; then
    echo "ui-test: SKIP: no chromium at $CHROMIUM and Debian's chromium package could not be installed" >&2
    exit 77
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then scripts/deps.sh nodejs npm; fi
if [ ! -f tests/ui/node_modules/.package-lock.json ] ||
   [ tests/ui/package-lock.json -nt tests/ui/node_modules/.package-lock.json ]; then
    # puppeteer-core never downloads a browser; PUPPETEER_SKIP_DOWNLOAD makes that explicit
    (cd tests/ui && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
export CHROMIUM
exec node --test --test-concurrency=1 --test-reporter=spec "$@" tests/ui/*.test.mjs
