#!/usr/bin/env bash
# run.sh — the issue 7 harness: drover against its peers, same machine, same run.
#
# Peers: direct to the `drover sim` node (the floor), nginx and HAProxy as keep-alive reverse
# proxies (configured here, in a temp dir), and the Portkey gateway (npm, non-stream only).
# Scenarios: S1 non-stream small bodies, S2 thousands of SSE streams (memory, CPU per token,
# TTFT), S3 large prompts, S4 failover (SIGKILL a node under load), S5 control plane (1,000
# nodes: idle CPU, RSS, router decision time), S6 busy answers (issue 20: nodes answering
# 503 + Retry-After at 0.1/1/10 %, and nodes whose slots are full). Medians of ROUNDS rounds (S1: S1_ROUNDS); the
# rounds interleave the targets and rotate their order, so the machine's slow and fast phases
# hit all of them alike; the table ends with the issue's targets, met or missed.
#
#   bench/run.sh               # ~10 min
#   QUICK=1 bench/run.sh       # ~2 min, smaller and shorter
#   SCENARIOS="s1 s5" bench/run.sh
#   SCENARIOS=S6 bench/run.sh   # busy answers only, ~1.5 min
#   SCENARIOS=S7 bench/run.sh   # routing policies only, ~1.5 min
# Loopback only. Installs what is missing (wrk, nginx-light, haproxy, node, npm through
# scripts/deps.sh; Portkey into PORTKEY_DIR), builds the release preset, and stops every
# process it started (by pid) on exit. See bench/README.md for every knob.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
ROOT=$PWD

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    : "${S6_DURATION:=3}" "${S7_DURATION:=8}" "${S7_WARMUP:=5}"
    : "${ROUNDS:=3}" "${S1_ROUNDS:=3}" "${S1_DURATION:=1}" "${S3_DURATION:=1}" "${STREAMS:=1000}" \
        "${S2_WINDOW:=2}" "${S2_ROUNDS:=1}" "${S4_DURATION:=6}" "${S5_IDLE:=4}" "${ROUTER_PICKS:=50000}"
fi
ROUNDS=${ROUNDS:-3}
S1_ROUNDS=${S1_ROUNDS:-6}
S1_DURATION=${S1_DURATION:-5}
S1_CONNS=${S1_CONNS:-64}
S3_DURATION=${S3_DURATION:-6}
S3_CONNS=${S3_CONNS:-4}
S3_KB=${S3_KB:-128}
STREAMS=${STREAMS:-5000}
STREAM_RATE=${STREAM_RATE:-2000}
STREAM_TPS=${STREAM_TPS:-10}
S2_WINDOW=${S2_WINDOW:-10}
S2_ROUNDS=${S2_ROUNDS:-$ROUNDS}
S2_NODES=${S2_NODES:-4}
S4_DURATION=${S4_DURATION:-12}
S4_STREAMS=${S4_STREAMS:-30}
S5_NODES=${S5_NODES:-1000}
S5_IDLE=${S5_IDLE:-30}
ROUTER_PICKS=${ROUTER_PICKS:-200000}
S6_DURATION=${S6_DURATION:-5}
S6_CONNS=${S6_CONNS:-16}
S6_RATES=${S6_RATES:-"0.001 0.01 0.1"}
S6_TTFT_MS=${S6_TTFT_MS:-5}
S6_FULL_SLOTS=${S6_FULL_SLOTS:-2}
S6_FULL_TPS=${S6_FULL_TPS:-400}
S6_MAX_TOKENS=${S6_MAX_TOKENS:-16}
S7_DURATION=${S7_DURATION:-20}
S7_WARMUP=${S7_WARMUP:-10}
S7_RATE=${S7_RATE:-20}
S7_NODES=${S7_NODES:-4}
S7_SLOTS=${S7_SLOTS:-4}
S7_CACHE_BLOCKS=${S7_CACHE_BLOCKS:-1024}
S7_TTFT_PER_TOKEN_MS=${S7_TTFT_PER_TOKEN_MS:-0.1}
S7_TPS=${S7_TPS:-1000}
S7_MAX_TOKENS=${S7_MAX_TOKENS:-64}
S7_TURN_BYTES=${S7_TURN_BYTES:-200}
S7_USERS=${S7_USERS:-32}
S7_TURNS=${S7_TURNS:-10}
S7_SYSTEMS=${S7_SYSTEMS:-4}
S7_SYSTEM_BYTES=${S7_SYSTEM_BYTES:-4096}
S7_POLICIES=${S7_POLICIES:-"round_robin least_loaded cache_aware"}
SCENARIOS=${SCENARIOS:-"s5 s2 s1 s3 s4 s6 s7"}
SCENARIOS=${SCENARIOS,,} # S6 and s6 alike
PIN=${PIN:-auto}
PORTKEY=${PORTKEY:-on}
PORTKEY_VERSION=${PORTKEY_VERSION:-1.15.2}
PORTKEY_DIR=${PORTKEY_DIR:-/var/cache/drover/bench-npm}
MODEL=bench-model
T_START=$SECONDS
# Portkey rows exist only in S1 and S3: do not install it for a run without them.
[[ " ${SCENARIOS,,} " == *" s1 "* || " ${SCENARIOS,,} " == *" s3 "* ]] || PORTKEY=off

say() { echo "bench: $*" >&2; }
die() { say "$*"; exit 1; }

# ---- dependencies (idempotent) ---------------------------------------------------------------
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ "$PORTKEY" = on ]; then
    command -v node >/dev/null 2>&1 || need+=(nodejs)
    command -v npm >/dev/null 2>&1 || need+=(npm)
fi
scripts/deps.sh "${need[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
PORTKEY_JS=$PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js
if [ "$PORTKEY" = on ] && ! grep -qs "\"version\": \"$PORTKEY_VERSION\"" \
    "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/package.json"; then
    say "installing @portkey-ai/gateway@$PORTKEY_VERSION into $PORTKEY_DIR"
    mkdir -p "$PORTKEY_DIR"
    [ -f "$PORTKEY_DIR/package.json" ] || echo '{"name":"drover-bench-peers","private":true}' >"$PORTKEY_DIR/package.json"
    (cd "$PORTKEY_DIR" && timeout 300 npm install --no-audit --no-fund --loglevel=error \
        "@portkey-ai/gateway@$PORTKEY_VERSION" >/dev/null) || { say "npm install failed: Portkey rows skipped"; PORTKEY=off; }
fi

# ---- build -----------------------------------------------------------------------------------
if [ -n "${DROVER_BIN:-}" ]; then
    DROVER=$DROVER_BIN
    CORE_DIR=$(dirname "$DROVER_BIN")
else
    cmake --preset release >/dev/null
    cmake --build --preset release >/dev/null
    DROVER=build/release/drover
    CORE_DIR=build/release
fi
DROVER=$(realpath "$DROVER")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/drover-run.XXXXXX")
cc -O2 -Wall -Isrc -o "$TMP/sse_load" bench/sse_load.c src/base/mem.c
if [ -f "$CORE_DIR/libdrover_core.a" ]; then
    # shellcheck disable=SC2046
    cc -O2 -Wall -Isrc -o "$TMP/bench_router" bench/bench_router.c "$CORE_DIR/libdrover_core.a" \
        "$CORE_DIR/libllhttp.a" $(pkg-config --libs libuv json-c yaml-0.1 sqlite3) -lm
fi

# Thousands of streams: every process here needs fds (client + upstream side of each stream).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((STREAMS * 2 + 512)) ] || say "warning: ulimit -n $(ulimit -n) is low for $STREAMS streams"

# ---- processes we own ------------------------------------------------------------------------
PIDS=()
cleanup() {
    stop_all
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop() { # pid...: TERM, wait up to 3 s, KILL; forget them
    local pid keep=() p
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        local drop=0
        for pid in "$@"; do [ "$p" = "$pid" ] && drop=1; done
        [ $drop = 1 ] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}


# Proxies under test on cpu 0; the sim nodes and the load generators share the other cpus.
# A proxy then never competes with its own load, and the floor (direct) is the sim + client
# on the same cpus as in every other row.
SRV_PIN=()
LOAD_PIN=()
if [ "$PIN" = auto ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    SRV_PIN=(taskset -c 0)
    LOAD_PIN=(taskset -c "1-$(($(nproc) - 1))")
fi

wait_line() { # file, regex, seconds, pid
    local deadline=$((SECONDS + $3))
    while [ $SECONDS -lt $deadline ]; do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        kill -0 "$4" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
wait_http() { # url, seconds, pid [curl args...]: until it answers 2xx
    local url=$1 deadline=$((SECONDS + $2)) pid=$3
    shift 3
    while [ $SECONDS -lt $deadline ]; do
        curl -fs -o /dev/null -m 2 "$@" "$url" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; } # utime+stime
CLK_TCK=$(getconf CLK_TCK)

# ---- sims ------------------------------------------------------------------------------------
start_sim() { # name nodes tps [extra flags...] -> SIM_PORT, SIM_PID
    local name=$1 nodes=$2 tps=$3
    shift 3
    "${LOAD_PIN[@]}" "$DROVER" sim --port 0 --nodes "$nodes" --model "$MODEL" --preload \
        --tokens-per-second "$tps" --ttft-ms 0 --log-level warn --max-connections 30000 \
        --port-file "$TMP/$name.ports" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    SIM_PID=$!
    PIDS+=("$SIM_PID")
    wait_line "$TMP/$name.out" '^drover-sim ready' 30 "$SIM_PID" || {
        tail -n 5 "$TMP/$name.err" >&2
        die "drover sim $name did not start"
    }
    SIM_PORT=$(awk '{ sub(/.*port=/, ""); print $1 + 0; exit }' "$TMP/$name.out")
}

# ---- peers -----------------------------------------------------------------------------------
# Each start_* takes a name, a mode (plain | stream) and the upstream ports, and sets
# PEER_PORT and PEER_PID (the one process doing the work: all are single-threaded here).
start_drover() { # name mode ports...
    local name=$1 mode=$2 p i=0
    shift 2
    {
        echo "listen: 127.0.0.1:0"
        echo "admin_listen: 127.0.0.1:0"
        echo "log_level: warn"
        # Its own store in the temp dir (the default drover.db would land in the repo root).
        echo "store:"
        echo "  path: $TMP/$name.db"
        echo "limits:"
        echo "  max_connections: 30000"
        if [ "${DROVER_HEALTH_DEFAULTS:-0}" = 0 ]; then
            echo "health:"
            echo "  interval: 1s"
            echo "  rise: 1"
        fi
        # S7: routing keys (docs/routing.md)
        [ -n "${DROVER_EXTRA_YAML:-}" ] && printf '%s\n' "$DROVER_EXTRA_YAML"
        if [ $# -eq 0 ]; then echo "nodes: []"; else echo "nodes:"; fi
        for p in "$@"; do
            i=$((i + 1))
            echo "  - name: sim-$i"
            echo "    url: http://127.0.0.1:$p"
            echo "    kind: ${DROVER_NODE_KIND:-openai}"
        done
    } >"$TMP/$name.yaml"
    "${SRV_PIN[@]}" "$DROVER" serve --config "$TMP/$name.yaml" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PEER_PID=$!
    PIDS+=("$PEER_PID")
    wait_line "$TMP/$name.out" '^drover-serve ready' 30 "$PEER_PID" || {
        tail -n 5 "$TMP/$name.err" >&2
        die "drover serve $name did not start"
    }
    PEER_PORT=$(sed -n 's/.*listen=[^ ]*:\([0-9]*\) .*/\1/p' "$TMP/$name.out" | head -1)
    ADMIN_PORT=$(sed -n 's/.*admin=[^ ]*:\([0-9]*\).*/\1/p' "$TMP/$name.out" | head -1)
    # Routable once every node passed its first probe.
    if [ $# -gt 0 ]; then
        local deadline=$((SECONDS + 30))
        while [ $SECONDS -lt $deadline ]; do
            local ok
            ok=$(curl -fs -m 2 "http://127.0.0.1:$ADMIN_PORT/admin/v1/nodes" | grep -o '"routable":true' | wc -l || true)
            [ "$ok" -ge $# ] && break
            sleep 0.2
        done
    fi
}

start_nginx() { # name mode ports...
    local name=$1 mode=$2 p t
    shift 2
    PEER_PORT=$(free_port)
    mkdir -p "$TMP/$name/logs"
    {
        echo "worker_processes 1; daemon off; master_process off; worker_rlimit_nofile $(ulimit -n);"
        echo "pid $TMP/$name/nginx.pid; error_log $TMP/$name/logs/error.log error;"
        echo "events { worker_connections $(($(ulimit -n) - 100)); }"
        echo "http {"
        echo "  access_log off;"
        for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $TMP/$name/$t;"; done
        echo "  keepalive_timeout 75s; keepalive_requests 100000000;"
        echo "  client_max_body_size 16m; client_body_buffer_size 256k;"
        echo "  upstream nodes {"
        [ $# -gt 1 ] && echo "    least_conn;"
        # busy: a 503 under proxy_next_upstream http_503 is an "unsuccessful attempt", so
        # max_fails=1 would take a node out for 10 s after one busy answer; max_fails=0 keeps
        # every node in and leaves the busy answers to the retries.
        if [ "$mode" = busy ]; then
            for p in "$@"; do echo "    server 127.0.0.1:$p max_fails=0;"; done
        else
            for p in "$@"; do echo "    server 127.0.0.1:$p max_fails=1 fail_timeout=10s;"; done
        fi
        echo "    keepalive 64;"
        echo "    keepalive_requests 100000000;"
        echo "  }"
        echo "  server {"
        echo "    listen 127.0.0.1:$PEER_PORT;"
        echo "    location / {"
        echo "      proxy_pass http://nodes;"
        echo "      proxy_http_version 1.1;"
        echo "      proxy_set_header Connection \"\";"
        echo "      proxy_read_timeout 300s;"
        [ "$mode" = stream ] && echo "      proxy_buffering off;"
        if [ "$mode" = busy ]; then
            # non_idempotent: without it nginx never retries a POST, i.e. no chat request.
            echo "      proxy_next_upstream error timeout http_503 http_429 non_idempotent;"
            echo "      proxy_next_upstream_tries 3;"
        fi
        echo "    }"
        echo "  }"
        echo "}"
    } >"$TMP/$name/nginx.conf"
    "${SRV_PIN[@]}" "$NGINX" -p "$TMP/$name" -e "$TMP/$name/logs/error.log" -c "$TMP/$name/nginx.conf" \
        >"$TMP/$name/stdout" 2>&1 &
    PEER_PID=$!
    PIDS+=("$PEER_PID")
    wait_http "http://127.0.0.1:$PEER_PORT/v1/models" 15 "$PEER_PID" || {
        cat "$TMP/$name/stdout" "$TMP/$name/logs/error.log" >&2 || true
        die "nginx $name did not start"
    }
}

start_haproxy() { # name mode ports...
    local name=$1 mode=$2 p i=0
    shift 2
    PEER_PORT=$(free_port)
    {
        echo "global"
        echo "  maxconn 9000"
        echo "  nbthread 1"
        echo "defaults"
        echo "  mode http"
        echo "  timeout connect 2s"
        echo "  timeout client 300s"
        echo "  timeout server 300s"
        echo "  option http-keep-alive"
        echo "  http-reuse always"
        # Streams: send each event at once (HAProxy otherwise waits for more data, ~200 ms).
        [ "$mode" = stream ] && echo "  option http-no-delay"
        echo "frontend fe"
        echo "  bind 127.0.0.1:$PEER_PORT"
        echo "  default_backend nodes"
        echo "backend nodes"
        echo "  balance leastconn"
        if [ "$mode" = busy ]; then
            # Layer-7 retries on busy answers, each on another server (redispatch 1).
            echo "  retry-on $HAPROXY_RETRY_ON"
            echo "  retries 3"
            echo "  option redispatch 1"
        fi
        for p in "$@"; do
            i=$((i + 1))
            echo "  server sim-$i 127.0.0.1:$p"
        done
    } >"$TMP/$name.cfg"
    "${SRV_PIN[@]}" "$HAPROXY" -db -f "$TMP/$name.cfg" >"$TMP/$name.out" 2>&1 &
    PEER_PID=$!
    PIDS+=("$PEER_PID")
    wait_http "http://127.0.0.1:$PEER_PORT/v1/models" 15 "$PEER_PID" || {
        cat "$TMP/$name.out" >&2
        die "haproxy $name did not start"
    }
}

start_portkey() { # name mode port (one node: Portkey's custom host is one URL)
    local name=$1
    PEER_PORT=$(free_port)
    PORTKEY_NODE=$3
    (cd "$TMP" && NODE_ENV=production exec "${SRV_PIN[@]}" node "$PORTKEY_JS" --port="$PEER_PORT" --headless \
        >"$TMP/$name.out" 2>&1) &
    PEER_PID=$!
    PIDS+=("$PEER_PID")
    wait_http "http://127.0.0.1:$PEER_PORT/" 30 "$PEER_PID" || {
        tail -n 20 "$TMP/$name.out" >&2
        die "portkey did not start"
    }
}
portkey_headers() { # for wrk lua / curl
    echo "x-portkey-provider: openai"
    echo "x-portkey-custom-host: http://127.0.0.1:$PORTKEY_NODE/v1"
    echo "Authorization: Bearer sk-bench"
}

# ---- wrk -------------------------------------------------------------------------------------
lua() { # file body-file [header lines on stdin]
    {
        echo 'wrk.method = "POST"'
        echo 'wrk.headers["Content-Type"] = "application/json"'
        while IFS= read -r h; do
            [ -n "$h" ] || continue
            echo "wrk.headers[\"${h%%: *}\"] = \"${h#*: }\""
        done
        echo "local f = assert(io.open(\"$2\", \"rb\"))"
        echo 'wrk.body = f:read("*a")'
        echo 'f:close()'
    } >"$1"
}
run_wrk() { # url lua conns duration -> "rps p50_ms p99_ms non2xx errors"
    local out
    out=$(timeout $(($4 + 30)) "${LOAD_PIN[@]}" wrk -t1 -c"$3" -d"$4s" --timeout 10s --latency -s "$2" "$1" 2>&1) || true
    echo "$out" >>"$TMP/wrk.log"
    wrk_summary <<<"$out"
}
col_median() { awk -v c="$1" 'NF { print $c }' | median; }
col_sum() { awk -v c="$1" '{ s += $c } END { print s + 0 }'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { printf f, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
ratio3() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", a - b }'; }

OUT=$TMP/report.txt
: >"$OUT"
report() { echo "$*" >>"$OUT"; }
declare -A R # results for the verdicts

# ---- S1 / S3: non-streaming, wrk, all five targets -------------------------------------------
wrk_scenario() { # tag body-file conns duration rounds
    local tag=$1 body=$2 conns=$3 dur=$4 rounds=$5 t r
    start_sim "${tag}_sim" 1 0 --slots 1024 --queue 4096 --max-tokens-cap 4096
    local node=$SIM_PORT
    local -A port pid
    port[direct]=$node
    start_drover "${tag}_drover" plain "$node"
    port[drover]=$PEER_PORT pid[drover]=$PEER_PID
    start_nginx "${tag}_nginx" plain "$node"
    port[nginx]=$PEER_PORT pid[nginx]=$PEER_PID
    start_haproxy "${tag}_haproxy" plain "$node"
    port[haproxy]=$PEER_PORT pid[haproxy]=$PEER_PID
    local targets=(direct drover nginx haproxy)
    if [ "$PORTKEY" = on ]; then
        start_portkey "${tag}_portkey" plain "$node"
        port[portkey]=$PEER_PORT pid[portkey]=$PEER_PID
        targets+=(portkey)
    fi
    for t in "${targets[@]}"; do
        if [ "$t" = portkey ]; then portkey_headers; fi | lua "$TMP/${tag}_$t.lua" "$body"
        # One request each first: an erroring target would look fast.
        local hdr=()
        if [ "$t" = portkey ]; then
            while IFS= read -r h; do hdr+=(-H "$h"); done < <(portkey_headers)
        fi
        curl -fs -m 20 "${hdr[@]}" -H 'Content-Type: application/json' --data-binary "@$body" \
            "http://127.0.0.1:${port[$t]}/v1/chat/completions" | grep -q '"choices"' ||
            say "warning: $tag $t: the first answer has no \"choices\""
    done
    local -A rows crashes
    local order k
    for r in $(seq "$rounds"); do
        # Each round starts one target later, so no target always follows the same one.
        order=()
        for k in "${!targets[@]}"; do order+=("${targets[$(((k + r - 1) % ${#targets[@]}))]}"); done
        for t in "${order[@]}"; do
            say "$tag: round $r/$rounds $t (${dur}s, $conns connections)"
            # The peer's CPU (utime+stime) over the run, per request it answered.
            local c0=0 c1=0 line cpu
            [ "$t" != direct ] && c0=$(cpu_ticks "${pid[$t]}")
            line=$(run_wrk "http://127.0.0.1:${port[$t]}/v1/chat/completions" "$TMP/${tag}_$t.lua" "$conns" "$dur")
            [ "$t" != direct ] && c1=$(cpu_ticks "${pid[$t]}")
            cpu=$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v rps="${line%% *}" -v d="$dur" \
                'BEGIN { if (rps > 0 && c > 0) printf "%.2f", c / hz * 1e6 / (rps * d); else print 0 }')
            rows[$t]+="$line $cpu"$'\n'
            sleep 0.3
            # A peer that died (crash) is counted, reported, and restarted for the next round.
            if [ "$t" != direct ] && ! kill -0 "${pid[$t]}" 2>/dev/null; then
                wait "${pid[$t]}" 2>/dev/null || crashes[$t]=$((${crashes[$t]:-0} + 1))
                say "$tag: $t DIED after round $r (see its stderr); restarting it"
                cp "$TMP/${tag}_$t.err" "$TMP/${tag}_${t}_crash$r.err" 2>/dev/null || true
                stop "${pid[$t]}"
                "start_$t" "${tag}_$t" plain "$node"
                port[$t]=$PEER_PORT pid[$t]=$PEER_PID
                if [ "$t" = portkey ]; then portkey_headers; fi | lua "$TMP/${tag}_$t.lua" "$body"
            fi
        done
    done
    for t in "${targets[@]}"; do R[$tag.$t.crashes]=${crashes[$t]:-0}; done
    for t in "${targets[@]}"; do
        R[$tag.$t.rps]=$(col_median 1 <<<"${rows[$t]}")
        R[$tag.$t.p50]=$(col_median 2 <<<"${rows[$t]}")
        R[$tag.$t.p99]=$(col_median 3 <<<"${rows[$t]}")
        R[$tag.$t.bad]=$(($(col_sum 4 <<<"${rows[$t]}") + $(col_sum 5 <<<"${rows[$t]}")))
        R[$tag.$t.cpu]=$(col_median 6 <<<"${rows[$t]}")
    done
    R[$tag.targets]="${targets[*]}"
    stop "${pid[@]}" "$SIM_PID"
}
print_wrk_table() { # tag title
    local tag=$1 t
    report ""
    report "$2"
    report "$(printf '%-8s %10s %9s %9s %10s %10s %7s %7s %9s %11s' target req/s p50_ms p99_ms +p50_ms +p99_ms failed crashes drover/x cpu_us/req)"
    for t in ${R[$tag.targets]}; do
        local cpu=${R[$tag.$t.cpu]:-0}
        [ "$t" = direct ] && cpu=-
        report "$(printf '%-8s %10.0f %9.3f %9.3f %10s %10s %7d %7s %9s %11s' "$t" "${R[$tag.$t.rps]}" "${R[$tag.$t.p50]}" \
            "${R[$tag.$t.p99]}" "$(minus "${R[$tag.$t.p50]}" "${R[$tag.direct.p50]}")" \
            "$(minus "${R[$tag.$t.p99]}" "${R[$tag.direct.p99]}")" "${R[$tag.$t.bad]}" "${R[$tag.$t.crashes]:-0}" \
            "$(ratio "${R[$tag.drover.rps]}" "${R[$tag.$t.rps]}")" "$cpu")"
    done
}

s1() {
    printf '{"model":"%s","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}' "$MODEL" >"$TMP/s1.json"
    wrk_scenario s1 "$TMP/s1.json" "$S1_CONNS" "$S1_DURATION" "$S1_ROUNDS"
    print_wrk_table s1 "S1 non-stream chat, ~100 B body, wrk -t1 -c$S1_CONNS -d${S1_DURATION}s, $S1_ROUNDS rounds (median); + = added over direct"
}
s3() {
    python3 - "$S3_KB" "$MODEL" >"$TMP/s3.json" <<'EOF'
import json, sys
kb, model = int(sys.argv[1]), sys.argv[2]
words = ("the quick brown fox jumps over the lazy dog while a prompt grows large " * 20000)
content = words[: kb * 1024]
print(json.dumps({"model": model, "max_tokens": 16,
                  "messages": [{"role": "system", "content": "You summarise documents."},
                               {"role": "user", "content": content}]}), end="")
EOF
    wrk_scenario s3 "$TMP/s3.json" "$S3_CONNS" "$S3_DURATION" "$ROUNDS"
    print_wrk_table s3 "S3 large prompt, $(($(stat -c %s "$TMP/s3.json") / 1024)) KiB body, wrk -t1 -c$S3_CONNS -d${S3_DURATION}s, $ROUNDS rounds (median)"
}

# ---- S2: thousands of SSE streams ------------------------------------------------------------
s2_round() { # target round -> appends "rss_per_stream_B cpu_s_per_Mtok ttft_p50 ttft_p99 open events" to S2ROWS[target]
    local t=$1 ports=("${S2_PORTS[@]}") ppid="" port
    case $t in
    direct) port=${ports[0]} ;;
    drover) start_drover "s2_drover_$2" stream "${ports[@]}"; port=$PEER_PORT ppid=$PEER_PID ;;
    nginx) start_nginx "s2_nginx_$2" stream "${ports[@]}"; port=$PEER_PORT ppid=$PEER_PID ;;
    haproxy) start_haproxy "s2_haproxy_$2" stream "${ports[@]}"; port=$PEER_PORT ppid=$PEER_PID ;;
    esac
    # Warm: one short stream, then the idle RSS.
    printf '{"model":"%s","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"stream":true}' "$MODEL" >"$TMP/s2_warm.json"
    curl -fsN -m 10 -H 'Content-Type: application/json' --data-binary "@$TMP/s2_warm.json" \
        "http://127.0.0.1:$port/v1/chat/completions" | grep -q '^data: \[DONE\]' || say "warning: s2 $t: warm-up stream did not end with [DONE]"
    sleep 0.5
    local idle_kb=0
    [ -n "$ppid" ] && idle_kb=$(rss_kb "$ppid")
    local ramp_s=$(((STREAMS + STREAM_RATE - 1) / STREAM_RATE))
    local settle=2 total=$((ramp_s + 2 + S2_WINDOW + 2))
    local log="$TMP/s2_${t}_$2.log"
    "${LOAD_PIN[@]}" "$TMP/sse_load" --port "$port" --body-file "$TMP/s2.json" --streams "$STREAMS" \
        --rate "$STREAM_RATE" --duration "$total" --tick-ms 500 >"$log" 2>&1 &
    local cpid=$!
    PIDS+=("$cpid")
    # Window start: first tick at or after ramp + settle.
    local start_ms=$(((ramp_s + settle) * 1000)) line n0 c0 ev0 ms0
    while :; do
        line=$(grep '^tick' "$log" 2>/dev/null | tail -1 || true)
        ms0=$(sed -n 's/.*t_ms=\([0-9]*\).*/\1/p' <<<"$line")
        [ -n "$ms0" ] && [ "$ms0" -ge "$start_ms" ] && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.02
    done
    [ -n "$ppid" ] && c0=$(cpu_ticks "$ppid") || c0=0
    ev0=$(sed -n 's/.* events=\([0-9]*\).*/\1/p' <<<"$line")
    n0=$(grep -c '^tick' "$log")
    local want=$((n0 + S2_WINDOW * 2)) open rss_kb_now=0 c1=0 ev1 ms1
    while [ "$(grep -c '^tick' "$log")" -lt "$want" ]; do
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.02
    done
    [ -n "$ppid" ] && { c1=$(cpu_ticks "$ppid"); rss_kb_now=$(rss_kb "$ppid"); }
    line=$(grep '^tick' "$log" | tail -1)
    ev1=$(sed -n 's/.* events=\([0-9]*\).*/\1/p' <<<"$line")
    ms1=$(sed -n 's/.*t_ms=\([0-9]*\).*/\1/p' <<<"$line")
    open=$(sed -n 's/.* open=\([0-9]*\).*/\1/p' <<<"$line")
    wait "$cpid" 2>/dev/null || true
    local summary
    summary=$(grep '^summary' "$log" || echo "summary ttft_p50_ms=0 ttft_p99_ms=0 failed=? eof=?")
    local p50 p99 failed
    p50=$(sed -n 's/.*ttft_p50_ms=\([0-9.]*\).*/\1/p' <<<"$summary")
    p99=$(sed -n 's/.*ttft_p99_ms=\([0-9.]*\).*/\1/p' <<<"$summary")
    failed=$(sed -n 's/.* failed=\([0-9]*\).*/\1/p' <<<"$summary")
    local slow
    slow=$(sed -n 's/.*ttft_over_1s=\([0-9]*\).*/\1/p' <<<"$summary")
    local per_stream cpu_mtok tok_s
    per_stream=$(awk -v r="$rss_kb_now" -v i="$idle_kb" -v n="$open" -v p="$ppid" 'BEGIN { if (p == "" || n == 0) print "-"; else printf "%.0f", (r - i) * 1024 / n }')
    cpu_mtok=$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v e="$((ev1 - ev0))" -v p="$ppid" 'BEGIN { if (p == "" || e <= 0) print "-"; else printf "%.2f", c / hz / e * 1e6 }')
    tok_s=$(awk -v e="$((ev1 - ev0))" -v a="$ms0" -v b="$ms1" 'BEGIN { if (b > a) printf "%.0f", e * 1000 / (b - a); else print 0 }')
    S2ROWS[$t]+="$per_stream $cpu_mtok $p50 $p99 $open $tok_s $failed ${slow:-0} $idle_kb $rss_kb_now"$'\n'
    [ -n "$ppid" ] && stop "$ppid"
    stop "$cpid"
    sleep 1 # let the sim close the upstream side
}
s2() {
    local maxtok=$(((STREAMS / STREAM_RATE + S2_WINDOW + 10) * STREAM_TPS * 2))
    printf '{"model":"%s","messages":[{"role":"user","content":"Tell me a long story."}],"max_tokens":%d,"stream":true}' \
        "$MODEL" "$maxtok" >"$TMP/s2.json"
    start_sim s2_sim "$S2_NODES" "$STREAM_TPS" --slots $((STREAMS + 64)) --queue 1024 \
        --max-tokens-cap $((maxtok + 1))
    local s2_sim_pid=$SIM_PID
    S2_PORTS=()
    mapfile -t S2_PORTS <"$TMP/s2_sim.ports"
    declare -gA S2ROWS=()
    local targets=(${S2_TARGETS:-direct drover nginx haproxy}) t r
    for r in $(seq "$S2_ROUNDS"); do
        for t in "${targets[@]}"; do
            say "s2: round $r/$S2_ROUNDS $t ($STREAMS streams at $STREAM_TPS tok/s, window ${S2_WINDOW}s)"
            s2_round "$t" "$r"
        done
    done
    stop "$s2_sim_pid"
    report ""
    report "S2 $STREAMS concurrent SSE streams, $STREAM_TPS tok/s each, $S2_NODES sim nodes, window ${S2_WINDOW}s, $S2_ROUNDS round(s) (median)"
    report "$(printf '%-8s %7s %12s %12s %11s %11s %12s %9s %9s %7s' target open B/stream cpu_s/Mtok ttft_p50 ttft_p99 +ttft_p50ms ttft\>1s tok/s failed)"
    for t in "${targets[@]}"; do
        local rows=${S2ROWS[$t]}
        R[s2.$t.bps]=$(col_median 1 <<<"$rows")
        R[s2.$t.cpu]=$(col_median 2 <<<"$rows")
        R[s2.$t.p50]=$(col_median 3 <<<"$rows")
        R[s2.$t.p99]=$(col_median 4 <<<"$rows")
        R[s2.$t.open]=$(col_median 5 <<<"$rows")
        R[s2.$t.toks]=$(col_median 6 <<<"$rows")
        R[s2.$t.failed]=$(col_sum 7 <<<"$rows")
        R[s2.$t.slow]=$(col_median 8 <<<"$rows")
        [ "$t" = direct ] && R[s2.$t.bps]=- R[s2.$t.cpu]=-
        report "$(printf '%-8s %7s %12s %12s %11s %11s %12s %9s %9s %7s' "$t" "${R[s2.$t.open]}" "${R[s2.$t.bps]}" "${R[s2.$t.cpu]}" \
            "${R[s2.$t.p50]}" "${R[s2.$t.p99]}" "$(minus "${R[s2.$t.p50]}" "${R[s2.direct.p50]}")" "${R[s2.$t.slow]}" "${R[s2.$t.toks]}" "${R[s2.$t.failed]}")"
    done
}

# ---- S4: failover ----------------------------------------------------------------------------
s4() {
    local i ports=() sims=()
    for i in 1 2 3; do
        start_sim "s4_sim$i" 1 50 --slots 512 --queue 1024
        ports+=("$SIM_PORT")
        sims+=("$SIM_PID")
    done
    DROVER_HEALTH_DEFAULTS=1 start_drover s4_drover plain "${ports[@]}"
    local dpid=$PEER_PID dport=$PEER_PORT aport=$ADMIN_PORT
    printf '{"model":"%s","messages":[{"role":"user","content":"Say hello."}],"max_tokens":8}' "$MODEL" >"$TMP/s4.json"
    printf '{"model":"%s","messages":[{"role":"user","content":"A long story."}],"max_tokens":%d,"stream":true}' \
        "$MODEL" $(((S4_DURATION + 5) * 50)) >"$TMP/s4s.json"
    lua "$TMP/s4.lua" "$TMP/s4.json" </dev/null
    say "s4: failover, ${S4_DURATION}s of non-stream load (wrk -c16) + $S4_STREAMS streams; SIGKILL sim-2 at $((S4_DURATION / 2))s"
    "${LOAD_PIN[@]}" "$TMP/sse_load" --port "$dport" --body-file "$TMP/s4s.json" --streams "$S4_STREAMS" \
        --rate 200 --duration $((S4_DURATION + 2)) --events --tick-ms 1000 >"$TMP/s4_streams.log" 2>&1 &
    local spid=$!
    PIDS+=("$spid")
    (timeout $((S4_DURATION + 30)) "${LOAD_PIN[@]}" wrk -t1 -c16 -d"${S4_DURATION}s" --timeout 10s --latency \
        -s "$TMP/s4.lua" "http://127.0.0.1:$dport/v1/chat/completions" >"$TMP/s4_wrk.log" 2>&1 || true) &
    local wpid=$!
    PIDS+=("$wpid")
    # Admin poller: every 50 ms, the dead node's routable flag, faults_total, in_flight.
    python3 - "$aport" $((S4_DURATION + 3)) >"$TMP/s4_admin.log" 2>/dev/null <<'EOF' &
import json, sys, time, urllib.request
port, dur = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + dur
while time.time() < end:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/v1/nodes", timeout=1) as r:
            nodes = json.load(r)["nodes"]
        for n in nodes:
            if n["name"] == "sim-2":
                print(int(time.time() * 1000), n["routable"], n["faults_total"], n["in_flight"],
                      n["requests_total"], n["liveness"], n["excluded"], flush=True)
    except Exception as e:
        print(int(time.time() * 1000), "error", str(e).replace(" ", "_"), flush=True)
    time.sleep(0.05)
EOF
    local ppid=$!
    PIDS+=("$ppid")
    sleep $((S4_DURATION / 2))
    local kill_ms
    kill_ms=$(date +%s%3N)
    kill -KILL "${sims[1]}"
    wait "${sims[1]}" 2>/dev/null || true
    wait "$wpid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    wait "$ppid" 2>/dev/null || true
    local wrk_ok bad errs
    wrk_ok=$(awk '/requests in/ { print $1 }' "$TMP/s4_wrk.log")
    bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$TMP/s4_wrk.log")
    errs=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$TMP/s4_wrk.log")
    R[s4.requests]=${wrk_ok:-0}
    R[s4.failed]=$((${bad:-0} + ${errs:-0}))
    # Streams on the dead node: X-Drover-Node sim-2.
    R[s4.on_dead]=$(grep -c '^end .*node=sim-2 ' "$TMP/s4_streams.log" || true)
    R[s4.err_events]=$(grep '^end .*node=sim-2 kind=error' "$TMP/s4_streams.log" | wc -l)
    R[s4.err_max_ms]=$(awk -v k="$kill_ms" '/^end .*node=sim-2 kind=error/ { sub(/.*t_ms=/, ""); d = $1 - k; if (d > m) m = d } END { print m + 0 }' "$TMP/s4_streams.log")
    R[s4.other_bad]=$(grep '^end ' "$TMP/s4_streams.log" | grep -v 'node=sim-2 ' | grep -Evc 'kind=(done|open)' || true)
    local streams_total
    streams_total=$(grep -c '^end ' "$TMP/s4_streams.log" || true)
    # Not routable from; last fault (last attempt that reached the dead node).
    R[s4.unroutable_ms]=$(awk -v k="$kill_ms" '$1 >= k && $2 == "False" { print $1 - k; exit }' "$TMP/s4_admin.log")
    R[s4.last_attempt_ms]=$(awk -v k="$kill_ms" '$1 >= k && $2 != "error" { if ($3 != last) { t = $1 - k; last = $3 } } END { print t + 0 }' "$TMP/s4_admin.log")
    local f0 f1
    f0=$(awk -v k="$kill_ms" '$1 < k && $2 != "error" { f = $3 } END { print f + 0 }' "$TMP/s4_admin.log")
    f1=$(awk '$2 != "error" { f = $3 } END { print f + 0 }' "$TMP/s4_admin.log")
    R[s4.faults]=$((f1 - f0))
    R[s4.state]=$(awk '$2 != "error" { s = $6 " excluded=" $7 } END { print s }' "$TMP/s4_admin.log")
    stop "$dpid" "${sims[0]}" "${sims[2]}"
    report ""
    report "S4 failover: 3 sim nodes (50 tok/s), drover with the example health settings (2 s, fall 3, faults.threshold 3);"
    report "   wrk -c16 non-stream for ${S4_DURATION}s + $S4_STREAMS streams; SIGKILL sim-2 at $((S4_DURATION / 2))s"
    report "$(printf '  non-stream requests %s, failed %s (non-2xx + socket errors)' "${R[s4.requests]}" "${R[s4.failed]}")"
    report "$(printf '  streams %s, on the dead node %s, ended with an error event %s, latest error event %s ms after the kill; other streams that failed %s' \
        "$streams_total" "${R[s4.on_dead]}" "${R[s4.err_events]}" "${R[s4.err_max_ms]}" "${R[s4.other_bad]}")"
    report "$(printf '  dead node: not routable %s ms after the kill; last attempt counted on it %s ms after; %s faults counted; state at the end %s' \
        "${R[s4.unroutable_ms]:-never}" "${R[s4.last_attempt_ms]}" "${R[s4.faults]}" "${R[s4.state]}")"
}

# ---- S5: control plane -----------------------------------------------------------------------
s5() {
    local r
    # RSS with no nodes.
    start_drover s5_empty plain
    sleep 2
    R[s5.rss0_kb]=$(rss_kb "$PEER_PID")
    stop "$PEER_PID"
    start_sim s5_sim "$S5_NODES" 0 --slots 4 --queue 16
    local spid=$SIM_PID ports=()
    mapfile -t ports <"$TMP/s5_sim.ports"
    R[s5.sim_rss_kb]=$(rss_kb "$spid")
    DROVER_HEALTH_DEFAULTS=1 start_drover s5_drover plain "${ports[@]}"
    local dpid=$PEER_PID aport=$ADMIN_PORT
    # Default probe interval (10 s ± 1 s): let the first round of probes start, then measure.
    say "s5: $S5_NODES nodes, default probes; measuring idle CPU over ${S5_IDLE}s"
    sleep 2
    local c0 c1
    c0=$(cpu_ticks "$dpid")
    sleep "$S5_IDLE"
    c1=$(cpu_ticks "$dpid")
    R[s5.cpu_pct]=$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v s="$S5_IDLE" 'BEGIN { printf "%.2f", c / hz / s * 100 }')
    R[s5.rss_kb]=$(rss_kb "$dpid")
    R[s5.healthy]=$(curl -fs -m 5 "http://127.0.0.1:$aport/admin/v1/nodes" | grep -o '"liveness":"healthy"' | wc -l || true)
    stop "$dpid" "$spid"
    # Router decision time.
    # Router decision time: "mixed" (nodes at 0..6 in flight) and "busy" (none idle, so every
    # pick scans all candidates); the verdict takes the busy one, the worst case.
    if [ -x "$TMP/bench_router" ]; then
        local mode rows
        for mode in mixed busy; do
            rows=""
            for r in $(seq "$ROUNDS"); do
                rows+="$("${SRV_PIN[@]}" "$TMP/bench_router" "$S5_NODES" "$ROUTER_PICKS" "$mode")"$'\n'
            done
            echo "$rows" >>"$TMP/router.log"
            R[s5.$mode.p50]=$(sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p' <<<"$rows" | median)
            R[s5.$mode.p99]=$(sed -n 's/.*p99_us=\([0-9.]*\).*/\1/p' <<<"$rows" | median)
        done
        R[s5.pick_p50]=${R[s5.busy.p50]}
        R[s5.pick_p99]=${R[s5.busy.p99]}
    fi
    report ""
    report "S5 control plane: drover serve with $S5_NODES static nodes (one drover sim --nodes $S5_NODES), default health settings"
    report "$(printf '  idle RSS, no nodes            %8.1f MB' "$(awk -v k="${R[s5.rss0_kb]}" 'BEGIN { print k / 1024 }')")"
    report "$(printf '  idle RSS, %4d nodes          %8.1f MB (%s healthy at the end)' "$S5_NODES" "$(awk -v k="${R[s5.rss_kb]}" 'BEGIN { print k / 1024 }')" "${R[s5.healthy]}")"
    report "$(printf '  CPU probing them, %ds window  %8s %% of one core' "$S5_IDLE" "${R[s5.cpu_pct]}")"
    local mode
    for mode in mixed busy; do
        report "$(printf '  router_pick %-5s %d nodes, %d picks x %d: p50 %s us, p99 %s us (medians)' "$mode" "$S5_NODES" "$ROUTER_PICKS" "$ROUNDS" "${R[s5.$mode.p50]:-n/a}" "${R[s5.$mode.p99]:-n/a}")"
    done
}

# ---- S6: busy answers (issue 20) -------------------------------------------------------------
# Three sim nodes (one `drover sim --nodes 3`) that answer a share of requests 503 +
# Retry-After: 1 (0.1 %, 1 %, 10 %), then three whose slots are genuinely full (few slots, no
# queue, token pacing, more connections than slots). drover, nginx and HAProxy with their
# retry settings in front of the same nodes; wrk -c16. Per target: client failures, goodput,
# and what the nodes themselves answered busy (their /metrics, before and after the run).
sim_busy_counts() { # ports... -> "received busy" summed over the nodes
    local p
    for p in "$@"; do curl -fs -m 2 "http://127.0.0.1:$p/metrics" || true; done | awk '
        $1 == "drover_sim_requests_total" { r += $2 }
        $1 == "drover_sim_faults_total" { f += $2 }
        $1 == "drover_sim_rejected_busy_total" { b += $2 }
        END { printf "%d %d\n", r + f, f + b }'
    # A fault is answered before the request is counted in requests_total; a full queue's 503
    # is counted in both requests_total and rejected_busy_total.
}
wrk_counts() { # wrk output on stdin -> "requests non2xx errors"
    awk '/ requests in / { n = $1 }
         /Non-2xx or 3xx responses:/ { bad = $NF }
         /Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
         END { printf "%d %d %d\n", n, bad, err }'
}
drover_metrics_line() { # metrics file -> one line of what drover did about busy answers
    awk '
        $1 == "drover_queue_entered_total" { qe = $2 }
        $1 == "drover_queue_served_total" { qs = $2 }
        $1 == "drover_queue_timeouts_total" { qt = $2 }
        $1 == "drover_queue_rejected_total" { qr = $2 }
        $1 == "drover_queue_wait_seconds_total" { qw = $2 }
        /^drover_node_busy_total\{/ { busy += $2 }
        /^drover_node_cooled\{/ { cooled += $2 }
        /^drover_node_concurrency_limit\{/ { lim = lim (lim == "" ? "" : ",") $2 }
        /^drover_outcomes_total\{/ { o = $1; sub(/.*class="/, "", o); sub(/".*/, "", o); if ($2 > 0) oc = oc " " o "=" $2 }
        END { printf "busy_seen=%d queue entered=%d served=%d timeouts=%d rejected=%d wait_s=%.1f limits=[%s] cooled_now=%d outcomes:%s\n",
                     busy, qe, qs, qt, qr, qw, lim, cooled, oc }' "$1"
}
s6() {
    HAPROXY_RETRY_ON="503 429 conn-failure"
    printf 'defaults\n  mode http\nbackend b\n  retry-on %s\n' "$HAPROXY_RETRY_ON" >"$TMP/hp_check.cfg"
    if ! "$HAPROXY" -c -q -f "$TMP/hp_check.cfg" >/dev/null 2>&1; then
        HAPROXY_RETRY_ON="503 conn-failure" # 429 is a retry-on keyword only from HAProxy 2.8
        S6_HP_NOTE="HAProxy $("$HAPROXY" -v 2>&1 | head -1 | awk '{ print $3 }') has no retry-on 429: retry-on 503 conn-failure"
    fi
    printf '{"model":"%s","messages":[{"role":"user","content":"Say hello."}],"max_tokens":%d}' \
        "$MODEL" "$S6_MAX_TOKENS" >"$TMP/s6.json"
    lua "$TMP/s6.lua" "$TMP/s6.json" </dev/null
    local cases=() c k=0
    for c in $S6_RATES; do cases+=("rate:$c"); done
    cases+=(full)
    declare -gA S6=()
    S6_CASES=()
    for c in "${cases[@]}"; do
        local name flags=()
        if [ "$c" = full ]; then
            name=full
            flags=(--slots "$S6_FULL_SLOTS" --queue 0 --busy-retry-after 1 --tokens-per-second "$S6_FULL_TPS")
        else
            name=$(awk -v r="${c#rate:}" 'BEGIN { printf "%g%%", r * 100 }')
            flags=(--slots 64 --queue 64 --tokens-per-second 0 --fault-rate "${c#rate:}" --fault 'status=503;retry_after=1')
        fi
        S6_CASES+=("$name")
        k=$((k + 1))
        start_sim "s6_sim$k" 3 0 --ttft-ms "$S6_TTFT_MS" --seed "$k" "${flags[@]}"
        local spid=$SIM_PID ports=()
        mapfile -t ports <"$TMP/s6_sim$k.ports"
        local -A port pid
        start_drover "s6_drover$k" busy "${ports[@]}"
        port[drover]=$PEER_PORT pid[drover]=$PEER_PID
        local aport=$ADMIN_PORT
        start_nginx "s6_nginx$k" busy "${ports[@]}"
        port[nginx]=$PEER_PORT pid[nginx]=$PEER_PID
        start_haproxy "s6_haproxy$k" busy "${ports[@]}"
        port[haproxy]=$PEER_PORT pid[haproxy]=$PEER_PID
        local targets=(drover nginx haproxy) t i out
        for i in 0 1 2; do
            t=${targets[$(((i + k - 1) % 3))]} # rotate the order per case
            say "s6: $name: $t (wrk -c$S6_CONNS ${S6_DURATION}s)"
            local before after
            before=$(sim_busy_counts "${ports[@]}")
            out=$(timeout $((S6_DURATION + 30)) "${LOAD_PIN[@]}" wrk -t1 -c"$S6_CONNS" -d"${S6_DURATION}s" --timeout 10s \
                --latency -s "$TMP/s6.lua" "http://127.0.0.1:${port[$t]}/v1/chat/completions" 2>&1) || true
            after=$(sim_busy_counts "${ports[@]}")
            echo "== s6 $name $t" >>"$TMP/wrk.log"
            echo "$out" >>"$TMP/wrk.log"
            read -r S6[$name.$t.req] S6[$name.$t.bad] S6[$name.$t.err] < <(wrk_counts <<<"$out")
            S6[$name.$t.p99]=$(wrk_summary <<<"$out" | awk '{ print $3 }')
            local b0 b1 r0 r1
            read -r r0 b0 <<<"$before"
            read -r r1 b1 <<<"$after"
            S6[$name.$t.node_req]=$((r1 - r0))
            S6[$name.$t.node_busy]=$((b1 - b0))
            if [ "$t" = drover ]; then
                curl -fs -m 2 "http://127.0.0.1:$aport/metrics" >"$TMP/s6_drover$k.metrics" || true
                S6[$name.drover.metrics]=$(drover_metrics_line "$TMP/s6_drover$k.metrics")
            fi
            sleep 1.2 # let any cooling (Retry-After 1) and the nodes' slots clear before the next target
        done
        stop "${pid[@]}" "$spid"
    done
    report ""
    report "S6 busy answers (issue 20): 3 sim nodes (one drover sim --nodes 3), wrk -t1 -c$S6_CONNS -d${S6_DURATION}s, max_tokens $S6_MAX_TOKENS, ttft ${S6_TTFT_MS} ms;"
    report "   rate cases: --fault-rate R --fault 'status=503;retry_after=1', 64 slots; full: --slots $S6_FULL_SLOTS --queue 0, $S6_FULL_TPS tok/s"
    report "   nginx: proxy_next_upstream error timeout http_503 http_429 non_idempotent, tries 3, max_fails=0; HAProxy: retry-on $HAPROXY_RETRY_ON, retries 3, option redispatch 1"
    [ -n "${S6_HP_NOTE:-}" ] && report "   ($S6_HP_NOTE)"
    report "   fail% = (non-2xx + socket errors) / (requests + socket errors); node busy% = the nodes' 503s / requests they received"
    report "$(printf '%-6s %-8s %9s %8s %8s %9s %9s %10s %10s %9s' case target requests failed fail% goodput/s p99_ms node_req node_busy busy%)"
    local name t
    for name in "${S6_CASES[@]}"; do
        for t in drover nginx haproxy; do
            local req=${S6[$name.$t.req]} bad=${S6[$name.$t.bad]} err=${S6[$name.$t.err]}
            S6[$name.$t.fail]=$(awk -v n="$req" -v b="$bad" -v e="$err" 'BEGIN { if (n + e > 0) printf "%.4f", (b + e) * 100 / (n + e); else print "n/a" }')
            S6[$name.$t.good]=$(awk -v n="$req" -v b="$bad" -v d="$S6_DURATION" 'BEGIN { printf "%.1f", (n - b) / d }')
            S6[$name.$t.busy]=$(awk -v n="${S6[$name.$t.node_req]}" -v b="${S6[$name.$t.node_busy]}" 'BEGIN { if (n > 0) printf "%.4f", b * 100 / n; else print "n/a" }')
            report "$(printf '%-6s %-8s %9d %8d %8s %9s %9s %10d %10d %9s' "$name" "$t" "$req" $((bad + err)) "${S6[$name.$t.fail]}" \
                "${S6[$name.$t.good]}" "${S6[$name.$t.p99]}" "${S6[$name.$t.node_req]}" "${S6[$name.$t.node_busy]}" "${S6[$name.$t.busy]}")"
        done
    done
    report ""
    report "$(printf '%-6s %22s %24s' case drover_fail/node_busy drover_goodput/best_peer)"
    for name in "${S6_CASES[@]}"; do
        local best
        best=$(awk -v a="${S6[$name.nginx.good]}" -v b="${S6[$name.haproxy.good]}" 'BEGIN { print (a > b) ? a : b }')
        S6[$name.best]=$best
        S6[$name.fail_ratio]=$(awk -v f="${S6[$name.drover.fail]}" -v b="${S6[$name.drover.busy]}" \
            'BEGIN { if (b > 0) printf "%.3f", f / b; else if (f == 0) print "0 (0/0)"; else print "inf" }')
        S6[$name.good_ratio]=$(ratio3 "${S6[$name.drover.good]}" "$best")
        report "$(printf '%-6s %22s %24s' "$name" "${S6[$name.fail_ratio]}" "${S6[$name.good_ratio]}")"
    done
    report ""
    report "drover's /metrics at the end of its run (busy answers it saw, admission queue, adaptive limits per node):"
    for name in "${S6_CASES[@]}"; do report "  $name: ${S6[$name.drover.metrics]:-n/a}"; done
}

# ---- S7: routing policies (issue 16) ---------------------------------------------------------
s7_sample() { # file ports...: every 0.2 s, each node's busy slots and queued requests
    local f=$1 p
    shift
    while :; do
        for p in "$@"; do
            curl -fs -m 1 "http://127.0.0.1:$p/metrics" 2>/dev/null |
                awk -v p="$p" '/^llamacpp:requests_processing /{r=$2} /^llamacpp:requests_deferred /{d=$2} END{print p, r+0, d+0}'
        done >>"$f"
        sleep 0.2
    done
}
s7_counters() { # ports... -> "prompt_tokens cache_hit_tokens" summed
    local p
    for p in "$@"; do curl -fs -m 2 "http://127.0.0.1:$p/metrics" || true; done |
        awk '/^llamacpp:prompt_tokens_total /{t+=$2} /^drover_sim_prompt_cache_hit_tokens_total /{h+=$2} END{printf "%d %d\n", t, h}'
}
s7() {
    declare -gA S7=()
    local k=0 pol
    for pol in $S7_POLICIES; do
        k=$((k + 1))
        start_sim "s7_sim$k" "$S7_NODES" "$S7_TPS" --ttft-ms 5 --ttft-per-token-ms "$S7_TTFT_PER_TOKEN_MS" \
            --slots "$S7_SLOTS" --queue 256 --cache-blocks "$S7_CACHE_BLOCKS" --block-tokens 16
        local spid=$SIM_PID ports=()
        mapfile -t ports <"$TMP/s7_sim$k.ports"
        DROVER_NODE_KIND=llamacpp DROVER_EXTRA_YAML="routing:
  policy: $pol
  cache_aware:
    balance_abs: $S7_SLOTS
    node_entries: $S7_CACHE_BLOCKS
  signals:
    max_waiting: 1" start_drover "s7_drover$k" plain "${ports[@]}"
        local dpid=$PEER_PID dport=$PEER_PORT
        : >"$TMP/s7_sample$k.txt"
        s7_sample "$TMP/s7_sample$k.txt" "${ports[@]}" &
        local sampler=$!
        PIDS+=("$sampler")
        local before after out
        before=$(s7_counters "${ports[@]}")
        say "s7: $pol (${S7_RATE} req/s for ${S7_DURATION}s, $S7_USERS users, $S7_SYSTEMS system prompts)"
        out=$(timeout $((S7_DURATION + S7_WARMUP + 60)) "${LOAD_PIN[@]}" python3 bench/s7_load.py --port "$dport" \
            --model "$MODEL" --rate "$S7_RATE" --duration "$S7_DURATION" --users "$S7_USERS" \
            --systems "$S7_SYSTEMS" --system-bytes "$S7_SYSTEM_BYTES" --max-tokens "$S7_MAX_TOKENS" \
            --turn-bytes "$S7_TURN_BYTES" --turns "$S7_TURNS" --warmup "$S7_WARMUP" 2>>"$TMP/s7_load$k.err") || true
        after=$(s7_counters "${ports[@]}")
        stop "$sampler"
        echo "== s7 $pol" >>"$TMP/wrk.log"
        echo "$out" >>"$TMP/wrk.log"
        S7[$pol.json]=$out
        local t0 h0 t1 h1
        read -r t0 h0 <<<"$before"
        read -r t1 h1 <<<"$after"
        S7[$pol.hit]=$(awk -v t=$((t1 - t0)) -v h=$((h1 - h0)) 'BEGIN { if (t > 0) printf "%.1f", h * 100 / t; else print "n/a" }')
        S7[$pol.max_busy]=$(awk 'BEGIN{m=0} $2>m{m=$2} END{print m}' "$TMP/s7_sample$k.txt")
        S7[$pol.max_queued]=$(awk 'BEGIN{m=0} $3>m{m=$3} END{print m}' "$TMP/s7_sample$k.txt")
        S7[$pol.queued_pct]=$(awk '{n++; if ($3>0) q++} END{ if (n) printf "%.1f", q*100/n; else print "n/a" }' "$TMP/s7_sample$k.txt")
        curl -fs -m 2 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$TMP/s7_drover$k.metrics" || true
        S7[$pol.fallbacks]=$(awk '/^drover_node_route_fallbacks_total\{/{s+=$2} END{print s+0}' "$TMP/s7_drover$k.metrics")
        S7[$pol.prefix_hits]=$(awk '/^drover_node_route_prefix_hits_total\{/{s+=$2} END{print s+0}' "$TMP/s7_drover$k.metrics")
        stop "$dpid" "$spid"
    done
    report ""
    report "S7 routing policies (issue 16): $S7_NODES sim nodes (one drover sim), $S7_SLOTS slots each, prefix cache $S7_CACHE_BLOCKS blocks of 16 tokens,"
    report "   TTFT = 5 ms + ${S7_TTFT_PER_TOKEN_MS} ms per uncached prompt token, $S7_TPS tok/s, max_tokens $S7_MAX_TOKENS; $S7_USERS users over $S7_SYSTEMS system prompts of $S7_SYSTEM_BYTES B"
    report "   (popularity 4:3:2:1), $S7_TURNS-turn conversations (questions of $S7_TURN_BYTES B, the answers streamed back kept in the history), streamed, open loop at $S7_RATE req/s (Poisson), ${S7_WARMUP}s warm-up not counted, then ${S7_DURATION}s measured;"
    report "   fresh sim and drover per policy;"
    report "   drover: routing.cache_aware.balance_abs $S7_SLOTS, node_entries $S7_CACHE_BLOCKS (the sims' cache), routing.signals.max_waiting 1, nodes kind llamacpp (signals from the sim's /metrics)"
    report "   hit% = the sims' cache-hit prompt tokens / prompt tokens; busy/queued = the most slots busy / requests queued on any node (sampled every 0.2 s)"
    report "$(printf '%-13s %6s %6s %8s %9s %9s %9s %9s %6s %5s %7s %8s %s' policy ok failed thr_rps ttft_mean ttft_p50 ttft_p99 total_p99 hit% busy queued queued% per_node)"
    for pol in $S7_POLICIES; do
        local j=${S7[$pol.json]:-"{}"}
        local row
        row=$(python3 -c '
import json, sys
try:
    d = json.loads(sys.argv[1])
except ValueError:
    d = {}
g = lambda k: d.get(k) if d.get(k) is not None else "n/a"
pn = "/".join("%s:%d" % kv for kv in sorted((d.get("per_node") or {}).items()))
print(g("ok"), g("failed"), g("throughput_rps"), g("ttft_mean_ms"), g("ttft_p50_ms"), g("ttft_p99_ms"), g("total_p99_ms"), pn or "-")
' "$j")
        local ok failed thr mean p50 p99 tp99 pn
        read -r ok failed thr mean p50 p99 tp99 pn <<<"$row"
        S7[$pol.ok]=$ok S7[$pol.thr]=$thr S7[$pol.mean]=$mean S7[$pol.p99]=$p99 S7[$pol.failed]=$failed
        report "$(printf '%-13s %6s %6s %8s %9s %9s %9s %9s %6s %5s %7s %8s %s' "$pol" "$ok" "$failed" "$thr" "$mean" "$p50" "$p99" "$tp99" \
            "${S7[$pol.hit]}" "${S7[$pol.max_busy]}" "${S7[$pol.max_queued]}" "${S7[$pol.queued_pct]}" "$pn")"
    done
    if [ -n "${S7[cache_aware.mean]:-}" ] && [ -n "${S7[least_loaded.mean]:-}" ]; then
        report ""
        report "   mean TTFT least_loaded/cache_aware: $(ratio "${S7[least_loaded.mean]}" "${S7[cache_aware.mean]}"), round_robin/cache_aware: $(ratio "${S7[round_robin.mean]:-0}" "${S7[cache_aware.mean]}");" \
            "cache_aware picks on a cached prefix ${S7[cache_aware.prefix_hits]}, policy overruled (imbalance, no match) ${S7[cache_aware.fallbacks]}"
    fi
}

# ---- run -------------------------------------------------------------------------------------
for s in $SCENARIOS; do
    case $s in
    s1 | s2 | s3 | s4 | s5 | s6 | s7) "$s" ;;
    *) die "unknown scenario $s (s1..s7)" ;;
    esac
done

# ---- verdicts --------------------------------------------------------------------------------
verdict() { # name condition-awk-expr text
    local ok
    ok=$(awk "BEGIN { print ($2) ? \"met   \" : \"MISSED\" }" 2>/dev/null || echo "n/a   ")
    report "  [$ok] $1: $3"
}
set +u # a subset run (SCENARIOS, S2_TARGETS, PORTKEY=off) leaves some results unset: n/a
has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
if has s1 || has s2 || has s3 || has s4 || has s5; then
    report ""
    report "Targets (issue 7)"
fi
if has s1; then
    verdict "S1 throughput >= 1.0x nginx" "${R[s1.drover.rps]} >= ${R[s1.nginx.rps]}" "drover/nginx $(ratio3 "${R[s1.drover.rps]}" "${R[s1.nginx.rps]}")"
    verdict "S1 throughput >= 1.0x HAProxy" "${R[s1.drover.rps]} >= ${R[s1.haproxy.rps]}" "drover/haproxy $(ratio3 "${R[s1.drover.rps]}" "${R[s1.haproxy.rps]}")"
    verdict "S1 added p99 no worse than nginx" "${R[s1.drover.p99]} <= ${R[s1.nginx.p99]}" "p99 drover ${R[s1.drover.p99]} ms, nginx ${R[s1.nginx.p99]} ms"
    verdict "S1 added p99 no worse than HAProxy" "${R[s1.drover.p99]} <= ${R[s1.haproxy.p99]}" "p99 drover ${R[s1.drover.p99]} ms, haproxy ${R[s1.haproxy.p99]} ms"
    if [ "$PORTKEY" = on ]; then
        verdict "S1 throughput >= 5x Portkey" "${R[s1.drover.rps]} >= 5 * ${R[s1.portkey.rps]}" "drover/portkey $(ratio "${R[s1.drover.rps]}" "${R[s1.portkey.rps]}")"
    fi
fi
for tag in s1 s3; do
    has $tag && verdict "$tag drover stays up" "${R[$tag.drover.crashes]:-0} == 0" "${R[$tag.drover.crashes]:-0} crash(es)"
done
if has s2; then
    verdict "S2 <= 8 KB gateway memory per open stream" "\"${R[s2.drover.bps]}\" != \"-\" && ${R[s2.drover.bps]} <= 8192" "${R[s2.drover.bps]} B/stream (nginx ${R[s2.nginx.bps]}, haproxy ${R[s2.haproxy.bps]})"
    verdict "S2 CPU per token <= nginx" "${R[s2.drover.cpu]} <= ${R[s2.nginx.cpu]}" "drover ${R[s2.drover.cpu]} s/Mtok, nginx ${R[s2.nginx.cpu]} (haproxy ${R[s2.haproxy.cpu]})"
fi
# S3 has no target in the issue: its table is the result.
if has s4; then
    verdict "S4 zero failed non-stream requests" "${R[s4.failed]} == 0" "${R[s4.failed]} of ${R[s4.requests]}"
    verdict "S4 dead node's streams end with an error event within 1 s" "${R[s4.on_dead]} > 0 && ${R[s4.err_events]} == ${R[s4.on_dead]} && ${R[s4.err_max_ms]} <= 1000" "${R[s4.err_events]}/${R[s4.on_dead]} within ${R[s4.err_max_ms]} ms"
    verdict "S4 node takes no new traffic within 2 s" "\"${R[s4.unroutable_ms]:-}\" != \"\" && ${R[s4.unroutable_ms]:-99999} <= 2000 && ${R[s4.last_attempt_ms]} <= 2000" "not routable after ${R[s4.unroutable_ms]:-never} ms, last attempt ${R[s4.last_attempt_ms]} ms"
fi
if has s5; then
    verdict "S5 idle RSS < 10 MB with no nodes" "${R[s5.rss0_kb]} < 10240" "$(awk -v k="${R[s5.rss0_kb]}" 'BEGIN { printf "%.1f MB", k / 1024 }')"
    verdict "S5 idle RSS < 64 MB with $S5_NODES nodes" "${R[s5.rss_kb]} < 65536" "$(awk -v k="${R[s5.rss_kb]}" 'BEGIN { printf "%.1f MB", k / 1024 }')"
    verdict "S5 < 5% of one core to probe $S5_NODES nodes" "${R[s5.cpu_pct]} < 5" "${R[s5.cpu_pct]} %"
    verdict "S5 route decision p99 < 20 us" "${R[s5.pick_p99]:-999} < 20" "p99 ${R[s5.pick_p99]:-n/a} us (p50 ${R[s5.pick_p50]:-n/a}), busy fleet: every pick scans all 1000 candidates"
fi
if has s6; then
    report ""
    report "Targets (issue 20)"
    for name in "${S6_CASES[@]}"; do
        verdict "S6 $name: client failure rate <= the nodes' busy rate" "${S6[$name.drover.fail]} <= ${S6[$name.drover.busy]}" \
            "drover ${S6[$name.drover.fail]} % failed, its nodes answered ${S6[$name.drover.busy]} % busy (nginx ${S6[$name.nginx.fail]} %, haproxy ${S6[$name.haproxy.fail]} %)"
        verdict "S6 $name: goodput >= the best peer's" "${S6[$name.drover.good]} >= ${S6[$name.best]}" \
            "drover ${S6[$name.drover.good]}/s, best peer ${S6[$name.best]}/s (${S6[$name.good_ratio]})"
    done
fi

if has s7; then
    report ""
    report "Targets (issue 16)"
    verdict "S7 cache_aware mean TTFT >= 2x lower than least_loaded" "${S7[cache_aware.mean]} * 2 <= ${S7[least_loaded.mean]}" \
        "least_loaded ${S7[least_loaded.mean]} ms, cache_aware ${S7[cache_aware.mean]} ms ($(ratio "${S7[least_loaded.mean]}" "${S7[cache_aware.mean]}"))"
    verdict "S7 at the same throughput (within 5 %)" "${S7[cache_aware.thr]} >= 0.95 * ${S7[least_loaded.thr]}" \
        "cache_aware ${S7[cache_aware.thr]} req/s, least_loaded ${S7[least_loaded.thr]} req/s"
    verdict "S7 cache_aware p99 TTFT no worse than least_loaded" "${S7[cache_aware.p99]} <= ${S7[least_loaded.p99]}" \
        "cache_aware ${S7[cache_aware.p99]} ms, least_loaded ${S7[least_loaded.p99]} ms"
    verdict "S7 cache_aware: no node above its slots" "${S7[cache_aware.max_queued]} == 0 && ${S7[cache_aware.max_busy]} <= $S7_SLOTS" \
        "at most ${S7[cache_aware.max_busy]} busy and ${S7[cache_aware.max_queued]} queued on a node with $S7_SLOTS slots"
    verdict "S7 no failed requests" "${S7[cache_aware.failed]} == 0 && ${S7[least_loaded.failed]} == 0 && ${S7[round_robin.failed]:-0} == 0" \
        "cache_aware ${S7[cache_aware.failed]}, least_loaded ${S7[least_loaded.failed]}, round_robin ${S7[round_robin.failed]:-n/a}"
fi

# ---- header: versions and machine ------------------------------------------------------------
{
    echo "drover bench/run.sh — $(date -u +%Y-%m-%dT%H:%M:%SZ), $((SECONDS - T_START)) s"
    echo "  drover   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)') (release preset)"
    echo "  nginx    $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
    echo "  haproxy  $("$HAPROXY" -v 2>&1 | head -1 | awk '{ print $3 }')"
    if [ "$PORTKEY" = on ]; then
        echo "  portkey  @portkey-ai/gateway $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/package.json" | head -1) on node $(node --version)"
    fi
    echo "  wrk      $(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
    echo "  kernel   $(uname -srm)"
    echo "  cpu      $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "  memory   $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    if [ ${#SRV_PIN[@]} -gt 0 ]; then
        echo "  pinning  gateways/proxies on cpu 0; sims and load generators on cpu 1-$(($(nproc) - 1))"
    else
        echo "  pinning  off"
    fi
    echo "  loadavg  $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on the machine makes absolute numbers noisy; compare ratios)"
} >"$TMP/header.txt"
echo
cat "$TMP/header.txt"
cat "$OUT"
if [ -n "${RESULTS_OUT:-}" ]; then cat "$TMP/header.txt" "$OUT" >"$RESULTS_OUT"; fi
