#!/usr/bin/env bash
# Starts llama.cpp's llama-server from the cached test chroot (scripts/llama-chroot.sh) on
# 127.0.0.1:PORT with the tiny random-weight model, served under the name "tiny-llama".
#
# Usage: scripts/llama-server.sh PORT [extra llama-server args…]
#
# The script execs (shell → chroot → llama-server), so the pid of this script IS the pid of
# llama-server: a caller that spawned it kills llama-server by that pid. Nothing is mounted:
# llama-server and ggml's CPU backend loader work without /proc in the chroot, so there is
# nothing to unmount afterwards. Exits 3 when the chroot is not built (build it with
# scripts/llama-chroot.sh); it never builds it itself, so a caller decides what that costs.
set -euo pipefail
ROOT=${DROVER_LLAMA_CHROOT:-/var/cache/drover/llama-chroot}
PORT=${1:?usage: scripts/llama-server.sh PORT [llama-server args...]}
shift
paths=$("$(dirname "$0")/llama-chroot.sh" status) || exit 3
model=${paths##*model=}
# One thread and a small batch keep it light on a shared 2-core machine; the model's own
# context is 256 tokens, so 2 slots of 128 each.
exec chroot "$ROOT" llama-server -m "$model" --alias tiny-llama \
    --host 127.0.0.1 --port "$PORT" -t 1 -c 256 -np 2 --no-webui "$@"
