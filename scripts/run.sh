#!/usr/bin/env bash
# Installs what is missing, builds the release binary and starts drover on the embedded
# default: three simulated nodes (drover sim) on 127.0.0.1:9101-9103 and the gateway in front
# of them on 127.0.0.1:8080 (admin API and /metrics on 127.0.0.1:8081). Ctrl-C stops both.
#
# Usage: scripts/run.sh          start (first stopping what an earlier run started)
#        scripts/run.sh stop     stop what an earlier run started, and exit
#
# State lives outside the repo, in DROVER_RUN_DIR (default
# ${XDG_STATE_HOME:-$HOME/.local/state}/drover/run): the store (drover.db and its -wal/-shm),
# and run.pids, the pids this script started. Both processes also run with that directory as
# their working directory, so nothing is ever written into the repo. The script can be run any
# number of times: a new run stops the processes of the previous one, by the pids in run.pids
# (and only if they still are drover), before it starts its own.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
STATE=${DROVER_RUN_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/drover/run}
PIDS=$STATE/run.pids
BIN=$REPO/build/release/drover

say() { echo "drover: $*" >&2; }

# Stops the processes a previous run recorded in run.pids. A pid is signalled only while
# /proc says it is still a drover process (pids are reused), TERM first, KILL after 5 s.
stop_previous() {
    [ -f "$PIDS" ] || return 0
    local role pid left=()
    while read -r role pid; do
        [ "$role" = run ] && continue
        [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || continue
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'drover' || continue
        say "stopping the previous run's $role (pid $pid)"
        kill -TERM "$pid" 2>/dev/null && left+=("$pid")
    done <"$PIDS"
    local i
    for ((i = 0; i < 50 && ${#left[@]} > 0; i++)); do
        local still=()
        for pid in "${left[@]}"; do kill -0 "$pid" 2>/dev/null && still+=("$pid"); done
        left=("${still[@]+"${still[@]}"}")
        [ ${#left[@]} -gt 0 ] && sleep 0.1
    done
    for pid in "${left[@]+"${left[@]}"}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -f "$PIDS"
}

mkdir -p "$STATE"
if [ "${1:-}" = stop ]; then
    stop_previous
    exit 0
elif [ $# -gt 0 ]; then
    echo "usage: scripts/run.sh [stop]" >&2
    exit 2
fi
stop_previous

say "state in $STATE (store $STATE/drover.db, pids $PIDS)"
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release

SIM_PID= SERVE_PID=
# Ctrl-C or TERM ends both children, by their ids; so does either of them exiting. run.pids
# is removed only while it is still ours (a newer run may have replaced it).
stop() {
    trap - EXIT INT TERM
    for pid in $SERVE_PID $SIM_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -f "$PIDS" ] && grep -qx "run $$" "$PIDS"; then rm -f "$PIDS"; fi
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

(cd "$STATE" && exec "$BIN" sim --nodes 3 --port 9101 --model llama3.2:1b \
    --model nomic-embed-text:embedding --tokens-per-second 50) &
SIM_PID=$!
(cd "$STATE" && exec "$BIN" serve --config "$REPO/examples/drover.yaml" \
    --set "store.path=$STATE/drover.db") &
SERVE_PID=$!
printf 'run %s\nsim %s\nserve %s\n' "$$" "$SIM_PID" "$SERVE_PID" >"$PIDS"

# Ready when the simulated nodes passed their probes and the gateway lists the model (bounded,
# ~5 s with the example's health settings; the gateway's own log says why if it never is).
for ((i = 0; i < 150; i++)); do
    curl -sf http://127.0.0.1:8080/v1/models 2>/dev/null | grep -q '"llama3.2:1b"' && break
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.1
done
say "simulated nodes on 127.0.0.1:9101-9103 (pid $SIM_PID), gateway pid $SERVE_PID"
say "client API 127.0.0.1:8080, admin API and /metrics 127.0.0.1:8081; stop with Ctrl-C or scripts/run.sh stop"
say "try  curl -s localhost:8080/v1/chat/completions -H 'Content-Type: application/json' -d '{\"model\":\"llama3.2:1b\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'"
status=0
wait -n "$SIM_PID" "$SERVE_PID" || status=$?
exit "$status"
