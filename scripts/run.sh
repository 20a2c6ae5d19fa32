#!/usr/bin/env bash
# Installs what is missing, builds the release binary and starts drover on the embedded
# default: three simulated nodes (drover sim) on 127.0.0.1:9101-9103 and the gateway in front
# of them on 127.0.0.1:8080 (admin API and /metrics on 127.0.0.1:8081). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
BIN=build/release/drover
"$BIN" sim --nodes 3 --port 9101 --model llama3.2:1b --model nomic-embed-text:embedding \
    --tokens-per-second 50 &
SIM_PID=$!
"$BIN" serve --config examples/drover.yaml &
SERVE_PID=$!
# Ctrl-C or TERM ends both children, by their ids; so does either of them exiting.
stop() { kill "$SERVE_PID" "$SIM_PID" 2>/dev/null || true; }
trap stop EXIT INT TERM
echo "drover: simulated nodes on 127.0.0.1:9101-9103 (pid $SIM_PID), gateway pid $SERVE_PID" >&2
echo "drover: try  curl -s localhost:8080/v1/chat/completions -d '{\"model\":\"llama3.2:1b\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'" >&2
wait -n "$SIM_PID" "$SERVE_PID"
