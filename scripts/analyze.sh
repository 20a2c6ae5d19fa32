#!/usr/bin/env bash
# Static analysis: cppcheck on src/ (C11, the warning, style, performance and portability
# checks), with the committed suppressions in .ci/cppcheck-suppressions.txt (each justified
# there). Any finding fails the run. Takes seconds.
#
# Usage: scripts/analyze.sh [FILE-OR-DIR…]      default: src/
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cppcheck >/dev/null || { echo "analyze: cppcheck is not installed" >&2; exit 2; }
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
# base/version.c includes the header CMake generates; a stand-in keeps this independent of
# any build directory.
printf '#define DROVER_VERSION_STRING "0.0.0"\n' >"$gen/drover_version.h"
cppcheck -j"$(nproc)" -q --std=c11 -D_GNU_SOURCE -I src -I "$gen" \
    --enable=warning,style,performance,portability --inline-suppr \
    --suppressions-list=.ci/cppcheck-suppressions.txt \
    --template='{file}:{line}: {severity}/{id}: {message}' \
    --error-exitcode=1 "${@:-src/}"
echo "analyze: cppcheck found nothing"
