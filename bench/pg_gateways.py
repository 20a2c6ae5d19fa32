#!/usr/bin/env python3
"""pg_gateways.py — the Python side of bench/pg_gateways.sh (issue 14). Standard library only,
loopback only; every subcommand prints one JSON object on stdout and exits.

  agents    --count K --ports-file F
            K fake agents (docs/node_api.md) in this process, answering the node API at once
            and recording every operation they are asked to carry out (op id, target, the
            CLOCK_MONOTONIC time it arrived). "NAME URL" lines go to F once they listen; runs
            until SIGTERM. Bench-only control routes, no auth: POST /bench/secret {"secret": S}
            (the secret the gateway issued at the join), GET /bench/calls.
  propagate --admin A,B,C --api A --join-token T --samples N
            An admin change made through A's admin API, then B and C polled (every
            --poll-ms, 1) until they show it; N samples alternating two kinds of change: a
            catalogue entry added (PUT /admin/v1/models/ID) and a node label set (PATCH
            /admin/v1/nodes/NAME/labels, on a fake agent joined for it).
  ops       --admin P[,P…] --api P[,P…] --agents-file F --join-token T --ops M --clients C
            The agents of F joined and approved (across the gateways), then M installs issued
            by C concurrent clients through POST /admin/v1/ops, op i on gateway i mod n and
            agent i mod K; the time until every one was carried out (the agents' clock) and
            until every gateway lists all M done; then how often each was carried out.
"""
import argparse
import hashlib
import http.client
import http.server
import json
import math
import os
import signal
import sys
import threading
import time

mono = time.monotonic  # CLOCK_MONOTONIC: the same clock in every process of the machine


def pct(values, p):
    """Nearest-rank percentile of a list (None when empty)."""
    if not values:
        return None
    v = sorted(values)
    return v[max(0, min(len(v) - 1, math.ceil(p / 100.0 * len(v)) - 1))]


class Conn:
    """One keep-alive connection to 127.0.0.1:port, reopened once when the server closed it."""

    def __init__(self, port, timeout=30.0):
        self.port = port
        self.timeout = timeout
        self.c = None

    def call(self, method, path, body=None, headers=None):
        h = {"Content-Type": "application/json"} if body is not None else {}
        if headers:
            h.update(headers)
        data = json.dumps(body) if isinstance(body, (dict, list)) else body
        for attempt in (1, 2):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.c.request(method, path, body=data, headers=h)
                r = self.c.getresponse()
                raw = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        try:
            return r.status, json.loads(raw) if raw else {}
        except ValueError:
            return r.status, {"raw": raw[:200].decode(errors="replace")}

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def wait_for(what, fn, timeout, step=0.05):
    deadline = mono() + timeout
    while mono() < deadline:
        try:
            v = fn()
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            v = None
        if v:
            return v
        time.sleep(step)
    raise SystemExit("pg_gateways.py: timed out after %.0f s waiting for %s" % (timeout, what))


# ---- fake agents ------------------------------------------------------------------------------

class Agent:
    """An agent as the gateway sees it: health and inventory for the probes, every operation
    answered ok at once and recorded."""

    def __init__(self, name):
        self.name = name
        self.secret = None
        self.calls = []  # [op_id, op, target name, t_mono]
        self.lock = threading.Lock()
        agent = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body leave in two writes: without TCP_NODELAY the body waits for the
            # gateway's delayed ACK of the headers (40 ms), and that, not drover, would be
            # measured
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            def _ok(self):
                s = agent.secret
                return s and self.headers.get("Authorization", "") == \
                    "Bearer " + hashlib.sha256(s.encode()).hexdigest()

            def do_GET(self):
                if self.path == "/bench/calls":
                    with agent.lock:
                        return self._send(200, {"calls": list(agent.calls)})
                if not self._ok():
                    return self._send(401, {"error": {"message": "no"}})
                if self.path == "/drover/v1/health":
                    return self._send(200, {
                        "status": "ok", "in_flight": 0, "queued": 0,
                        "engine": {"kind": "openai", "url": "x", "reachable": True},
                        "models": [{"id": "fake-model", "status": "loaded",
                                    "capabilities": ["chat"], "in_flight": 0}]})
                if self.path == "/drover/v1/inventory":
                    return self._send(200, {"models": [], "backends": []})
                return self._send(404, {"error": {"message": "nope"}})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/bench/secret":
                    agent.secret = json.loads(raw)["secret"]
                    return self._send(200, {})
                if not self._ok():
                    return self._send(401, {"error": {"message": "no"}})
                if self.path != "/drover/v1/ops":
                    return self._send(404, {"error": {"message": "nope"}})
                t = mono()
                body = json.loads(raw)
                with agent.lock:
                    agent.calls.append([body.get("op_id"), body.get("op"),
                                        body.get("target", {}).get("name"), t])
                return self._send(200, {"class": "ok", "message": "", "listed": True})

        http.server.ThreadingHTTPServer.daemon_threads = True
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def join_body(name, url, secret):
    b = {"name": name, "url": url, "engine": "openai", "labels": {"zone": "a"},
         "agent_version": "bench",
         "discovery": {"hostname": name, "cpus": 2, "gpus": [],
                       "ops": ["model.install", "model.delete"]}}
    if secret:
        b["secret"] = secret
    return b


def join(api_port, token, name, url, secret=None):
    st, b = Conn(api_port).call("POST", "/drover/v1/nodes/join", join_body(name, url, secret),
                                {"Authorization": "Bearer " + token})
    if st not in (200, 202):
        raise SystemExit("pg_gateways.py: join of %s answered %d %r" % (name, st, b))
    return b.get("secret") or secret


def node(conn, name):
    st, b = conn.call("GET", "/admin/v1/nodes/" + name)
    return b if st == 200 else {}


def join_and_approve(apis, admins, token, name, url, i):
    """Joins through gateway i, approves through the next, joins again through the one after
    (which brings the secret): the way test_gateways does it, so all three paths are used."""
    n = len(admins)
    join(apis[i % n], token, name, url)
    a2 = Conn(admins[(i + 1) % n])
    wait_for("%s visible on gateway %d" % (name, (i + 1) % n), lambda: node(a2, name), 10)
    st, b = a2.call("POST", "/admin/v1/nodes/%s/approve" % name)
    if st != 200:
        raise SystemExit("pg_gateways.py: approve %s answered %d %r" % (name, st, b))
    a3 = Conn(admins[(i + 2) % n])
    wait_for("%s approved on gateway %d" % (name, (i + 2) % n),
             lambda: node(a3, name).get("admin") == "approved", 10)
    secret = join(apis[(i + 2) % n], token, name, url)
    if not secret:
        raise SystemExit("pg_gateways.py: no secret for %s once approved" % name)
    return secret


def cmd_agents(a):
    agents = [Agent("bench-agent-%d" % i) for i in range(a.count)]
    tmp = a.ports_file + ".tmp"
    with open(tmp, "w") as f:
        for ag in agents:
            f.write("%s %s\n" % (ag.name, ag.url))
    os.rename(tmp, a.ports_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    for ag in agents:
        ag.close()
    print(json.dumps({"agents": a.count, "calls": sum(len(ag.calls) for ag in agents)}))


# ---- 1. admin-change propagation --------------------------------------------------------------

def cmd_propagate(a):
    admins = [int(p) for p in a.admin.split(",")]
    if len(admins) < 2:
        raise SystemExit("pg_gateways.py: propagate needs two gateways or more")
    ag = Agent("prop-agent")
    try:
        ag.secret = join_and_approve([a.api] * 3, [admins[0]] * 3, a.join_token, ag.name, ag.url, 0)
        src = Conn(admins[0])
        others = [Conn(p) for p in admins[1:]]
        for c in others:
            wait_for("the agent on every gateway",
                     lambda: node(c, ag.name).get("admin") == "approved", 10)
        poll_s = a.poll_ms / 1000.0
        res = {"catalogue": [], "label": []}  # (visible on all, per gateway..., ack) ms
        lost = {"catalogue": 0, "label": 0}
        write_ms = []
        for i in range(-a.warmup, a.samples):
            kind = "catalogue" if i % 2 == 0 else "label"
            tag = "p%d" % (i + a.warmup)
            if kind == "catalogue":
                def change():
                    return src.call("PUT", "/admin/v1/models/" + tag, {"id": tag})

                def seen(c):
                    return c.call("GET", "/admin/v1/models/" + tag)[0] == 200
            else:
                def change():
                    return src.call("PATCH", "/admin/v1/nodes/%s/labels" % ag.name, {"rack": tag})

                def seen(c):
                    return node(c, ag.name).get("labels", {}).get("rack") == tag
            t0 = mono()
            st, b = change()
            t_ack = mono()
            if st not in (200, 201):
                raise SystemExit("pg_gateways.py: %s change answered %d %r" % (kind, st, b))
            when = [None] * len(others)
            while mono() - t0 < a.limit_s:
                for k, c in enumerate(others):
                    if when[k] is None and seen(c):
                        when[k] = mono()
                if all(w is not None for w in when):
                    break
                time.sleep(poll_s)
            if i < 0:
                continue
            write_ms.append((t_ack - t0) * 1000)
            if any(w is None for w in when):
                lost[kind] += 1
                continue
            res[kind].append([(max(when) - t0) * 1000, (max(when) - t_ack) * 1000] +
                             [(w - t0) * 1000 for w in when])
        out = {"samples": a.samples, "poll_ms": a.poll_ms, "limit_s": a.limit_s,
               "write_p50_ms": pct(write_ms, 50), "write_p99_ms": pct(write_ms, 99),
               "kinds": {}}
        for kind in ("catalogue", "label", "all"):
            rows = res["catalogue"] + res["label"] if kind == "all" else res[kind]
            all_ms = [r[0] for r in rows]
            after_ack = [r[1] for r in rows]
            out["kinds"][kind] = {
                "n": len(rows),
                "not_seen": lost["catalogue"] + lost["label"] if kind == "all" else lost[kind],
                "p50_ms": pct(all_ms, 50), "p99_ms": pct(all_ms, 99),
                "max_ms": max(all_ms) if all_ms else None,
                "after_ack_p50_ms": pct(after_ack, 50), "after_ack_p99_ms": pct(after_ack, 99),
                "over_1s": sum(1 for v in all_ms if v > 1000),
                "per_gateway_p50_ms": [pct([r[2 + k] for r in rows], 50)
                                       for k in range(len(others))],
            }
        print(json.dumps(out))
    finally:
        ag.close()


# ---- 2. operation throughput ------------------------------------------------------------------

def agent_calls(url):
    port = int(url.rsplit(":", 1)[1])
    return Conn(port).call("GET", "/bench/calls")[1]["calls"]


def cmd_ops(a):
    admins = [int(p) for p in a.admin.split(",")]
    apis = [int(p) for p in a.api.split(",")]
    n = len(admins)
    with open(a.agents_file) as f:
        agents = [line.split() for line in f if line.strip()]
    for i, (name, url) in enumerate(agents):
        secret = join_and_approve(apis, admins, a.join_token, name, url, i)
        st, _ = Conn(int(url.rsplit(":", 1)[1])).call("POST", "/bench/secret", {"secret": secret})
        if st != 200:
            raise SystemExit("pg_gateways.py: could not hand the secret to %s" % name)
    for k, p in enumerate(admins):
        c = Conn(p)
        wait_for("every agent healthy on gateway %d" % k,
                 lambda: all(node(c, name).get("live") == "healthy" or
                             node(c, name).get("liveness") == "healthy" for name, _ in agents),
                 a.ready_s)
    base = {name: len(agent_calls(url)) for name, url in agents}  # nothing asked yet: 0

    # M installs, op i through gateway i mod n for agent i mod K, C clients at once
    results = {}
    post_ms = []
    lock = threading.Lock()
    nxt = [0]

    def client():
        conns = [Conn(p, timeout=a.timeout_s) for p in admins]
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= a.ops:
                return
            name = agents[i % len(agents)][0]
            t = mono()
            try:
                st, b = conns[i % n].call("POST", "/admin/v1/ops", {
                    "op": "install", "target": "model:o%d" % i, "nodes": [name]})
                r = b["results"][0]["result"] if st == 200 else "http_%d" % st
            except (OSError, http.client.HTTPException, KeyError, IndexError) as e:
                r = "client_error:" + type(e).__name__
            with lock:
                results[r] = results.get(r, 0) + 1
                post_ms.append((mono() - t) * 1000)

    t0 = mono()
    threads = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_answered = mono() - t0

    want = {"o%d" % i for i in range(a.ops)}

    def applied():
        first = {}
        for _, url in agents:
            for c in agent_calls(url):
                if c[2] in want and c[2] not in first:
                    first[c[2]] = c[3]
        return first if len(first) == len(want) else None

    first = wait_for("every operation carried out by an agent", applied, a.timeout_s, 0.02)
    t_applied = max(first.values()) - t0
    t_applied_seen = mono() - t0

    def done_everywhere():
        for p in admins:
            st, b = Conn(p).call("GET", "/admin/v1/ops?all=1")
            if st != 200 or sum(1 for r in b["ops"] if r["state"] == "done") < a.ops:
                return False
        return True
    wait_for("every operation listed done by every gateway", done_everywhere, a.timeout_s, 0.02)
    t_done = mono() - t0
    time.sleep(a.settle_s)  # room for a second attempt, if there were one to come

    counts = {t: 0 for t in want}
    total_calls = 0
    for name, url in agents:
        for c in agent_calls(url)[base[name]:]:
            total_calls += 1
            if c[2] in counts:
                counts[c[2]] += 1
    gws = []
    for p in admins:
        c = Conn(p)
        rows = c.call("GET", "/admin/v1/ops?all=1")[1]["ops"]
        dead = c.call("GET", "/admin/v1/ops/dead")[1].get("dead", [])
        gws.append({"done": sum(1 for r in rows if r["state"] == "done"), "rows": len(rows),
                    "distinct_ids": len({r["id"] for r in rows}), "dead": len(dead)})
    hist = {}
    for v in counts.values():
        hist[v] = hist.get(v, 0) + 1
    print(json.dumps({
        "gateways": n, "agents": len(agents), "ops": a.ops, "clients": a.clients,
        "answered_s": t_answered, "applied_s": t_applied, "applied_seen_s": t_applied_seen,
        "done_everywhere_s": t_done,
        "ops_per_s_applied": a.ops / t_applied if t_applied > 0 else None,
        "ops_per_s_done": a.ops / t_done if t_done > 0 else None,
        "post_p50_ms": pct(post_ms, 50), "post_p99_ms": pct(post_ms, 99),
        "results": results,
        "applied_once": hist.get(1, 0), "applied_never": hist.get(0, 0),
        "applied_more": sum(c for v, c in hist.items() if v > 1),
        "max_applied": max(counts.values()) if counts else 0,
        "agent_calls": total_calls, "per_gateway": gws,
        "twice": sorted(t for t, v in counts.items() if v > 1)[:10],
    }))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("agents")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--ports-file", required=True)
    p = sub.add_parser("propagate")
    p.add_argument("--admin", required=True)
    p.add_argument("--api", type=int, required=True)
    p.add_argument("--join-token", required=True)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--poll-ms", type=float, default=1.0)
    p.add_argument("--limit-s", type=float, default=5.0)
    p = sub.add_parser("ops")
    p.add_argument("--admin", required=True)
    p.add_argument("--api", required=True)
    p.add_argument("--agents-file", required=True)
    p.add_argument("--join-token", required=True)
    p.add_argument("--ops", type=int, default=500)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--ready-s", type=float, default=30.0)
    p.add_argument("--timeout-s", type=float, default=120.0)
    p.add_argument("--settle-s", type=float, default=1.5)
    a = ap.parse_args()
    {"agents": cmd_agents, "propagate": cmd_propagate, "ops": cmd_ops}[a.cmd](a)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
