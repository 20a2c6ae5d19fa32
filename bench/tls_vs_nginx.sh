#!/usr/bin/env bash
# tls_vs_nginx — TLS termination, drover serve against nginx, side by side in one run. Both
# terminate TLS with the same certificate (a test CA made here with the openssl CLI) and proxy
# to the same `drover sim` node over plain keep-alive HTTP: nginx with `proxy_pass` to an
# upstream with keepalive, drover as the gateway. Two loads per target:
#   keepalive   wrk over https, connections kept: record throughput (req/s)
#   handshake   wrk over https with Connection: close: one full TLS handshake per request
#               (handshakes/s; no session resumption: wrk does not resume)
# plus drover over plain http as the reference for what TLS costs. The issue's goal is
# drover/nginx >= 0.9 on both TLS rows. Rounds interleave the targets (each round starts one
# target later), so a shared machine's slow and fast phases hit all of them alike, and every
# run also reports the server's CPU time per request (/proc/PID/stat), which other load moves
# far less than throughput.
#
# One command, loopback only, bounded in time (about 5 × ROUNDS × DURATION s plus start-up):
#   bench/tls_vs_nginx.sh
# Knobs (environment): DURATION=10 ROUNDS=3 CONNS=64 THREADS=2 PIN=auto MAX_TOKENS=16
# DROVER_BIN=path (skip the build). Stops only the processes it started (by pid) on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
PIN=${PIN:-auto}
MAX_TOKENS=${MAX_TOKENS:-16}
MODEL=bench-model
WRK_TIMEOUT=$((DURATION + 20))

say() { echo "bench: $*" >&2; }

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
scripts/deps.sh "${need[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -n "${DROVER_BIN:-}" ]; then
    DROVER=$DROVER_BIN
else
    cmake --preset release >/dev/null
    cmake --build --preset release >/dev/null
    DROVER=build/release/drover
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/drover-bench-tls.XXXXXX")
PIDS=()
cleanup() {
    stop_all
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


SRV_PIN=()
WRK_PIN=()
if [ "$PIN" = auto ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    SRV_PIN=(taskset -c 0)
    WRK_PIN=(taskset -c "1-$(($(nproc) - 1))")
fi

# ---- certificates: one P-256 leaf signed by a throwaway CA -----------------------------------
(
    cd "$TMP"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=bench-ca -keyout ca.key -out ca.pem
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench \
        -keyout srv.key -out srv.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >srv.ext
    openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile srv.ext -out srv.pem
) >/dev/null 2>&1

wait_ready() { # file, pattern, pid, seconds
    local deadline=$((SECONDS + $4))
    while [ $SECONDS -lt $deadline ]; do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---- the node: drover sim, its own core budget like the servers -------------------------------
SIM_PORT=$(free_port)
"$DROVER" sim --port "$SIM_PORT" --nodes 1 --model "$MODEL" --tokens-per-second 0 \
    --ttft-ms 0 >"$TMP/sim.out" 2>"$TMP/sim.err" &
SIM_PID=$!
PIDS+=("$SIM_PID")
wait_ready "$TMP/sim.out" "^drover-sim ready" "$SIM_PID" 15 || { say "sim did not start"; exit 1; }

# ---- nginx: TLS termination + proxy to the sim with upstream keep-alive --------------------------
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
    upstream sim { server 127.0.0.1:$SIM_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $TMP/srv.pem;
        ssl_certificate_key $TMP/srv.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
"${SRV_PIN[@]}" "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" \
    -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/stdout" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

# ---- drover serve: TLS on the client listener, plain on the admin one ----------------------------
GW_PORT=$(free_port)
PLAIN_PORT=$(free_port)
GW_PIDS=()
start_gw() { # port, out-file, extra args...
    local port=$1 out=$2
    shift 2
    "${SRV_PIN[@]}" "$DROVER" serve --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0 \
        --set store.path=:memory: --set log_level=warn --node "n0=http://127.0.0.1:$SIM_PORT" \
        "$@" >"$out" 2>"$out.err" &
    PIDS+=($!)
    GW_PIDS+=($!)
    wait_ready "$out" "^drover-serve ready" $! 15 || { say "drover serve did not start"; cat "$out.err" >&2; exit 1; }
}
start_gw "$GW_PORT" "$TMP/gw.out" --set "tls.cert=$TMP/srv.pem" --set "tls.key=$TMP/srv.key"
start_gw "$PLAIN_PORT" "$TMP/gw_plain.out"

REQ='{"model":"'$MODEL'","messages":[{"role":"user","content":"Say hello."}],"max_tokens":'$MAX_TOKENS'}'
lua() { # file, extra header line
    cat >"$1" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
$2
wrk.body = [[$REQ]]
EOF
}
lua "$TMP/keep.lua" ""
lua "$TMP/close.lua" 'wrk.headers["Connection"] = "close"'

# every target answers a real completion before it is measured (and the node is routable)
for url in "https://127.0.0.1:$NGINX_PORT" "https://127.0.0.1:$GW_PORT" "http://127.0.0.1:$PLAIN_PORT"; do
    ok=0
    for _ in $(seq 100); do
        if curl -fs --cacert "$TMP/ca.pem" -m 2 -H 'Content-Type: application/json' -d "$REQ" \
            "$url/v1/chat/completions" | grep -q '"choices"'; then ok=1; break; fi
        sleep 0.1
    done
    [ $ok = 1 ] || { say "$url does not answer a completion"; exit 1; }
done

# CPU time (user + system) of a process so far, in clock ticks (/proc/PID/stat fields 14, 15)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

run_wrk() { # url, lua, server pid -> "req/s p50 p99 non2xx errors cpu_us_per_request"
    local out c0 c1 n
    c0=$(cpu_ticks "$3")
    out=$(timeout "$WRK_TIMEOUT" "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
        --latency -s "$2" "$1" 2>&1) || true
    c1=$(cpu_ticks "$3")
    echo "$out" >>"$TMP/wrk.log"
    n=$(awk '/requests in/ { print $1 }' <<<"$out")
    echo "$(wrk_summary <<<"$out") $(awk -v d=$((c1 - c0)) -v n="${n:-0}" -v t="$TICK_US" \
        'BEGIN { if (n > 0) printf "%.1f", d * t / n; else print 0 }')"
}
GW_PID=${GW_PIDS[0]}
PLAIN_PID=${GW_PIDS[1]}
P=/v1/chat/completions
TARGETS=(nginx_keep drover_keep nginx_hs drover_hs drover_plain)
declare -A URL LUA PID ROWS RPS P50 P99 BAD ERR CPU
URL[nginx_keep]="https://127.0.0.1:$NGINX_PORT$P"; LUA[nginx_keep]=$TMP/keep.lua; PID[nginx_keep]=$NGINX_PID
URL[drover_keep]="https://127.0.0.1:$GW_PORT$P"; LUA[drover_keep]=$TMP/keep.lua; PID[drover_keep]=$GW_PID
URL[nginx_hs]="https://127.0.0.1:$NGINX_PORT$P"; LUA[nginx_hs]=$TMP/close.lua; PID[nginx_hs]=$NGINX_PID
URL[drover_hs]="https://127.0.0.1:$GW_PORT$P"; LUA[drover_hs]=$TMP/close.lua; PID[drover_hs]=$GW_PID
URL[drover_plain]="http://127.0.0.1:$PLAIN_PORT$P"; LUA[drover_plain]=$TMP/keep.lua; PID[drover_plain]=$PLAIN_PID
# Rounds interleave the targets, and each round starts one target later: the machine's slow
# and fast phases (other jobs on a shared box) hit every target alike.
for r in $(seq "$ROUNDS"); do
    for i in "${!TARGETS[@]}"; do
        t=${TARGETS[$(((i + r - 1) % ${#TARGETS[@]}))]}
        say "round $r/$ROUNDS: $t (${DURATION}s, $CONNS connections, $THREADS threads)"
        ROWS[$t]+="$(run_wrk "${URL[$t]}" "${LUA[$t]}" "${PID[$t]}")"$'\n'
    done
done
for t in "${TARGETS[@]}"; do
    rows=${ROWS[$t]}
    RPS[$t]=$(awk 'NF { print $1 }' <<<"$rows" | median)
    P50[$t]=$(awk 'NF { print $2 }' <<<"$rows" | median)
    P99[$t]=$(awk 'NF { print $3 }' <<<"$rows" | median)
    BAD[$t]=$(awk '{ s += $4 } END { print s + 0 }' <<<"$rows")
    ERR[$t]=$(awk '{ s += $5 } END { print s + 0 }' <<<"$rows")
    CPU[$t]=$(awk 'NF { print $6 }' <<<"$rows" | median)
done

echo
echo "drover TLS vs nginx TLS — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "  drover   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
echo "  nginx    $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(openssl version)"
echo "  cpus     $(nproc)${SRV_PIN[*]:+ (gateways pinned to cpu 0, wrk and the sim unpinned)}"
echo "  load     wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS interleaved rounds, medians; P-256 certificate; both proxy to one drover sim"
echo "  cpu/req  the server process's user+system CPU time over a run / the requests wrk completed"
echo
printf '%-13s %-40s %10s %9s %9s %7s %7s %9s %11s %9s\n' target what req/s p50_ms p99_ms non2xx errors "vs nginx" "cpu_us/req" "cpu vs"
for t in "${TARGETS[@]}"; do
    case $t in
    nginx_keep) what="https keep-alive, proxy to sim"; base=nginx_keep ;;
    drover_keep) what="https keep-alive, gateway to sim"; base=nginx_keep ;;
    nginx_hs) what="https Connection: close (handshakes/s)"; base=nginx_hs ;;
    drover_hs) what="https Connection: close (handshakes/s)"; base=nginx_hs ;;
    drover_plain) what="plain http keep-alive (reference)"; base=nginx_keep ;;
    esac
    ratio=$(awk -v a="${RPS[$t]}" -v b="${RPS[$base]}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')
    cratio=$(awk -v a="${CPU[$t]}" -v b="${CPU[$base]}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')
    printf '%-13s %-40s %10.0f %9.3f %9.3f %7d %7d %9s %11.1f %9s\n' "$t" "$what" "${RPS[$t]}" "${P50[$t]}" \
        "${P99[$t]}" "${BAD[$t]}" "${ERR[$t]}" "$ratio" "${CPU[$t]}" "$cratio"
done
echo
echo "vs nginx: req/s ratio (higher is better); cpu vs: CPU per request ratio (lower is better)."
