#!/usr/bin/env bash
# Installs what is missing, builds the release binary and starts drover on the embedded
# default: three simulated nodes (drover sim) on 127.0.0.1:9101-9103. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
BIN=build/release/drover
echo "starting 3 simulated nodes on 127.0.0.1:9101-9103" >&2
exec "$BIN" sim --nodes 3 --port 9101 --model llama3.2:1b --model nomic-embed-text:embedding
