#!/usr/bin/env bash
# sim_vs_nginx — how close `drover sim` gets to nginx answering a fixed 200 on the same machine,
# in the same run. nginx (1 worker, keep-alive, `return 200` with a chat completion body) is the
# ceiling for "an HTTP server that does nothing"; the sim is measured on POST
# /v1/chat/completions, non-stream and stream, with no token pacing. wrk drives each target for
# ROUNDS rounds; the table shows medians and the ratio sim/nginx.
#
# One command, loopback only, bounded in time (about 3 × ROUNDS × DURATION s plus start-up):
#   bench/sim_vs_nginx.sh
# Knobs (environment): DURATION=10 ROUNDS=3 CONNS=64 THREADS=2 PIN=auto SIM_TPS=0 MAX_TOKENS=16
# DROVER_BIN=path (skip the build).
# It installs wrk and nginx-light when missing, builds the release preset, and stops only the
# processes it started (by pid) on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
PIN=${PIN:-auto}
SIM_TPS=${SIM_TPS:-0}
MAX_TOKENS=${MAX_TOKENS:-16}
MODEL=bench-model
WRK_TIMEOUT=$((DURATION + 20))

say() { echo "bench: $*" >&2; }

# ---- dependencies (idempotent: only what is missing) ---------------------------------------
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
scripts/deps.sh "${need[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---- build -----------------------------------------------------------------------------------
# DROVER_BIN=path uses an already built drover (e.g. another branch's) instead.
if [ -n "${DROVER_BIN:-}" ]; then
    DROVER=$DROVER_BIN
else
    cmake --preset release >/dev/null
    cmake --build --preset release >/dev/null
    DROVER=build/release/drover
fi

# ---- processes we own ------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/drover-bench.XXXXXX")
PIDS=()
cleanup() {
    stop_all
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# Servers on one core, wrk on the others, when there are at least two: both servers are
# single-threaded, and wrk then does not steal their core.
SRV_PIN=()
WRK_PIN=()
if [ "$PIN" = auto ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    SRV_PIN=(taskset -c 0)
    WRK_PIN=(taskset -c "1-$(($(nproc) - 1))")
fi

BODY='{"id":"chatcmpl-bench","object":"chat.completion","created":1732300000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}'

# ---- nginx: its own prefix, config, pid file and logs; never the system ones -----------------
NGINX_PORT=$(free_port)
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            default_type application/json;
            return 200 '$BODY';
        }
    }
}
EOF
"${SRV_PIN[@]}" "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" \
    -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/stdout" 2>&1 &
PIDS+=($!)
NGINX_PID=$!

wait_http() { # url, seconds: until it answers 200, or fail
    local deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        if curl -fs -o /dev/null -m 1 "$1"; then return 0; fi
        kill -0 "$NGINX_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
if ! wait_http "http://127.0.0.1:$NGINX_PORT/" 10; then
    say "nginx did not start:"
    cat "$TMP/nginx/stdout" "$TMP/nginx/logs/error.log" >&2 || true
    exit 1
fi

# ---- drover sim: one node, no pacing ---------------------------------------------------------
SIM_PORT=$(free_port)
SIM_OK=0
"${SRV_PIN[@]}" "$DROVER" sim --port "$SIM_PORT" --nodes 1 --model "$MODEL" \
    --tokens-per-second "$SIM_TPS" --ttft-ms 0 >"$TMP/sim.out" 2>"$TMP/sim.err" &
SIM_PID=$!
PIDS+=("$SIM_PID")
deadline=$((SECONDS + 15))
while [ $SECONDS -lt $deadline ]; do
    if grep -q "^drover-sim ready port=$SIM_PORT " "$TMP/sim.out" 2>/dev/null; then
        SIM_OK=1
        break
    fi
    kill -0 "$SIM_PID" 2>/dev/null || break
    sleep 0.1
done
if [ $SIM_OK = 0 ]; then
    say "drover sim did not become ready; measuring nginx only. Its output:"
    tail -n 5 "$TMP/sim.out" "$TMP/sim.err" >&2 || true
fi

# ---- wrk scripts -----------------------------------------------------------------------------
lua() { # file, body
    cat >"$1" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[$2]]
EOF
}
REQ='{"model":"'$MODEL'","messages":[{"role":"user","content":"Say hello."}],"max_tokens":'$MAX_TOKENS'}'
REQ_STREAM='{"model":"'$MODEL'","messages":[{"role":"user","content":"Say hello."}],"max_tokens":'$MAX_TOKENS',"stream":true}'
lua "$TMP/post.lua" "$REQ"
lua "$TMP/post_stream.lua" "$REQ_STREAM"

if [ $SIM_OK = 1 ]; then
    # One request of each kind first: a sim that answers errors would look fast.
    URL="http://127.0.0.1:$SIM_PORT/v1/chat/completions"
    if ! curl -fs -m 10 -H 'Content-Type: application/json' -d "$REQ" "$URL" | grep -q '"choices"'; then
        say "warning: the sim's non-stream answer has no \"choices\""
    fi
    if ! curl -fsN -m 10 -H 'Content-Type: application/json' -d "$REQ_STREAM" "$URL" |
        grep -q '^data: \[DONE\]'; then
        say "warning: the sim's stream did not end with data: [DONE]"
    fi
fi

# ---- measure ---------------------------------------------------------------------------------
# Prints "rps p50_ms p99_ms non2xx errors" for one wrk run.
run_wrk() { # url, lua
    local out
    out=$(timeout "$WRK_TIMEOUT" "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
        --latency -s "$2" "$1" 2>&1) || true
    echo "$out" >>"$TMP/wrk.log"
    wrk_summary <<<"$out"
}


declare -A RPS P50 P99 BAD ERR
measure() { # name, url, lua
    local r rows=""
    for r in $(seq "$ROUNDS"); do
        say "$1: round $r/$ROUNDS (${DURATION}s, $CONNS connections, $THREADS threads)"
        rows+="$(run_wrk "$2" "$3")"$'\n'
    done
    RPS[$1]=$(awk 'NF { print $1 }' <<<"$rows" | median)
    P50[$1]=$(awk 'NF { print $2 }' <<<"$rows" | median)
    P99[$1]=$(awk 'NF { print $3 }' <<<"$rows" | median)
    BAD[$1]=$(awk '{ s += $4 } END { print s + 0 }' <<<"$rows")
    ERR[$1]=$(awk '{ s += $5 } END { print s + 0 }' <<<"$rows")
}

measure nginx "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" "$TMP/post.lua"
TARGETS=(nginx)
if [ $SIM_OK = 1 ]; then
    measure sim "http://127.0.0.1:$SIM_PORT/v1/chat/completions" "$TMP/post.lua"
    measure sim_stream "http://127.0.0.1:$SIM_PORT/v1/chat/completions" "$TMP/post_stream.lua"
    TARGETS+=(sim sim_stream)
fi

# ---- report ----------------------------------------------------------------------------------
echo
echo "drover sim vs nginx — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "  drover   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
echo "  nginx    $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
echo "  wrk      $(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
echo "  kernel   $(uname -srm)"
echo "  cpus     $(nproc)${SRV_PIN[*]:+ (servers pinned to cpu 0, wrk to the rest)}"
echo "  load     wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS rounds, medians; sim --tokens-per-second $SIM_TPS --ttft-ms 0, max_tokens $MAX_TOKENS"
echo
printf '%-12s %-34s %12s %9s %9s %8s %7s %9s\n' target what req/s p50_ms p99_ms non2xx errors "vs nginx"
for t in "${TARGETS[@]}"; do
    case $t in
    nginx) what="return 200 (fixed JSON body)" ;;
    sim) what="POST /v1/chat/completions" ;;
    sim_stream) what="POST /v1/chat/completions stream" ;;
    esac
    ratio=$(awk -v a="${RPS[$t]}" -v b="${RPS[nginx]}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')
    printf '%-12s %-34s %12.0f %9.3f %9.3f %8d %7d %9s\n' "$t" "$what" "${RPS[$t]}" "${P50[$t]}" \
        "${P99[$t]}" "${BAD[$t]}" "${ERR[$t]}" "$ratio"
done
if [ $SIM_OK = 0 ]; then
    echo "(sim rows missing: drover sim did not start — see above)"
fi
