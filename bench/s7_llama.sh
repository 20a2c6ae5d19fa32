#!/usr/bin/env bash
# s7_llama.sh — bench S7 (routing policies, issue 16) on REAL llama-server nodes: the prefix-cache
# workload of bench/run.sh's S7 (users sharing a few long system prompts, multi-turn
# conversations, open loop) sent through `drover serve` to llama.cpp's llama-server processes
# run from the cached chroot of scripts/llama-chroot.sh, with the tiny random-weight model.
# Per policy it reports what the engines themselves say they did: the prompt tokens sent, the
# tokens they prefilled (timings.prompt_n of every answer; the rest came from their KV / prompt
# cache, timings.cache_n), TTFT and throughput.
#
#   bench/s7_llama.sh                      # 2 rounds × 3 policies × ~55 s, ~5.5 min on 2 cores
#   S7L_ROUNDS=1 S7L_DURATION=15 bench/s7_llama.sh   # a quick look, ~2 min
#   RESULTS_OUT=/tmp/s7l.txt bench/s7_llama.sh       # also write the report to a file
#   DROVER_BIN=/path/to/drover bench/s7_llama.sh     # skip the build, use that binary
#
# Fresh llama-servers and a fresh drover per (round, policy): every policy starts from empty
# caches; the rounds interleave the policies in rotated order so the machine's slow and fast
# phases hit all of them. Needs root (chroot). Installs nothing beyond scripts/deps.sh and
# scripts/llama-chroot.sh (idempotent, cached). Loopback only. Stops only what it started, by
# pid, and removes its temp dir. Every knob: bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

S7L_NODES=${S7L_NODES:-3}
S7L_SLOTS=${S7L_SLOTS:-2}
S7L_CTX=${S7L_CTX:-2048}                 # tokens per slot
S7L_CACHE_RAM_MIB=${S7L_CACHE_RAM_MIB:-32}
S7L_CACHE_REUSE=${S7L_CACHE_REUSE:-0}
# llama-server's default 0.1 picks an idle slot whose prompt shares >= 10 % with the new one and
# then never looks in its --cache-ram prompt cache while that slot keeps >= 50 % of its tokens:
# with shared system prompts every conversation's history is prefilled again, wherever it was
# cached. 0: slots are taken LRU and the prompt cache is searched on every switch (README).
S7L_SPS=${S7L_SPS:-0}
S7L_THREADS=${S7L_THREADS:-1}
S7L_ROUNDS=${S7L_ROUNDS:-2}
S7L_RATE=${S7L_RATE:-4}
S7L_WARMUP=${S7L_WARMUP:-20}
S7L_DURATION=${S7L_DURATION:-30}
S7L_USERS=${S7L_USERS:-24}
S7L_SYSTEMS=${S7L_SYSTEMS:-4}
S7L_SYSTEM_BYTES=${S7L_SYSTEM_BYTES:-2048}
S7L_TURN_BYTES=${S7L_TURN_BYTES:-200}
S7L_TURNS=${S7L_TURNS:-8}
S7L_MAX_TOKENS=${S7L_MAX_TOKENS:-32}
S7L_REQ_TIMEOUT=${S7L_REQ_TIMEOUT:-60}
S7L_START_TIMEOUT=${S7L_START_TIMEOUT:-60}
S7L_POLICIES=${S7L_POLICIES:-"round_robin least_loaded cache_aware"}
S7L_LLAMA_ARGS=${S7L_LLAMA_ARGS:-} # more llama-server flags, split on spaces
# The tiny model's KV is 2 layers × (256 K + 256 V) × 2 B (f16) = 2 KiB per token, so the
# prompt cache holds CACHE_RAM_MIB × 512 tokens, the slots SLOTS × CTX more; the test
# tokenizer makes ~4.6 B of text per token, so drover's 64 B blocks are ~14 tokens.
S7L_NODE_ENTRIES=${S7L_NODE_ENTRIES:-$(((S7L_CACHE_RAM_MIB * 512 + S7L_SLOTS * S7L_CTX) / 14))}
MODEL=tiny-llama # the --alias scripts/llama-server.sh gives the model

say() { echo "s7_llama: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root: llama-server runs in a chroot (scripts/llama-chroot.sh)"
for v in S7L_NODES S7L_SLOTS S7L_CTX S7L_ROUNDS S7L_USERS S7L_SYSTEMS S7L_TURNS S7L_MAX_TOKENS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done

# ---- dependencies, chroot, build (all idempotent) --------------------------------------------
scripts/deps.sh
say "llama.cpp chroot and model (scripts/llama-chroot.sh build: cached, minutes only the first time)"
CHROOT_PATHS=$(scripts/llama-chroot.sh build) || die "scripts/llama-chroot.sh build failed"
say "$CHROOT_PATHS"
if [ -n "${DROVER_BIN:-}" ]; then
    DROVER=$DROVER_BIN
else
    cmake --preset release >/dev/null
    cmake --build --preset release >/dev/null
    DROVER=build/release/drover
fi
DROVER=$(realpath "$DROVER")
[ -x "$DROVER" ] || die "no drover binary at $DROVER"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/drover-s7l.XXXXXX")
OUT=$TMP/report.txt
: >"$OUT"

# ---- processes we own ------------------------------------------------------------------------
PIDS=()
cleanup() {
    stop_all
    if [ "${S7L_KEEP:-0}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop() { # pid...: TERM, wait up to 3 s, KILL; forget them
    local pid p keep=()
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        [[ " $* " == *" $p "* ]] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}


wait_line() { # file regex seconds pid: 0 once the line is there, 1 on timeout or exit
    local deadline=$((SECONDS + $3))
    while [ $SECONDS -lt "$deadline" ]; do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        kill -0 "$4" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; } # utime+stime
CLK_TCK=$(getconf CLK_TCK)

# ---- llama-server ----------------------------------------------------------------------------
# scripts/llama-server.sh execs through chroot, so $! is llama-server itself. Its fixed
# `-t 1 -c 256 -np 2` are overridden by the later flags here (llama.cpp: the last one wins).
# The model says its context is 256 tokens and llama-server caps a slot at that, so the
# override raises it to CTX (random weights: the text is noise either way, the cost is real).
start_llama() { # name -> LLAMA_PORT, LLAMA_PID
    local name=$1
    for _ in 1 2 3; do
        LLAMA_PORT=$(free_port)
        # shellcheck disable=SC2086 # S7L_LLAMA_ARGS: split on purpose
        scripts/llama-server.sh "$LLAMA_PORT" -t "$S7L_THREADS" -np "$S7L_SLOTS" \
            -c $((S7L_SLOTS * S7L_CTX)) --override-kv "llama.context_length=int:$S7L_CTX" \
            --metrics --cache-prompt --cache-reuse "$S7L_CACHE_REUSE" --cache-ram "$S7L_CACHE_RAM_MIB" \
            --slot-prompt-similarity "$S7L_SPS" $S7L_LLAMA_ARGS >"$TMP/$name.log" 2>&1 &
        LLAMA_PID=$!
        PIDS+=("$LLAMA_PID")
        if wait_line "$TMP/$name.log" 'listening on http://127\.0\.0\.1:[0-9]+' "$S7L_START_TIMEOUT" "$LLAMA_PID"; then
            local exe
            exe=$(readlink "/proc/$LLAMA_PID/exe" 2>/dev/null || true)
            [[ $exe == */llama-server ]] || die "pid $LLAMA_PID of $name is '$exe', not llama-server"
            grep -qE "n_slots = $S7L_SLOTS, n_ctx_slot = $S7L_CTX" "$TMP/$name.log" ||
                die "$name: not $S7L_SLOTS slots of $S7L_CTX tokens: $(grep -m1 'n_ctx_slot' "$TMP/$name.log")"
            return 0
        fi
        stop "$LLAMA_PID"
        # A port taken between free_port and the bind: try another; anything else is fatal.
        grep -qiE 'bind|address already in use' "$TMP/$name.log" && continue
        tail -n 15 "$TMP/$name.log" >&2
        die "llama-server $name did not start within ${S7L_START_TIMEOUT}s"
    done
    die "llama-server $name: no free port after 3 tries"
}

# ---- drover ----------------------------------------------------------------------------------
start_drover() { # name policy ports... -> DROVER_PORT, ADMIN_PORT, DROVER_PID
    local name=$1 policy=$2 p i=0
    shift 2
    {
        echo "listen: 127.0.0.1:0"
        echo "admin_listen: 127.0.0.1:0"
        echo "log_level: warn"
        echo "store:"
        echo "  path: $TMP/$name.db"
        echo "health:"
        echo "  interval: 1s"
        echo "  rise: 1"
        echo "routing:"
        echo "  policy: $policy"
        echo "  cache_aware:"
        echo "    balance_abs: $S7L_SLOTS"
        echo "    node_entries: $S7L_NODE_ENTRIES"
        echo "  signals:"
        echo "    max_waiting: 1"
        echo "nodes:"
        for p in "$@"; do
            i=$((i + 1))
            echo "  - name: llama-$i"
            echo "    url: http://127.0.0.1:$p"
            echo "    kind: llamacpp"
        done
    } >"$TMP/$name.yaml"
    "$DROVER" serve --config "$TMP/$name.yaml" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    DROVER_PID=$!
    PIDS+=("$DROVER_PID")
    wait_line "$TMP/$name.out" '^drover-serve ready' 30 "$DROVER_PID" || {
        tail -n 5 "$TMP/$name.err" >&2
        die "drover serve $name did not start"
    }
    DROVER_PORT=$(sed -n 's/.*listen=[^ ]*:\([0-9]*\) .*/\1/p' "$TMP/$name.out" | head -1)
    ADMIN_PORT=$(sed -n 's/.*admin=[^ ]*:\([0-9]*\).*/\1/p' "$TMP/$name.out" | head -1)
    # Ready once every node passed its first probe and the model is listed.
    local deadline=$((SECONDS + 30)) ok
    while :; do
        ok=$(curl -fs -m 2 "http://127.0.0.1:$ADMIN_PORT/admin/v1/nodes" | grep -o '"routable":true' | wc -l || true)
        if [ "$ok" -ge $# ] && curl -fs -m 2 "http://127.0.0.1:$DROVER_PORT/v1/models" | grep -q "\"$MODEL\""; then
            return 0
        fi
        [ $SECONDS -lt $deadline ] || die "drover $name: $ok of $# nodes routable (or $MODEL not listed) after 30 s"
        kill -0 "$DROVER_PID" 2>/dev/null || die "drover $name exited: $(tail -n 3 "$TMP/$name.err")"
        sleep 0.2
    done
}

# Every 0.5 s, each node's busy slots and deferred (queued) requests, from its /metrics.
sampler() { # file ports...
    local f=$1 p
    shift
    while :; do
        for p in "$@"; do
            curl -fs -m 1 "http://127.0.0.1:$p/metrics" 2>/dev/null |
                awk -v p="$p" '/^llamacpp:requests_processing /{r=$2} /^llamacpp:requests_deferred /{d=$2} END{print p, r+0, d+0}'
        done >>"$f"
        sleep 0.5
    done
}

# ---- one (round, policy) ---------------------------------------------------------------------
run_one() { # round policy
    local r=$1 pol=$2 tag="r$1_$2" n ports=() pids=()
    for n in $(seq "$S7L_NODES"); do
        start_llama "${tag}_llama$n"
        ports+=("$LLAMA_PORT")
        pids+=("$LLAMA_PID")
    done
    start_drover "${tag}_drover" "$pol" "${ports[@]}"
    : >"$TMP/$tag.sample"
    sampler "$TMP/$tag.sample" "${ports[@]}" &
    local spid=$!
    PIDS+=("$spid")
    local cpu0=0 p
    for p in "${pids[@]}"; do cpu0=$((cpu0 + $(cpu_ticks "$p"))); done
    say "round $r: $pol (${S7L_RATE} req/s, ${S7L_WARMUP}s warm-up + ${S7L_DURATION}s measured, load $(cut -d' ' -f1-3 /proc/loadavg))"
    local rc=0
    timeout $((S7L_WARMUP + S7L_DURATION + S7L_REQ_TIMEOUT + 30)) python3 bench/s7_load.py \
        --port "$DROVER_PORT" --model "$MODEL" --rate "$S7L_RATE" --duration "$S7L_DURATION" \
        --warmup "$S7L_WARMUP" --users "$S7L_USERS" --systems "$S7L_SYSTEMS" \
        --system-bytes "$S7L_SYSTEM_BYTES" --turn-bytes "$S7L_TURN_BYTES" --turns "$S7L_TURNS" \
        --max-tokens "$S7L_MAX_TOKENS" --timeout "$S7L_REQ_TIMEOUT" --timings --temperature 0 \
        --record "$TMP/$tag.jsonl" >"$TMP/$tag.json" 2>"$TMP/$tag.load.err" || rc=$?
    [ $rc = 0 ] || say "round $r $pol: the load generator exited $rc ($(tail -n 2 "$TMP/$tag.load.err" | tr '\n' ' '))"
    local cpu1=0
    for p in "${pids[@]}"; do cpu1=$((cpu1 + $(cpu_ticks "$p"))); done
    curl -fs -m 2 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$TMP/$tag.drover.metrics" || true
    {
        echo "round=$r policy=$pol rc=$rc"
        echo "engine_cpu_s=$(awk -v t=$((cpu1 - cpu0)) -v k="$CLK_TCK" 'BEGIN { printf "%.1f", t / k }')"
        echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)"
        echo "prefix_hits=$(awk '/^drover_node_route_prefix_hits_total\{/{s+=$2} END{print s+0}' "$TMP/$tag.drover.metrics")"
        echo "fallbacks=$(awk '/^drover_node_route_fallbacks_total\{/{s+=$2} END{print s+0}' "$TMP/$tag.drover.metrics")"
        echo "max_busy=$(awk 'BEGIN{m=0} $2>m{m=$2} END{print m}' "$TMP/$tag.sample")"
        echo "max_deferred=$(awk 'BEGIN{m=0} $3>m{m=$3} END{print m}' "$TMP/$tag.sample")"
        echo "deferred_pct=$(awk '{n++; if ($3>0) q++} END{ if (n) printf "%.1f", q*100/n; else print "n/a" }' "$TMP/$tag.sample")"
    } >"$TMP/$tag.meta"
    stop "$spid" "$DROVER_PID" "${pids[@]}"
}

# ---- run -------------------------------------------------------------------------------------
read -ra POLS <<<"$S7L_POLICIES"
[ ${#POLS[@]} -gt 0 ] || die "S7L_POLICIES is empty"
T0=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$S7L_ROUNDS"); do
    n=${#POLS[@]}
    for i in $(seq 0 $((n - 1))); do
        run_one "$r" "${POLS[$(((i + r - 1) % n))]}"
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ----------------------------------------------------------------------------------
{
    echo "S7 on real llama-server nodes (bench/s7_llama.sh) — $(date -u +%FT%TZ), $((SECONDS - T0)) s"
    echo "  drover   $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
    echo "  engine   llama-server $(scripts/llama-chroot.sh exec llama-server --version 2>&1 | grep -m1 version || echo '?'), tiny random-weight llama (test-llama-archs)"
    echo "  machine  $(uname -sr), $(nproc) cpus, load average $LOAD_START at the start, $LOAD_END at the end (other jobs share it)"
    echo "  nodes    $S7L_NODES llama-servers, each -t $S7L_THREADS, --parallel $S7L_SLOTS slots of $S7L_CTX tokens, --cache-prompt, --cache-ram $S7L_CACHE_RAM_MIB MiB,"
    echo "           --slot-prompt-similarity $S7L_SPS, --cache-reuse $S7L_CACHE_REUSE, --metrics${S7L_LLAMA_ARGS:+ $S7L_LLAMA_ARGS}"
    echo "  drover   routing.policy per run; cache_aware.balance_abs $S7L_SLOTS, node_entries $S7L_NODE_ENTRIES; signals.max_waiting 1; nodes kind llamacpp"
    echo "  load     $S7L_USERS users over $S7L_SYSTEMS system prompts of $S7L_SYSTEM_BYTES B (popularity 4:3:2:1), $S7L_TURNS-turn conversations,"
    echo "           questions of $S7L_TURN_BYTES B, answers (max_tokens $S7L_MAX_TOKENS, temperature 0) kept in the history; streamed;"
    echo "           open loop (Poisson, the same arrivals for every policy) at $S7L_RATE req/s, ${S7L_WARMUP}s warm-up not counted + ${S7L_DURATION}s measured"
    echo "  rounds   $S7L_ROUNDS, policies in rotated order; fresh llama-servers and drover per (round, policy)"
} >>"$OUT"
python3 - "$TMP" "$S7L_DURATION" "${POLS[@]}" >>"$OUT" <<'PY'
import json, os, sys
tmp, duration, pols = sys.argv[1], float(sys.argv[2]), sys.argv[3:]

def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))]

def meta(tag):
    d = {}
    try:
        for line in open(os.path.join(tmp, tag + ".meta")):
            for kv in line.split():
                k, _, v = kv.partition("=")
                d[k] = v
    except OSError:
        pass
    return d

runs = sorted(f[:-6] for f in os.listdir(tmp) if f.endswith(".jsonl"))
agg = {p: {"recs": [], "rounds": [], "cpu": 0.0, "hits": 0, "fb": 0, "busy": 0, "defer": 0}
       for p in pols}
for tag in runs:
    rnd, _, pol = tag.partition("_")
    if pol not in agg:
        continue
    recs = [dict(json.loads(l), tag=tag) for l in open(os.path.join(tmp, tag + ".jsonl")) if l.strip()]
    m = meta(tag)
    a = agg[pol]
    a["recs"] += recs
    ok = [r for r in recs if r.get("ok") and "prompt_n" in r]
    sent = sum(r.get("prompt_tokens", r["prompt_n"] + r.get("cache_n", 0)) for r in ok)
    pn = sum(r["prompt_n"] for r in ok)
    tt = [r["ttft_ms"] for r in ok if r.get("ttft_ms") is not None]
    a["rounds"].append((rnd, len(ok), len(recs) - len(ok), sent, pn,
                        sum(tt) / len(tt) if tt else float("nan"), m,
                        sum(r.get("prompt_ms", 0) for r in ok)))
    a["cpu"] += float(m.get("engine_cpu_s", 0) or 0)
    a["hits"] += int(m.get("prefix_hits", 0) or 0)
    a["fb"] += int(m.get("fallbacks", 0) or 0)
    a["busy"] = max(a["busy"], float(m.get("max_busy", 0) or 0))
    a["defer"] = max(a["defer"], float(m.get("max_deferred", 0) or 0))

print()
print("per policy, all rounds pooled (sent = usage.prompt_tokens, prefilled = timings.prompt_n, from every counted answer):")
hdr = "%-13s %5s %6s %6s %9s %7s %10s %7s %6s %9s %8s %8s %9s %6s %4s %5s  %s"
print(hdr % ("policy", "ok", "failed", "req/s", "sent_tok", "tok/req", "prefilled", "saved%", "pf_ms",
             "ttft_mean", "ttft_p50", "ttft_p99", "total_p99", "cpu_s", "busy", "defer", "per_node"))
res = {}
for p in pols:
    a = agg[p]
    recs = a["recs"]
    ok = [r for r in recs if r.get("ok")]
    okt = [r for r in ok if "prompt_n" in r]
    sent = sum(r.get("prompt_tokens", r["prompt_n"] + r.get("cache_n", 0)) for r in okt)
    pn = sum(r["prompt_n"] for r in okt)
    tt = [r["ttft_ms"] for r in ok if r.get("ttft_ms") is not None]
    tot = [r["total_ms"] for r in ok]
    pf = [r["prompt_ms"] for r in okt if "prompt_ms" in r]
    nrounds = max(1, len(a["rounds"]))
    nodes = {}
    for r in ok:
        nodes[r.get("node", "-")] = nodes.get(r.get("node", "-"), 0) + 1
    res[p] = {"ok": len(ok), "failed": len(recs) - len(ok), "rps": len(ok) / (duration * nrounds),
              "sent": sent, "pn": pn, "saved": 100.0 * (1 - pn / sent) if sent else float("nan"),
              "mean": sum(tt) / len(tt) if tt else float("nan"), "p50": pct(tt, 50),
              "p99": pct(tt, 99), "tp99": pct(tot, 99), "no_timings": len(ok) - len(okt),
              "pf": sum(pf) / len(pf) if pf else float("nan")}
    x = res[p]
    print(hdr % (p, x["ok"], x["failed"], "%.2f" % x["rps"], x["sent"],
                 "%.0f" % (x["sent"] / len(okt)) if okt else "n/a", x["pn"], "%.1f" % x["saved"], "%.1f" % x["pf"],
                 "%.1f" % x["mean"], "%.1f" % x["p50"], "%.1f" % x["p99"], "%.1f" % x["tp99"],
                 "%.1f" % a["cpu"], "%g" % a["busy"], "%g" % a["defer"],
                 "/".join("%s:%d" % kv for kv in sorted(nodes.items()))))
    if x["no_timings"]:
        print("   (%s: %d answers without timings, left out of sent/prefilled)" % (p, x["no_timings"]))

print()
print("follow-up turns (a user's turn k answered right after its turn k-1, both counted): the tokens new since")
print("the previous prompt (its answer + the new question: the floor) against what the engine prefilled")
for p in pols:
    new = pre = n = 0
    by_tag = {}
    for r in agg[p]["recs"]:
        if r.get("ok") and "prompt_n" in r and "prompt_tokens" in r:
            by_tag.setdefault(r["tag"], []).append(r)
    for recs in by_tag.values():
        last = {}
        for r in sorted(recs, key=lambda r: r["t_s"]):
            prev = last.get(r["user"])
            if r["turn"] > 0 and prev and prev["turn"] == r["turn"] - 1:
                new += r["prompt_tokens"] - prev["prompt_tokens"]
                pre += r["prompt_n"]
                n += 1
            last[r["user"]] = r
    if n:
        print("  %-13s %4d turns: %6.1f new tokens/turn, %6.1f prefilled/turn (%.2f× the floor)" % (
            p, n, new / n, pre / n, pre / new if new else float("nan")))

print()
print("per round (to see the spread; pf_ms/tok = the engines' prefill ms per prefilled token, i.e. the CPU left over):")
print("%-6s %-13s %5s %6s %9s %10s %7s %10s %9s %6s %4s  %s" % ("round", "policy", "ok", "failed", "sent_tok",
      "prefilled", "saved%", "pf_ms/tok", "ttft_mean", "hits", "fb", "load avg at end"))
for p in pols:
    for rnd, ok, failed, sent, pn, mean, m, pfms in sorted(agg[p]["rounds"]):
        print("%-6s %-13s %5d %6d %9d %10d %7s %10s %9.1f %6s %4s  %s" % (
            rnd, p, ok, failed, sent, pn, "%.1f" % (100.0 * (1 - pn / sent)) if sent else "n/a",
            "%.3f" % (pfms / pn) if pn else "n/a", mean,
            m.get("prefix_hits", "?"), m.get("fallbacks", "?"), m.get("loadavg_end", "?")))

def ratio(a, b):
    return "%.2f" % (a / b) if b else "n/a"

if "cache_aware" in res:
    c = res["cache_aware"]
    print()
    for o in ("least_loaded", "round_robin"):
        if o in res:
            x = res[o]
            print("cache_aware vs %-12s: prefilled %d vs %d tokens (%s/cache_aware %s), saved %.1f %% vs %.1f %%; "
                  "mean TTFT %.1f vs %.1f ms (%s), p99 %.1f vs %.1f ms (%s); req/s %.2f vs %.2f" % (
                      o, c["pn"], x["pn"], o, ratio(x["pn"], c["pn"]), c["saved"], x["saved"],
                      c["mean"], x["mean"], ratio(x["mean"], c["mean"]), c["p99"], x["p99"],
                      ratio(x["p99"], c["p99"]), c["rps"], x["rps"]))
    print("cache_aware: drover picked a node for its cached prefix %d times, overruled its own pick %d times"
          % (agg["cache_aware"]["hits"], agg["cache_aware"]["fb"]))
print()
print("saved% = 1 − prefilled/sent; pf_ms = mean timings.prompt_ms, the engine's own prefill time per answer (TTFT")
print("is that plus queueing, the first token and the gateway; on a shared machine it moves with the CPU left over);")
print("cpu_s = the llama-servers' user+system CPU over the whole run, warm-up included; busy/defer = the most busy")
print("slots / deferred requests on any node (its /metrics every 0.5 s).")
PY
cat "$OUT"
if [ -n "${RESULTS_OUT:-}" ]; then cp "$OUT" "$RESULTS_OUT"; fi
