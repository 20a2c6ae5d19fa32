#!/usr/bin/env python3
"""s7_load — the S7 load generator (bench/run.sh, issue 16): many users sharing a few long
system prompts, each in a multi-turn conversation, offered at a fixed (open-loop, Poisson)
rate so every routing policy is measured at the same throughput. With --warmup W the first W
seconds of requests are sent (caches fill) but not counted; --duration is the measured part.

User u talks under system prompt (u's weighted pick among --systems prompts of
--system-bytes); each request is the system prompt, the user's conversation so far (its own
earlier questions and the answers the node streamed back) and a new question of
--turn-bytes; after --turns turns the user starts a new conversation. Requests are streamed
(SSE) on a fresh connection each; TTFT is send → first `data: {` event.

Prints one JSON object: requests, ok, failed, throughput_rps (ok / duration), ttft mean, p50,
p90, p99 and max in ms, total-latency mean and p99, and requests per X-Drover-Node.
Standard library only; deterministic given --seed.

For real engines (bench/s7_llama.sh): --timings asks for the usage chunk
(stream_options.include_usage) and reads llama-server's `timings` from the stream's last
chunks, so the summary also sums, over the counted answers, the prompt tokens sent
(usage.prompt_tokens, else prompt_n + cache_n) and the engine's prompt_n (tokens it actually
prefilled) and cache_n (tokens it took from its cache); --record FILE writes one JSON line per
counted request; --temperature sets the body's temperature (0: greedy, the same answers for
every policy).
"""
import argparse
import asyncio
import json
import random
import time


def percentile(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def words(rng, n_bytes, tag):
    out = []
    size = 0
    vocab = ["alpha", "beta", "gamma", "delta", "fleet", "model", "token", "cache", "route",
             "node", "prompt", "answer", "policy", "latency", "queue", "slot", "context"]
    while size < n_bytes:
        w = rng.choice(vocab) + str(rng.randrange(100))
        out.append(w)
        size += len(w) + 1
    return (tag + " " + " ".join(out))[:n_bytes]


def dechunk(raw):
    out = bytearray()
    i = 0
    while True:
        j = raw.find(b"\r\n", i)
        if j < 0:
            break
        try:
            n = int(raw[i:j].split(b";")[0], 16)
        except ValueError:
            break
        if n == 0:
            break
        out += raw[j + 2:j + 2 + n]
        i = j + 2 + n + 2
    return bytes(out)


async def one(host, port, path, body, timeout):
    t0 = time.monotonic()
    ttft = None
    node = None
    route = ""
    status = 0
    eng = {}  # from the stream: usage.prompt_tokens, timings.prompt_n / cache_n
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        data = json.dumps(body).encode()
        writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     b"X-Drover-Explain: 1\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                     % (path.encode(), host.encode(), len(data)) + data)
        await writer.drain()
        buf = bytearray()
        deadline = t0 + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            chunk = await asyncio.wait_for(reader.read(65536), left)
            if not chunk:
                break
            buf += chunk
            if ttft is None and b"data: {" in buf:
                ttft = time.monotonic() - t0
        writer.close()
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        chunked = False
        for l in lines[1:]:
            k, _, v = l.partition(b":")
            if k.strip().lower() == b"x-drover-node":
                node = v.strip().decode()
            if k.strip().lower() == b"x-drover-route":
                route = v.strip().decode()
            if k.strip().lower() == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
        payload = dechunk(rest) if chunked else rest
        text = []
        done = False
        for ev in payload.decode(errors="replace").split("\n\n"):
            ev = ev.strip()
            if not ev.startswith("data:"):
                continue
            d = ev[5:].strip()
            if d == "[DONE]":
                done = True
                continue
            try:
                o = json.loads(d)
                for c in o.get("choices", []):
                    text.append(c.get("delta", {}).get("content") or "")
                if isinstance(o.get("usage"), dict) and "prompt_tokens" in o["usage"]:
                    eng["prompt_tokens"] = o["usage"]["prompt_tokens"]
                if isinstance(o.get("timings"), dict):
                    for k in ("prompt_n", "cache_n", "prompt_ms"):
                        if k in o["timings"]:
                            eng[k] = o["timings"][k]
            except (ValueError, AttributeError):
                pass
        ok = status == 200 and done
        return ok, ttft, time.monotonic() - t0, node + "|" + route if node else node, "".join(text), eng
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
        return False, ttft, time.monotonic() - t0, node, "", eng


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--model", default="bench-model")
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--systems", type=int, default=4)
    ap.add_argument("--system-weights", default="4,3,2,1")
    ap.add_argument("--system-bytes", type=int, default=6144)
    ap.add_argument("--turn-bytes", type=int, default=120)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--warmup", type=float, default=0.0,
                    help="seconds at the start whose requests are sent but not counted")
    ap.add_argument("--timings", action="store_true",
                    help="ask for usage and sum the engine's timings.prompt_n / cache_n")
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--record", default=None, help="one JSON line per counted request")
    a = ap.parse_args()

    rng = random.Random(a.seed)
    arrivals = random.Random(a.seed + 1)  # the same arrival times whatever the answers do
    systems = [words(random.Random(1000 + s), a.system_bytes, "System prompt %d." % s)
               for s in range(a.systems)]
    weights = [float(w) for w in a.system_weights.split(",")][:a.systems]
    weights += [1.0] * (a.systems - len(weights))
    users = []
    for u in range(a.users):
        s = rng.choices(range(a.systems), weights)[0]
        users.append({"system": s, "history": [], "turn": 0, "busy": False,
                      "rng": random.Random(a.seed * 7919 + u)})

    results = []
    tasks = []
    record = open(a.record, "w") if a.record else None

    async def run_user_turn(u):
        st = users[u]
        st["busy"] = True
        q = words(st["rng"], a.turn_bytes, "User %d question %d:" % (u, st["turn"]))
        msgs = [{"role": "system", "content": systems[st["system"]]}] + st["history"] + \
            [{"role": "user", "content": q}]
        body = {"model": a.model, "stream": True, "max_tokens": a.max_tokens, "messages": msgs}
        if a.timings:
            body["stream_options"] = {"include_usage": True}
        if a.temperature is not None:
            body["temperature"] = a.temperature
        sent_at = time.monotonic() - t_start
        counted = sent_at >= a.warmup
        ok, ttft, total, node, text, eng = await one(a.host, a.port, "/v1/chat/completions",
                                                     body, a.timeout)
        if counted:
            results.append((ok, ttft, total, node, eng))
            if record:
                record.write(json.dumps({
                    "t_s": round(sent_at - a.warmup, 3), "ok": ok, "user": u,
                    "turn": st["turn"], "system": st["system"],
                    "ttft_ms": round(ttft * 1000, 2) if ttft is not None else None,
                    "total_ms": round(total * 1000, 2), "node": (node or "-").split("|")[0],
                    "route": (node or "").partition("|")[2], **eng}) + "\n")
        st["turn"] += 1
        if st["turn"] >= a.turns or not ok:
            st["history"], st["turn"] = [], 0  # a new conversation
        else:
            st["history"] = st["history"] + [{"role": "user", "content": q},
                                             {"role": "assistant", "content": text}]
        st["busy"] = False

    t_start = time.monotonic()
    t_next = t_start
    while True:
        t_next += arrivals.expovariate(a.rate)
        if t_next - t_start >= a.warmup + a.duration:
            break
        delay = t_next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # the arrival goes to a random user who is not waiting for an answer
        idle = [u for u in range(a.users) if not users[u]["busy"]]
        if not idle:
            if t_next - t_start >= a.warmup:
                results.append((False, None, 0.0, None, {}))
                if record:
                    record.write(json.dumps({"t_s": round(t_next - t_start - a.warmup, 3),
                                             "ok": False, "why": "no idle user"}) + "\n")
            continue
        tasks.append(asyncio.ensure_future(run_user_turn(rng.choice(idle))))
    if tasks:
        await asyncio.gather(*tasks)
    if record:
        record.close()
    elapsed = max(a.duration, time.monotonic() - t_start - a.warmup)
    ok = [r for r in results if r[0]]
    ttfts = [r[1] * 1000 for r in ok if r[1] is not None]
    totals = [r[2] * 1000 for r in ok]
    per_node = {}
    for r in ok:
        n = (r[3] or "-").split("|")[0]
        per_node[n] = per_node.get(n, 0) + 1
    # why the slowest 5 % went where they went (X-Drover-Route's fallback, "policy" if none)
    slow_why = {}
    for r in sorted((r for r in ok if r[1] is not None), key=lambda r: -r[1])[:max(1, len(ok) // 20)]:
        route = (r[3] or "").partition("|")[2]
        why = [w[9:] for w in route.split() if w.startswith("fallback=")]
        key = why[0] if why else ("policy" if route else "-")
        slow_why[key] = slow_why.get(key, 0) + 1
    print(json.dumps({
        "requests": len(results), "ok": len(ok), "failed": len(results) - len(ok),
        "duration_s": round(elapsed, 2), "throughput_rps": round(len(ok) / a.duration, 2),
        "ttft_mean_ms": round(sum(ttfts) / len(ttfts), 2) if ttfts else None,
        "ttft_p50_ms": round(percentile(ttfts, 50), 2) if ttfts else None,
        "ttft_p90_ms": round(percentile(ttfts, 90), 2) if ttfts else None,
        "ttft_p99_ms": round(percentile(ttfts, 99), 2) if ttfts else None,
        "ttft_max_ms": round(max(ttfts), 2) if ttfts else None,
        "total_mean_ms": round(sum(totals) / len(totals), 2) if totals else None,
        "total_p99_ms": round(percentile(totals, 99), 2) if totals else None,
        "per_node": per_node,
        "slowest_5pct_why": slow_why,
        **(engine_sums(ok) if a.timings else {}),
    }))


def engine_sums(ok):
    """Over the counted good answers: prompt tokens sent, prefilled (prompt_n) and cached."""
    sent = prefilled = cached = missing = 0
    for r in ok:
        e = r[4]
        if "prompt_n" not in e:
            missing += 1
            continue
        prefilled += e["prompt_n"]
        cached += e.get("cache_n", 0)
        sent += e.get("prompt_tokens", e["prompt_n"] + e.get("cache_n", 0))
    return {"prompt_tokens_sent": sent, "prompt_n": prefilled, "cache_n": cached,
            "no_timings": missing,
            "prefill_saved_pct": round(100.0 * (1 - prefilled / sent), 1) if sent else None}


if __name__ == "__main__":
    asyncio.run(main())
