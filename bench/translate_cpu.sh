#!/usr/bin/env bash
# bench/translate_cpu.sh — the gateway's CPU per streamed token, translated vs passed through
# (docs/translate.md). One `drover sim` with two nodes (as fast as it can: no pacing), one
# `drover serve` with node a as OpenAI-compatible and node o as Ollama-kind. For each path,
# REQS sequential streamed requests of TOKENS tokens; the serve process's user+system CPU
# (/proc/PID/stat) summed over all rounds, divided by the tokens streamed. Rounds alternate
# the paths, so many short rounds (REQS=10 ROUNDS=12) put every path into the same mix of the
# machine's slow and fast phases. user_us is the user-space part alone: translation is
# user-space work, while the kernel's share (a write per event, wake-ups of curl and the sim
# on two cores) moves with scheduling.
#
# Usage: bench/translate_cpu.sh   (DROVER_BIN=build/release/drover REQS=100 TOKENS=2000 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DROVER_BIN:-build/release/drover}
REQS=${REQS:-100}
TOKENS=${TOKENS:-2000}
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

"$BIN" sim --port 0 --nodes 2 --model m --max-tokens-cap 100000 --log-level error >"$work/sim.out" 2>/dev/null &
pids+=($!)
until grep -q ready "$work/sim.out" 2>/dev/null; do sleep 0.05; done
port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' "$work/sim.out")
"$BIN" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --set "store.path=$work/d.db" \
    --node "a=http://127.0.0.1:$port" --node "o=http://127.0.0.1:$((port + 1)),ollama" \
    --set health.interval=200ms --set health.rise=1 >"$work/serve.out" 2>"$work/serve.log" &
serve=$!
pids+=($serve)
until grep -q ready "$work/serve.out" 2>/dev/null; do kill -0 "$serve" || { cat "$work/serve.log" >&2; exit 1; }; sleep 0.05; done
gw=http://$(sed -n 's/.*listen=\([^ ]*\).*/\1/p' "$work/serve.out")
until curl -s "$gw/v1/models" | grep -q '"o"'; do sleep 0.1; done

ticks() { awk '{ print $14 + $15, $14 }' "/proc/$serve/stat"; } # "user+system user"
hz=$(getconf CLK_TCK)

# path name → "url body check" (check: a string the last bytes must hold, so a broken run fails)
run_path() {
    local name=$1 url=$2 body=$3 check=$4
    local t0 t1 u0 u1 i
    read -r t0 u0 <<<"$(ticks)"
    for ((i = 0; i < REQS; i++)); do
        curl -sN "$gw$url" -H 'content-type: application/json' -d "$body" >"$work/last"
    done
    read -r t1 u1 <<<"$(ticks)"
    tail -c 400 "$work/last" | grep -q "$check" || { echo "$name: bad stream: $(tail -c 300 "$work/last")" >&2; exit 1; }
    echo "$((t1 - t0)) $((u1 - u0))"
}

oai='{"model":"m","stream":true,"max_tokens":'$TOKENS',"messages":[{"role":"user","content":"go"}]}'
oll='{"model":"m","stream":true,"options":{"num_predict":'$TOKENS'},"messages":[{"role":"user","content":"go"}]}'
ant='{"model":"m","stream":true,"max_tokens":'$TOKENS',"messages":[{"role":"user","content":"go"}]}'
# node o is preferred for /api/chat (native); drain it to send /api/chat to node a (translated)
admin=http://$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' "$work/serve.out")

declare -A tot usr
add() { # path "total user" (ticks of one round)
    local t u
    read -r t u <<<"$2"
    tot[$1]=$((${tot[$1]:-0} + t))
    usr[$1]=$((${usr[$1]:-0} + u))
}
for ((r = 0; r < ROUNDS; r++)); do
    curl -s -XPOST "$admin/admin/v1/nodes/o/resume" >/dev/null || true
    curl -s -XPOST "$admin/admin/v1/nodes/a/drain" >/dev/null
    add ollama_native "$(run_path ollama_native /api/chat "$oll" '"done":true')"
    curl -s -XPOST "$admin/admin/v1/nodes/a/resume" >/dev/null
    add openai_native "$(run_path openai_native /v1/chat/completions "$oai" 'DONE')"
    curl -s -XPOST "$admin/admin/v1/nodes/o/drain" >/dev/null
    add ollama_translated "$(run_path ollama_translated /api/chat "$oll" '"done":true')"
    add anthropic_translated "$(run_path anthropic_translated /v1/messages "$ant" 'message_stop')"
done
per_token() { awk -v t="$1" -v hz="$hz" -v n=$((ROUNDS * REQS * TOKENS)) 'BEGIN { printf "%.3f", t / hz / n * 1e6 }'; }
ratio() { awk -v m="$1" -v b="$2" 'BEGIN { print (b > 0) ? m / b : 0 }'; }
printf 'translate CPU per streamed token — %s (%s, %s), %s × %s tokens × %s rounds, all rounds\n' \
    "$(date -u +%F)" "$(git rev-parse --abbrev-ref HEAD)" "$(git rev-parse --short HEAD)" "$REQS" "$TOKENS" "$ROUNDS"
printf '%-22s %-44s %10s %8s %8s %10s\n' path what us_per_token ratio user_us user_ratio
for k in ollama_native ollama_translated openai_native anthropic_translated; do
    case $k in
        ollama_*) b=ollama_native ;;
        *) b=openai_native ;;
    esac
    case $k in
        ollama_native) what="/api/chat → Ollama node (pass-through)" ;;
        ollama_translated) what="/api/chat → OpenAI node (translated)" ;;
        openai_native) what="/v1/chat/completions → OpenAI node (pass)" ;;
        anthropic_translated) what="/v1/messages → OpenAI node (translated)" ;;
    esac
    printf "%-22s %-44s %10s %8.2f %8s %10.2f\n" "$k" "$what" "$(per_token "${tot[$k]}")" \
        "$(ratio "${tot[$k]}" "${tot[$b]}")" "$(per_token "${usr[$k]}")" "$(ratio "${usr[$k]}" "${usr[$b]}")"
done
