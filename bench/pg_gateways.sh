#!/usr/bin/env bash
# pg_gateways.sh — issue 14's benchmark: several `drover serve` on one PostgreSQL (docs/deploy.md).
#
# One private PostgreSQL 15 cluster (scripts/pg.sh, in a temp dir), a database per case, and:
#   1. propagation: an admin change through gateway A (a catalogue entry, a node label), B and C
#      polled every ~1 ms until they show it; p50/p99/max over PROP_SAMPLES changes;
#   2. operations: OPS installs through POST /admin/v1/ops to fake agents (bench/pg_gateways.py),
#      with 1 gateway and with 3 (the ops spread over them), plus 1 gateway on SQLite for
#      reference; ops/s, the 3/1 ratio, and how often each op was carried out (exactly once?);
#   3. S1 (bench/run.sh's non-stream chat, wrk) through one gateway on SQLite and one on
#      PostgreSQL, same sim node, rounds interleaved: req/s and p99, ratio PG/SQLite.
#
#   bench/pg_gateways.sh                 # ~3 min on 2 cores
#   QUICK=1 bench/pg_gateways.sh         # ~1 min
#   PHASES="prop ops" bench/pg_gateways.sh
# Loopback only. Installs what is missing (wrk, postgresql-15 through scripts/deps.sh), builds
# the release preset, and stops every process it started (by pid; PostgreSQL with
# scripts/pg.sh stop) on exit. See bench/README.md for every knob.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    : "${PROP_SAMPLES:=60}" "${OPS:=200}" "${OPS_ROUNDS:=1}" "${S1_ROUNDS:=2}" "${S1_DURATION:=3}"
fi
PHASES=${PHASES:-"prop ops s1"}
PROP_SAMPLES=${PROP_SAMPLES:-200}
PROP_POLL_MS=${PROP_POLL_MS:-1}
OPS=${OPS:-500}
OPS_ROUNDS=${OPS_ROUNDS:-3}
OPS_CLIENTS=${OPS_CLIENTS:-8}
OPS_AGENTS=${OPS_AGENTS:-4}
OPS_INTERVAL=${OPS_INTERVAL:-250ms}
OPS_CASES=${OPS_CASES:-"pg1 pg3 sqlite1"}
S1_ROUNDS=${S1_ROUNDS:-6}
S1_DURATION=${S1_DURATION:-5}
S1_CONNS=${S1_CONNS:-64}
PIN=${PIN:-auto}
MODEL=bench-model
JOIN_TOKEN=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
T_START=$SECONDS

say() { echo "pg_gateways: $*" >&2; }
die() { say "$*"; exit 1; }
has() { [[ " $PHASES " == *" $1 "* ]]; }
for p in $PHASES; do
    case $p in prop | ops | s1) ;; *) die "unknown phase $p (prop ops s1)" ;; esac
done

# ---- dependencies (idempotent) and build -----------------------------------------------------
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
scripts/deps.sh "${need[@]}" # postgresql-15 and its client are in its base list
PG_BIN=""
for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$d/postgres" ]; then PG_BIN=$d; break; fi
done
[ -n "$PG_BIN" ] || die "no PostgreSQL server binaries (scripts/deps.sh installs postgresql-15)"
PSQL=$(command -v psql || echo "$PG_BIN/psql")
if [ -n "${DROVER_BIN:-}" ]; then
    DROVER=$DROVER_BIN
else
    cmake --preset release >/dev/null
    cmake --build --preset release >/dev/null
    DROVER=build/release/drover
fi
DROVER=$(realpath "$DROVER")
HELPER=$PWD/bench/pg_gateways.py

# ---- processes and files we own --------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/drover-pgb.XXXXXX")
# The cluster's own dir: as root, scripts/pg.sh hands it to the postgres user, who could not
# enter it inside TMP (0700, ours).
PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/drover-pgb-pg.XXXXXX")
PG_STARTED=0
PIDS=()
cleanup() {
    stop_all
    if [ "$PG_STARTED" = 1 ]; then scripts/pg.sh stop "$PGDIR" >/dev/null || say "warning: pg.sh stop failed"; fi
    rm -rf "$TMP" "$PGDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop() { # pid...: TERM, wait up to 3 s, KILL; forget them
    local pid keep=() p drop
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        drop=0
        for pid in "$@"; do [ "$p" = "$pid" ] && drop=1; done
        [ $drop = 1 ] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# The long commands run in the background and are waited for: bash runs a trap only once its
# foreground command has ended, so a TERM or ^C (timeout puts its child in a process group of
# its own: the terminal's ^C does not reach it) would otherwise wait for the whole helper run.
bg_wait() { # seconds out err cmd...: its status; killed (TERM, then KILL) past the seconds
    local secs=$1 out=$2 err=$3 p rc=0
    shift 3
    timeout -k 5 "$secs" "$@" >"$out" 2>"$err" &
    p=$!
    PIDS+=("$p")
    wait "$p" || rc=$?
    stop "$p"
    return $rc
}

wait_line() { # file regex seconds pid
    local deadline=$((SECONDS + $3))
    while [ $SECONDS -lt $deadline ]; do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        kill -0 "$4" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; } # utime+stime
pg_cpu_ticks() { # the postmaster and its backends (those alive now)
    local pm t=0 c
    pm=$(cat "$PGDIR/pid")
    for c in "$pm" $(pgrep -P "$pm" || true); do t=$((t + $(cpu_ticks "$c"))); done
    echo "$t"
}
CLK_TCK=$(getconf CLK_TCK)

SRV_PIN=()
LOAD_PIN=()
if [ "$PIN" = auto ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    SRV_PIN=(taskset -c 0)
    LOAD_PIN=(taskset -c "1-$(($(nproc) - 1))")
fi

OUT=$TMP/report.txt
: >"$OUT"
report() { echo "$*" >>"$OUT"; }
jget() { # json path...: each dotted path's value (n/a when missing), one per line
    python3 -c '
import json, sys
try:
    d = json.loads(sys.argv[1])
except ValueError:
    d = {}
for p in sys.argv[2:]:
    v = d
    for k in p.split("."):
        v = v[int(k)] if isinstance(v, list) else (v or {}).get(k) if isinstance(v, dict) else None
    if v is None:
        print("n/a")
    elif isinstance(v, float):
        print("%.3f" % v)
    elif isinstance(v, (dict, list)):
        print(json.dumps(v, separators=(",", ":")))
    else:
        print(v)
' "$@"
}
med_na() { # values... -> their median, n/a ones left out (n/a when none is left)
    printf '%s\n' "$@" | awk '$1 != "n/a" && NF' | median | awk -v n="$(printf '%s\n' "$@" | awk '$1 != "n/a" && NF' | wc -l)" '{ print (n > 0) ? $1 : "n/a" }'
}
num() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "n/a" || v == "") print "n/a"; else printf f, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "n/a") printf "%.2f", a / b; else print "n/a" }'; }
ratio3() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "n/a") printf "%.3f", a / b; else print "n/a" }'; }

# ---- PostgreSQL ------------------------------------------------------------------------------
say "starting PostgreSQL in $PGDIR"
PG_STARTED=1
scripts/pg.sh start "$PGDIR" >"$TMP/pg.start" 2>&1 || { cat "$TMP/pg.start" >&2; die "PostgreSQL did not start"; }
PG_URL=$(cat "$PGDIR/url")
psql_q() { timeout 30 "$PSQL" -X -q -t -A -v ON_ERROR_STOP=1 -d "$PG_URL" -c "$1"; }
new_db() { # name -> prints its conninfo
    timeout 30 "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$PG_URL" -c "CREATE DATABASE $1" >/dev/null ||
        die "CREATE DATABASE $1 failed"
    echo "${PG_URL/dbname=postgres/dbname=$1}"
}

# ---- gateways --------------------------------------------------------------------------------
# start_gw name store (pg:CONNINFO | sqlite) pin(0|1) [static node port] -> GW_PID GW_API GW_ADMIN
start_gw() {
    local name=$1 store=$2 pin=$3 node=${4:-}
    {
        echo "listen: 127.0.0.1:0"
        echo "admin_listen: 127.0.0.1:0"
        echo "log_level: warn"
        echo "store:"
        if [ "$store" = sqlite ]; then
            echo "  path: $TMP/$name.db"
        else
            echo "  engine: postgres"
            echo "  url: \"${store#pg:}\""
        fi
        echo "join:"
        echo "  token: $JOIN_TOKEN"
        echo "health:"
        echo "  interval: 1s"
        echo "  rise: 1"
        echo "ops:"
        echo "  interval: $OPS_INTERVAL"
        echo "limits:"
        echo "  max_connections: 30000"
        if [ -n "$node" ]; then
            echo "nodes:"
            echo "  - name: sim-1"
            echo "    url: http://127.0.0.1:$node"
        else
            echo "nodes: []"
        fi
    } >"$TMP/$name.yaml"
    local pre=()
    [ "$pin" = 1 ] && pre=("${SRV_PIN[@]}")
    "${pre[@]}" "$DROVER" serve --config "$TMP/$name.yaml" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    GW_PID=$!
    PIDS+=("$GW_PID")
    wait_line "$TMP/$name.out" '^drover-serve ready' 30 "$GW_PID" || {
        tail -n 5 "$TMP/$name.err" >&2
        die "drover serve $name did not start within 30 s"
    }
    GW_API=$(sed -n 's/.*listen=[^ ]*:\([0-9]*\) .*/\1/p' "$TMP/$name.out" | head -1)
    GW_ADMIN=$(sed -n 's/.*admin=[^ ]*:\([0-9]*\).*/\1/p' "$TMP/$name.out" | head -1)
}

# ---- 1. admin-change propagation -------------------------------------------------------------
prop() {
    local url i out
    url=$(new_db prop)
    GWS_PIDS=() GWS_API="" GWS_ADMIN=""
    for i in 1 2 3; do
        start_gw "prop_$i" "pg:$url" 0
        GWS_PIDS+=("$GW_PID")
        GWS_API+="${GWS_API:+,}$GW_API"
        GWS_ADMIN+="${GWS_ADMIN:+,}$GW_ADMIN"
    done
    say "prop: $PROP_SAMPLES changes through gateway A, B and C polled every ${PROP_POLL_MS} ms"
    bg_wait $((60 + PROP_SAMPLES * 11)) "$TMP/prop.json" "$TMP/prop.err" python3 "$HELPER" propagate \
        --admin "$GWS_ADMIN" --api "${GWS_API%%,*}" --join-token "$JOIN_TOKEN" --samples "$PROP_SAMPLES" \
        --poll-ms "$PROP_POLL_MS" || {
        cat "$TMP/prop.err" >&2
        die "prop: the propagation probe failed"
    }
    out=$(cat "$TMP/prop.json")
    stop "${GWS_PIDS[@]}"
    report ""
    report "1. Admin-change propagation: 3 gateways on one PostgreSQL; $PROP_SAMPLES changes through A's admin API (alternately"
    report "   PUT /admin/v1/models/ID and PATCH /admin/v1/nodes/NAME/labels), B and C polled every ${PROP_POLL_MS} ms until both show it;"
    report "   ms from sending the change (the write's own answer took p50 $(jget "$out" write_p50_ms) ms, p99 $(jget "$out" write_p99_ms) ms)"
    report "$(printf '%-10s %5s %9s %9s %9s %14s %14s %8s %9s' change n p50_ms p99_ms max_ms p50_after_ack p99_after_ack '>1s' not_seen)"
    local k
    for k in catalogue label all; do
        local v=()
        mapfile -t v < <(jget "$out" "kinds.$k.n" "kinds.$k.p50_ms" "kinds.$k.p99_ms" "kinds.$k.max_ms" \
            "kinds.$k.after_ack_p50_ms" "kinds.$k.after_ack_p99_ms" "kinds.$k.over_1s" "kinds.$k.not_seen")
        report "$(printf '%-10s %5s %9s %9s %9s %14s %14s %8s %9s' "$k" "${v[@]}")"
    done
    R[prop.p99]=$(jget "$out" kinds.all.p99_ms)
    R[prop.max]=$(jget "$out" kinds.all.max_ms)
    R[prop.not_seen]=$(jget "$out" kinds.all.not_seen)
    R[prop.over]=$(jget "$out" kinds.all.over_1s)
}

# ---- 2. operation throughput, 1 vs 3 gateways ------------------------------------------------
ops_case() { # case round -> the helper's JSON in $TMP/ops_CASE_ROUND.json
    local c=$1 r=$2 n store tag="${1}_r$2"
    case $c in
    pg1) n=1 store="pg:$(new_db "ops_$tag")" ;;
    pg3) n=3 store="pg:$(new_db "ops_$tag")" ;;
    sqlite1) n=1 store=sqlite ;;
    *) die "unknown ops case $c (pg1 pg3 sqlite1)" ;;
    esac
    python3 "$HELPER" agents --count "$OPS_AGENTS" --ports-file "$TMP/agents_$tag" \
        >"$TMP/agents_$tag.out" 2>"$TMP/agents_$tag.err" &
    local apid=$!
    PIDS+=("$apid")
    local deadline=$((SECONDS + 15))
    while [ ! -s "$TMP/agents_$tag" ]; do
        if ! kill -0 "$apid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
            cat "$TMP/agents_$tag.err" >&2
            die "ops: the fake agents did not start within 15 s"
        fi
        sleep 0.05
    done
    local i pids=() api="" adm=""
    for i in $(seq "$n"); do
        start_gw "ops_${tag}_$i" "$store" 0
        pids+=("$GW_PID")
        api+="${api:+,}$GW_API"
        adm+="${adm:+,}$GW_ADMIN"
    done
    say "ops: round $r/$OPS_ROUNDS $c: $OPS installs, $OPS_CLIENTS clients, $OPS_AGENTS agents, $n gateway(s)"
    bg_wait 240 "$TMP/ops_$tag.json" "$TMP/ops_$tag.err" python3 "$HELPER" ops --admin "$adm" --api "$api" \
        --agents-file "$TMP/agents_$tag" --join-token "$JOIN_TOKEN" --ops "$OPS" --clients "$OPS_CLIENTS" \
        --timeout-s 180 || {
        cat "$TMP/ops_$tag.err" >&2
        say "ops: $c round $r failed (above); gateway logs: $TMP/ops_${tag}_*.err"
        for i in $(seq "$n"); do tail -n 5 "$TMP/ops_${tag}_$i.err" >&2; done
        echo '{}' >"$TMP/ops_$tag.json"
    }
    stop "${pids[@]}" "$apid"
    # PostgreSQL's commits in that database over the whole case (joins and node flushes
    # included: a few dozen), read once its backends are gone (they flush their counts on exit)
    echo n/a >"$TMP/ops_$tag.xact"
    if [ "$store" != sqlite ]; then
        local db="ops_$tag" q
        deadline=$((SECONDS + 10))
        while [ $SECONDS -lt $deadline ]; do
            q=$(psql_q "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db'") || break
            [ "$q" = 0 ] && break
            sleep 0.1
        done
        psql_q "SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'" >"$TMP/ops_$tag.xact" || true
    fi
    # Every admin write is audited (DESIGN §10): the POSTs' rows in the audit log
    local sql="SELECT count(*) FROM audit_log WHERE method = 'POST' AND path LIKE '/admin/v1/ops%'"
    if [ "$store" = sqlite ]; then
        python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' \
            "$TMP/ops_${tag}_1.db" "$sql" >"$TMP/ops_$tag.audit" 2>/dev/null || echo n/a >"$TMP/ops_$tag.audit"
    else
        timeout 30 "$PSQL" -X -q -t -A -d "${store#pg:}" -c "$sql" >"$TMP/ops_$tag.audit" 2>/dev/null || echo n/a >"$TMP/ops_$tag.audit"
    fi
}
ops() {
    local r c k cases=()
    read -r -a cases <<<"$OPS_CASES"
    for r in $(seq "$OPS_ROUNDS"); do
        for k in "${!cases[@]}"; do # each round starts one case later
            ops_case "${cases[$(((k + r - 1) % ${#cases[@]}))]}" "$r"
        done
    done
    report ""
    report "2. Operations: $OPS installs per run through POST /admin/v1/ops (op i through gateway i mod n, for agent i mod $OPS_AGENTS),"
    report "   $OPS_CLIENTS concurrent clients, $OPS_AGENTS fake agents answering at once (bench/pg_gateways.py), ops.interval $OPS_INTERVAL, $OPS_ROUNDS round(s), rotated;"
    report "   applied = until every op reached its agent (the agents' clock); done = until every gateway lists all $OPS done; medians;"
    report "   pg_xact/op = PostgreSQL commits in the case's database / ops (the whole case: joins, probes' node writes included);"
    report "   once/never/twice+ = ops carried out by the agents once, never, more than once (summed over rounds); dead = dead letters;"
    report "   audited = the POSTs' rows in the store's audit_log (summed; every admin write is audited, DESIGN §10);"
    report "   PostgreSQL runs with fsync off (scripts/pg.sh), SQLite with drover's synchronous=FULL: sqlite1 is a reference, not a peer"
    report "$(printf '%-8s %3s %11s %9s %9s %9s %10s %7s %7s %7s %6s %8s %s' case gws applied/s done/s post_p50 post_p99 pg_xact/op once never twice+ dead audited 'answers (summed)')"
    for c in "${cases[@]}"; do
        local a=() d=() p50=() p99=() ans=() xa=() once=0 never=0 more=0 dead=0 audited=0 j au
        for r in $(seq "$OPS_ROUNDS"); do
            j=$(cat "$TMP/ops_${c}_r$r.json")
            local v=()
            mapfile -t v < <(jget "$j" ops_per_s_applied ops_per_s_done post_p50_ms post_p99_ms applied_once \
                applied_never applied_more results gateways)
            a+=("${v[0]}") d+=("${v[1]}") p50+=("${v[2]}") p99+=("${v[3]}")
            if [ "${v[4]}" = n/a ]; then
                never=$((never + OPS)) # the run failed: nothing could be counted
            else
                once=$((once + v[4])) never=$((never + v[5])) more=$((more + v[6]))
            fi
            dead=$((dead + $(python3 -c 'import json,sys; print(sum(g["dead"] for g in json.loads(sys.argv[1]).get("per_gateway", [])))' "$j")))
            ans+=("${v[7]}")
            au=$(cat "$TMP/ops_${c}_r$r.audit")
            [[ $au =~ ^[0-9]+$ ]] && audited=$((audited + au))
            xa+=("$(awk -v x="$(cat "$TMP/ops_${c}_r$r.xact")" -v n="$OPS" 'BEGIN { if (x ~ /^[0-9]+$/) printf "%.1f", x / n; else print "n/a" }')")
            R[ops.$c.gws]=${v[8]}
        done
        R[ops.$c.rate]=$(med_na "${a[@]}")
        R[ops.$c.done]=$(med_na "${d[@]}")
        R[ops.$c.once]=$once R[ops.$c.never]=$never R[ops.$c.more]=$more R[ops.$c.dead]=$dead R[ops.$c.audited]=$audited
        local answers
        answers=$(python3 -c '
import json, sys
t = {}
for s in sys.argv[1:]:
    try:
        for k, v in json.loads(s).items():
            t[k] = t.get(k, 0) + v
    except ValueError:
        pass
print(",".join("%s:%d" % kv for kv in sorted(t.items())) or "-")' "${ans[@]}")
        local xmed
        xmed=$(med_na "${xa[@]}")
        report "$(printf '%-8s %3s %11s %9s %9s %9s %10s %7d %7d %7d %6d %8d %s' "$c" "${R[ops.$c.gws]}" "$(num "${R[ops.$c.rate]}" %.1f)" \
            "$(num "${R[ops.$c.done]}" %.1f)" "$(num "$(med_na "${p50[@]}")" %.2f)" "$(num "$(med_na "${p99[@]}")" %.2f)" \
            "$xmed" "$once" "$never" "$more" "$dead" "$audited" "$answers")"
    done
    if [ -n "${R[ops.pg1.rate]:-}" ] && [ -n "${R[ops.pg3.rate]:-}" ]; then
        report "   3 gateways / 1 gateway (PostgreSQL): applied $(ratio "${R[ops.pg3.rate]}" "${R[ops.pg1.rate]}")x, done everywhere $(ratio "${R[ops.pg3.done]}" "${R[ops.pg1.done]}")x"
    fi
    if [ -n "${R[ops.pg1.rate]:-}" ] && [ -n "${R[ops.sqlite1.rate]:-}" ]; then
        report "   1 gateway PostgreSQL / SQLite: applied $(ratio "${R[ops.pg1.rate]}" "${R[ops.sqlite1.rate]}")x"
    fi
}

# ---- 3. S1 through a gateway on SQLite vs one on PostgreSQL ----------------------------------
run_wrk() { # url lua conns duration -> WRK_LINE="rps p50_ms p99_ms non2xx errors"
    bg_wait $(($4 + 30)) "$TMP/wrk.out" "$TMP/wrk.out.err" "${LOAD_PIN[@]}" wrk -t1 -c"$3" -d"$4s" --timeout 10s \
        --latency -s "$2" "$1" || true
    cat "$TMP/wrk.out" "$TMP/wrk.out.err" >>"$TMP/wrk.log"
    WRK_LINE=$(wrk_summary <"$TMP/wrk.out")
}
s1() {
    printf '{"model":"%s","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}' "$MODEL" >"$TMP/s1.json"
    {
        echo 'wrk.method = "POST"'
        echo 'wrk.headers["Content-Type"] = "application/json"'
        echo "local f = assert(io.open(\"$TMP/s1.json\", \"rb\"))"
        echo 'wrk.body = f:read("*a")'
        echo 'f:close()'
    } >"$TMP/s1.lua"
    "${LOAD_PIN[@]}" "$DROVER" sim --port 0 --nodes 1 --model "$MODEL" --preload --tokens-per-second 0 \
        --ttft-ms 0 --log-level warn --max-connections 30000 --slots 1024 --queue 4096 --max-tokens-cap 4096 \
        >"$TMP/s1_sim.out" 2>"$TMP/s1_sim.err" &
    local spid=$!
    PIDS+=("$spid")
    wait_line "$TMP/s1_sim.out" '^drover-sim ready' 30 "$spid" || {
        tail -n 5 "$TMP/s1_sim.err" >&2
        die "s1: drover sim did not start"
    }
    local node
    node=$(awk '{ sub(/.*port=/, ""); print $1 + 0; exit }' "$TMP/s1_sim.out")
    local -A port pid adm
    start_gw s1_sqlite sqlite 1 "$node"
    port[sqlite]=$GW_API pid[sqlite]=$GW_PID adm[sqlite]=$GW_ADMIN
    local url
    url=$(new_db s1)
    start_gw s1_postgres "pg:$url" 1 "$node"
    port[postgres]=$GW_API pid[postgres]=$GW_PID adm[postgres]=$GW_ADMIN
    local t deadline
    for t in sqlite postgres; do
        deadline=$((SECONDS + 30))
        until curl -fs -m 2 "http://127.0.0.1:${adm[$t]}/admin/v1/nodes" | grep -q '"routable":true'; do
            [ $SECONDS -lt $deadline ] || die "s1: the sim never became routable through $t"
            sleep 0.2
        done
        # One request first: an erroring target would look fast.
        curl -fs -m 20 -H 'Content-Type: application/json' --data-binary "@$TMP/s1.json" \
            "http://127.0.0.1:${port[$t]}/v1/chat/completions" | grep -q '"choices"' ||
            die "s1: $t: the first answer has no \"choices\""
    done
    local targets=(sqlite postgres) r k order line c0 c1 p0 p1
    local -A rows
    for r in $(seq "$S1_ROUNDS"); do
        order=()
        for k in "${!targets[@]}"; do order+=("${targets[$(((k + r - 1) % ${#targets[@]}))]}"); done
        for t in "${order[@]}"; do
            say "s1: round $r/$S1_ROUNDS $t (${S1_DURATION}s, $S1_CONNS connections)"
            c0=$(cpu_ticks "${pid[$t]}") p0=$(pg_cpu_ticks)
            run_wrk "http://127.0.0.1:${port[$t]}/v1/chat/completions" "$TMP/s1.lua" "$S1_CONNS" "$S1_DURATION"
            line=$WRK_LINE
            c1=$(cpu_ticks "${pid[$t]}") p1=$(pg_cpu_ticks)
            kill -0 "${pid[$t]}" 2>/dev/null || die "s1: the $t gateway died (stderr: $(tail -n 3 "$TMP/s1_$t.err"))"
            rows[$t]+="$line $(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v rps="${line%% *}" -v d="$S1_DURATION" \
                'BEGIN { if (rps > 0) printf "%.2f", c / hz * 1e6 / (rps * d); else print 0 }') $(((p1 - p0) * 1000 / CLK_TCK))"$'\n'
            sleep 0.3
        done
    done
    for t in "${targets[@]}"; do
        R[s1.$t.rps]=$(awk 'NF { print $1 }' <<<"${rows[$t]}" | median)
        R[s1.$t.p50]=$(awk 'NF { print $2 }' <<<"${rows[$t]}" | median)
        R[s1.$t.p99]=$(awk 'NF { print $3 }' <<<"${rows[$t]}" | median)
        R[s1.$t.bad]=$(awk '{ s += $4 + $5 } END { print s + 0 }' <<<"${rows[$t]}")
        R[s1.$t.cpu]=$(awk 'NF { print $6 }' <<<"${rows[$t]}" | median)
        R[s1.$t.pgms]=$(awk '{ s += $7 } END { print s + 0 }' <<<"${rows[$t]}")
        R[s1.$t.rounds]=$(awk 'NF { printf "%s%.0f", (n++ ? " " : ""), $1 }' <<<"${rows[$t]}")
    done
    stop "${pid[@]}" "$spid"
    report ""
    report "3. S1 non-stream chat (~100 B body), wrk -t1 -c$S1_CONNS -d${S1_DURATION}s, $S1_ROUNDS rounds rotated (median); one drover sim node;"
    report "   the gateway on cpu 0, sim and wrk on the others (PIN=$PIN; PostgreSQL not pinned); pg_cpu_ms = PostgreSQL's CPU summed over that target's runs"
    report "$(printf '%-9s %10s %9s %9s %7s %11s %10s %9s' store req/s p50_ms p99_ms failed cpu_us/req pg_cpu_ms vs_sqlite)"
    for t in "${targets[@]}"; do
        report "$(printf '%-9s %10.0f %9.3f %9.3f %7d %11s %10s %9s' "$t" "${R[s1.$t.rps]}" "${R[s1.$t.p50]}" "${R[s1.$t.p99]}" \
            "${R[s1.$t.bad]}" "$(num "${R[s1.$t.cpu]}" %.2f)" "${R[s1.$t.pgms]}" "$(ratio3 "${R[s1.$t.rps]}" "${R[s1.sqlite.rps]}")")"
    done
    for t in "${targets[@]}"; do report "   $t req/s per round: ${R[s1.$t.rounds]}"; done
    report "   PostgreSQL / SQLite: req/s $(ratio3 "${R[s1.postgres.rps]}" "${R[s1.sqlite.rps]}"), p99 $(ratio3 "${R[s1.postgres.p99]}" "${R[s1.sqlite.p99]}")"
}

# ---- run -------------------------------------------------------------------------------------
declare -A R
has prop && prop
has ops && ops
has s1 && s1

verdict() { # name awk-condition text
    local ok
    ok=$(awk "BEGIN { print ($2) ? \"met   \" : \"MISSED\" }" 2>/dev/null || echo "n/a   ")
    report "  [$ok] $1: $3"
}
report ""
report "Targets (issue 14)"
if has prop; then
    verdict "a change through one gateway visible on the others within 1 s" \
        "\"${R[prop.max]}\" != \"n/a\" && ${R[prop.max]} <= 1000 && ${R[prop.not_seen]} == 0" \
        "p99 ${R[prop.p99]} ms, max ${R[prop.max]} ms, over 1 s ${R[prop.over]}, never seen ${R[prop.not_seen]}"
fi
if has ops; then
    for c in $OPS_CASES; do
        verdict "$c: every operation carried out exactly once" \
            "${R[ops.$c.more]} == 0 && ${R[ops.$c.never]} == 0 && ${R[ops.$c.once]} > 0" \
            "$((OPS * OPS_ROUNDS)) issued: once ${R[ops.$c.once]}, never ${R[ops.$c.never]}, more than once ${R[ops.$c.more]}"
    done
    for c in $OPS_CASES; do
        verdict "$c: every POST /admin/v1/ops in the audit log" "${R[ops.$c.audited]} == $((OPS * OPS_ROUNDS))" \
            "${R[ops.$c.audited]} of $((OPS * OPS_ROUNDS)) audited"
    done
    if [ -n "${R[ops.pg1.rate]:-}" ] && [ -n "${R[ops.pg3.rate]:-}" ]; then
        report "  [info  ] operations/s, 3 gateways vs 1: $(ratio "${R[ops.pg3.rate]}" "${R[ops.pg1.rate]}")x (${R[ops.pg3.rate]} vs ${R[ops.pg1.rate]}/s; no target, all on $(nproc) cpus)"
    fi
fi
if has s1; then
    verdict "the data path does not slow down on PostgreSQL (req/s >= 0.95x SQLite)" \
        "${R[s1.postgres.rps]} >= 0.95 * ${R[s1.sqlite.rps]}" \
        "PG/SQLite req/s $(ratio3 "${R[s1.postgres.rps]}" "${R[s1.sqlite.rps]}"), p99 $(ratio3 "${R[s1.postgres.p99]}" "${R[s1.sqlite.p99]}")"
fi

{
    echo "drover bench/pg_gateways.sh — $(date -u +%Y-%m-%dT%H:%M:%SZ), $((SECONDS - T_START)) s$([ "$QUICK" = 1 ] && echo ' (QUICK=1)')"
    echo "  drover     $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')$([ -n "${DROVER_BIN:-}" ] && echo " ($DROVER)" || echo ' (release preset)')"
    echo "  postgres   $("$PG_BIN/postgres" --version) (scripts/pg.sh: fsync off, one private cluster, a database per case)"
    echo "  wrk        $(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
    echo "  python3    $(python3 -c 'import platform; print(platform.python_version())')"
    echo "  kernel     $(uname -srm)"
    echo "  cpu        $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "  loadavg    $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on the machine makes absolute numbers noisy; compare ratios)"
} >"$TMP/header.txt"
echo
cat "$TMP/header.txt" "$OUT"
if [ -n "${RESULTS_OUT:-}" ]; then cat "$TMP/header.txt" "$OUT" >"$RESULTS_OUT"; fi
